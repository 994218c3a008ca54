"""What a member keeps for each payment received: amount, VAT included, date and reference."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import UUIDPK, Base, CreatedAt


class Receipt(UUIDPK, CreatedAt, Base):
    """One per payment, which the unique payment id enforces (rule 3): a replay adds none."""

    __tablename__ = "receipts"
    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("vat_minor >= 0 AND vat_minor <= amount_minor", name="vat_within_amount"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="RESTRICT"), unique=True
    )
    membership_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), index=True
    )
    reference: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int]
    vat_minor: Mapped[int]
    vat_rate_bp: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    issued_on: Mapped[date]

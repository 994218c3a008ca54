"""Money in and out, and what the payment provider told us about it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, BigIntPK, CreatedAt, Timestamps, str_enum
from membership.models.memberships import Membership

JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class PaymentKind(enum.StrEnum):
    PURCHASE = "purchase"
    RENEWAL = "renewal"
    REFUND = "refund"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class Payment(UUIDPK, Timestamps, Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_payment_id"),
        UniqueConstraint("provider", "provider_checkout_id"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refund_within_amount"
        ),
        CheckConstraint("vat_rate_bp BETWEEN 0 AND 10000", name="vat_rate"),
    )

    reference: Mapped[str] = mapped_column(String(32), unique=True)
    membership_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memberships.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[PaymentKind] = mapped_column(str_enum(PaymentKind, "payment_kind"))
    status: Mapped[PaymentStatus] = mapped_column(
        str_enum(PaymentStatus, "payment_status"), default=PaymentStatus.PENDING, index=True
    )
    provider: Mapped[str] = mapped_column(String(16))
    provider_payment_id: Mapped[str | None] = mapped_column(String(255))
    provider_checkout_id: Mapped[str | None] = mapped_column(String(255))
    amount_minor: Mapped[int]
    refunded_minor: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3))
    vat_rate_bp: Mapped[int] = mapped_column(default=0)
    paid_at: Mapped[datetime | None]
    refund_of_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payments.id", ondelete="RESTRICT")
    )
    refund_reason: Mapped[str | None] = mapped_column(String(300))

    membership: Mapped[Membership] = relationship(lazy="raise")


class WebhookEvent(CreatedAt, Base):
    """Stored once by provider event id, handled later in a transaction of its own (rule 3)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_webhook_events_pending", "processed_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))

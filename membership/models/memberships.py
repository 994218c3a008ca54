"""A right to a product over time, made of paid terms, held by one or more members."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, String, Table, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, CreatedAt, Timestamps, str_enum
from membership.models.members import Member
from membership.models.products import Product


class MembershipStatus(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"
    ACTIVE = "active"
    IN_GRACE = "in_grace"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class TermKind(enum.StrEnum):
    PURCHASE = "purchase"
    RENEWAL = "renewal"
    IMPORT = "import"
    GRANT = "grant"


class TermStatus(enum.StrEnum):
    ACTIVE = "active"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


membership_holders = Table(
    "membership_holders",
    Base.metadata,
    Column("membership_id", ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True),
    Column("member_id", ForeignKey("members.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Membership(UUIDPK, Timestamps, Base):
    __tablename__ = "memberships"

    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    status: Mapped[MembershipStatus] = mapped_column(
        str_enum(MembershipStatus, "membership_status"),
        default=MembershipStatus.PENDING_PAYMENT,
        index=True,
    )
    auto_renew: Mapped[bool] = mapped_column(default=False)
    provider_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    cancelled_at: Mapped[datetime | None]

    product: Mapped[Product] = relationship(lazy="raise")
    holders: Mapped[list[Member]] = relationship(secondary=membership_holders, lazy="raise")
    terms: Mapped[list[MembershipTerm]] = relationship(
        back_populates="membership", lazy="raise", order_by="MembershipTerm.starts_on"
    )


class MembershipTerm(UUIDPK, CreatedAt, Base):
    """One paid period; a payment gives at most one term, which the unique payment id enforces."""

    __tablename__ = "membership_terms"
    __table_args__ = (
        CheckConstraint("ends_on > starts_on", name="ends_after_start"),
        Index("ix_membership_terms_membership_id_ends_on", "membership_id", "ends_on"),
        # The renewal segment asks which active terms end in the coming 60 days: a range of
        # this index, not a scan of every term of the programme.
        Index(
            "ix_membership_terms_active_ends_on",
            "ends_on",
            "membership_id",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    membership_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE")
    )
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    kind: Mapped[TermKind] = mapped_column(str_enum(TermKind, "term_kind"))
    status: Mapped[TermStatus] = mapped_column(
        str_enum(TermStatus, "term_status"), default=TermStatus.ACTIVE
    )
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payments.id", ondelete="RESTRICT"), unique=True
    )

    membership: Mapped[Membership] = relationship(back_populates="terms", lazy="raise")

    def covers(self, day: date) -> bool:
        """Terms run from `starts_on` up to, not including, `ends_on`."""
        return self.status == TermStatus.ACTIVE and self.starts_on <= day < self.ends_on

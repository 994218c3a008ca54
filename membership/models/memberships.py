"""A right to a product over time, made of paid terms, held by one or more members."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, UOWTransaction, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

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
    __table_args__ = (
        # The renewal segment asks which memberships without auto-renew run out in the coming
        # 60 days: one range of this index, instead of probing the terms of every membership
        # whose term ends then. Status is in the index so the range needs no table visit.
        Index(
            "ix_memberships_renewal_due",
            "paid_until",
            "status",
            postgresql_where=text("NOT auto_renew"),
            sqlite_where=text("NOT auto_renew"),
        ),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    status: Mapped[MembershipStatus] = mapped_column(
        str_enum(MembershipStatus, "membership_status"),
        default=MembershipStatus.PENDING_PAYMENT,
        index=True,
    )
    auto_renew: Mapped[bool] = mapped_column(default=False)
    provider_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    cancelled_at: Mapped[datetime | None]
    # The (exclusive) end of the last active term, None without one: what `max(ends_on)` over
    # the terms would give, kept in step at every flush that adds or changes a term
    # (`_keep_paid_until`) so that reports can range over it. Bulk loaders that write terms
    # without the ORM set it themselves.
    paid_until: Mapped[date | None]

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


_TERMS_CHANGED = "membership_terms_changed"


def _term_changed(term: MembershipTerm) -> bool:
    state = inspect(term)
    return bool(
        state.attrs.status.history.has_changes() or state.attrs.ends_on.history.has_changes()
    )


@event.listens_for(Session, "before_flush")
def _note_term_changes(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    changed = [
        obj
        for obj in (*session.new, *session.deleted, *session.dirty)
        if isinstance(obj, MembershipTerm)
        and (obj in session.new or obj in session.deleted or _term_changed(obj))
    ]
    if changed:
        session.info.setdefault(_TERMS_CHANGED, []).extend(changed)


@event.listens_for(Session, "after_flush")
def _keep_paid_until(session: Session, _context: UOWTransaction) -> None:
    """Recompute `Membership.paid_until` of the memberships whose terms this flush wrote, in
    the database and on the loaded objects (which would otherwise hold the old date)."""
    ids = {term.membership_id for term in session.info.pop(_TERMS_CHANGED, ())} - {None}
    if not ids:
        return
    last = (
        select(func.max(MembershipTerm.ends_on))
        .where(
            MembershipTerm.membership_id == Membership.id,
            MembershipTerm.status == TermStatus.ACTIVE,
        )
        .scalar_subquery()
    )
    # On the connection, not the session: a Core statement in the middle of the flush.
    rows = session.connection().execute(
        update(Membership)
        .where(Membership.id.in_(ids))
        .values(paid_until=last)
        .returning(Membership.id, Membership.paid_until)
    )
    for membership_id, paid_until in rows:
        loaded = session.identity_map.get(Session.identity_key(Membership, membership_id))
        if loaded is not None:
            set_committed_value(loaded, "paid_until", paid_until)

"""The cards that are scanned: random numbers, a version that grows on reissue, one live each."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, BigIntPK, CreatedAt, Timestamps, str_enum
from membership.models.members import Member
from membership.models.memberships import Membership


class CardStatus(enum.StrEnum):
    TEMPORARY = "temporary"
    ACTIVE = "active"
    BLOCKED = "blocked"
    REPLACED = "replaced"
    EXPIRED = "expired"


LIVE_CARD_STATUSES = (CardStatus.TEMPORARY, CardStatus.ACTIVE)
_LIVE_SQL = "status IN ('temporary', 'active')"


class Card(UUIDPK, Timestamps, Base):
    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("visit_limit IS NULL OR visit_limit >= 1", name="visit_limit_positive"),
        # One live card per holder and membership: a reissue must retire the old card first.
        Index(
            "uq_cards_one_live_per_holder",
            "member_id",
            "membership_id",
            unique=True,
            postgresql_where=text(_LIVE_SQL),
            sqlite_where=text(_LIVE_SQL),
        ),
    )

    number: Mapped[str] = mapped_column(String(20), unique=True)
    version: Mapped[int] = mapped_column(default=1)
    status: Mapped[CardStatus] = mapped_column(
        str_enum(CardStatus, "card_status"), default=CardStatus.ACTIVE
    )
    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    membership_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    visit_limit: Mapped[int | None]
    status_reason: Mapped[str | None] = mapped_column(String(200))
    status_changed_at: Mapped[datetime | None]
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cards.id", ondelete="SET NULL")
    )
    issued_by_institution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("institutions.id", ondelete="SET NULL")
    )
    imported: Mapped[bool] = mapped_column(default=False)

    member: Mapped[Member] = relationship(lazy="raise")
    membership: Mapped[Membership | None] = relationship(lazy="raise")

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_CARD_STATUSES


class CardRevocation(CreatedAt, Base):
    """The scanners' revocation feed: append-only, and its id is the cursor they sync from.

    A scanner keeps only the latest entry per card number: `revoked` refuses every version of
    the card (blocked, lost, replaced, expired early), `min_version` refuses codes older than a
    reissue. Entries are never updated, so `?since=<id>` is a complete delta (rule 4).
    """

    __tablename__ = "card_revocations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    card_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cards.id", ondelete="SET NULL"), index=True
    )
    card_number: Mapped[str] = mapped_column(String(20), index=True)
    min_version: Mapped[int]
    revoked: Mapped[bool]
    reason: Mapped[str] = mapped_column(String(40))

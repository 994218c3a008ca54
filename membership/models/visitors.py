"""One row per institution and visitor with a counted visit there, kept in the check-in's
transaction (docs/reports.md, "Segments"): the segments read a visitor's history from here in
one row instead of grouping the visitor's check-ins."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import Base


class InstitutionVisitor(Base):
    """The first counted visit here and the latest four, newest first (NULL while fewer).

    Four because a loyal visitor has four visits in the year (`reports.segments.LOYAL_VISITS`).
    `member_id` is the member link of the latest counted visit that still has one, `linked_on`
    that visit's day: erasure and retention remove links, and the segments ask whether the
    population window still holds a linked visit. The institution is not a foreign key, as in
    the day counters: the row is derived and `membership.rollups.rebuild` recomputes it.
    """

    __tablename__ = "institution_visitors"
    __table_args__ = (
        # The segments read one institution's visitors by their latest visit (the population
        # window), on PostgreSQL from this index alone.
        Index(
            "ix_institution_visitors_institution_id_visit_1",
            "institution_id",
            "visit_1",
            postgresql_include=["first_visit", "visit_4", "member_id", "linked_on"],
        ),
    )

    institution_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    visitor_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_visit: Mapped[date]
    visit_1: Mapped[date]
    visit_2: Mapped[date | None]
    visit_3: Mapped[date | None]
    visit_4: Mapped[date | None]
    member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    linked_on: Mapped[date | None]

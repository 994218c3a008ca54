"""Every scan at a door, admitted or not; the table every visit report is built on."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import Base, BigIntPK, str_enum


class CheckinResult(enum.StrEnum):
    ADMITTED = "admitted"
    REENTRY = "reentry"
    REFUSED = "refused"


class Checkin(Base):
    __tablename__ = "checkins"
    __table_args__ = (
        # Re-sending an offline batch must not add rows (rule 2).
        UniqueConstraint("device_id", "client_scan_id"),
        # A visit is counted once per visitor, institution and local day (rule 1), whatever
        # races happen between two doors: the database refuses the second counted row.
        Index(
            "uq_checkins_one_counted_visit_per_day",
            "visitor_key",
            "institution_id",
            "local_date",
            unique=True,
            postgresql_where=text("counted"),
            sqlite_where=text("counted"),
        ),
        Index("ix_checkins_institution_id_scanned_at", "institution_id", "scanned_at"),
        Index("ix_checkins_institution_id_local_date", "institution_id", "local_date"),
        Index("ix_checkins_visitor_key_scanned_at", "visitor_key", "scanned_at"),
        Index("ix_checkins_card_id_scanned_at", "card_id", "scanned_at"),
        # Own-institution reports (visits, segments, flows, contacts) read only this index on
        # PostgreSQL (index-only scans), never the heap. SQLite has no INCLUDE; there the
        # key columns alone still serve the distinct-visitor counts.
        Index(
            "ix_checkins_counted_cover",
            "institution_id",
            "local_date",
            "visitor_key",
            postgresql_include=[
                "product_id",
                "scanned_at",
                "member_id",
                "age_band",
                "region",
            ],
            postgresql_where=text("counted"),
            sqlite_where=text("counted"),
        ),
        # The retention cut (membership/retention.py) finds the links older than the retention
        # period here, oldest day first; a cut row leaves the index, so a pass with nothing to
        # cut is one probe instead of a walk over every check-in before the cut-off.
        Index(
            "ix_checkins_linked_local_date",
            "local_date",
            postgresql_where=text("member_id IS NOT NULL"),
            sqlite_where=text("member_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    client_scan_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL")
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    venue_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("venues.id"))
    card_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cards.id", ondelete="SET NULL"))
    card_version: Mapped[int | None]
    # The member link is removed after the retention period or an erasure; the pseudonymous
    # visitor key stays, so every report gives the same figures afterwards (rule 5).
    member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    visitor_key: Mapped[str | None] = mapped_column(String(32))
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))
    scanned_at: Mapped[datetime]
    received_at: Mapped[datetime]
    local_date: Mapped[date]
    result: Mapped[CheckinResult] = mapped_column(str_enum(CheckinResult, "checkin_result"))
    reason: Mapped[str] = mapped_column(String(40))
    counted: Mapped[bool] = mapped_column(default=False)
    offline: Mapped[bool] = mapped_column(default=False)
    flagged: Mapped[bool] = mapped_column(default=False)
    override_reason: Mapped[str | None] = mapped_column(String(200))
    overridden_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL")
    )
    imported: Mapped[bool] = mapped_column(default=False)
    # The visitor's age band on `local_date` and postal-code region, fixed at scan time
    # (membership.demographics), so that erasing the member link changes no report (rule 5).
    age_band: Mapped[str | None] = mapped_column(String(8))
    region: Mapped[str | None] = mapped_column(String(8))

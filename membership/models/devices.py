"""Registered scanners: paired once with a short-lived code, then authenticated by their own key."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, Timestamps
from membership.models.institutions import Venue


class Device(UUIDPK, Timestamps, Base):
    __tablename__ = "devices"

    venue_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("venues.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    # Only hashes are kept: a leaked database must not let anyone pair or pose as a scanner.
    pairing_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    pairing_expires_at: Mapped[datetime | None]
    key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str | None] = mapped_column(String(12))
    paired_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]

    venue: Mapped[Venue] = relationship(lazy="raise")

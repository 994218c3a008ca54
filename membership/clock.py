"""Time helpers: the database stores timezone-aware UTC; "today" depends on a place's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_date(moment: datetime, timezone: str) -> date:
    """The calendar day of `moment` where the institution is, which decides "the same day"."""
    return moment.astimezone(ZoneInfo(timezone)).date()

"""What every report shares: the period, the counted-visit filter and the few dialect branches.

Reports run as SQL inside the database. SQLite and PostgreSQL must give identical figures, so
calendar work is done on `checkins.local_date` (already the institution's day) with portable
functions; the handful of places where the dialects differ are branched here, and only here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Date, Integer, and_, cast, extract, func, text
from sqlalchemy.ext.asyncio import AsyncSession

from membership.errors import InvalidValue, NotFound
from membership.models import Checkin, Institution

MAX_PERIOD_DAYS = 3 * 366
REPORT_WORK_MEM = "64MB"


class InvalidPeriod(InvalidValue):
    code = "invalid-period"
    title = "The report period is not valid"


class InstitutionNotFound(NotFound):
    code = "institution-not-found"
    title = "No such institution"


@dataclass(frozen=True, slots=True)
class Period:
    """Inclusive dates in the institution's time zone (the operator's for network reports)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidPeriod("the period ends before it starts")
        if (self.end - self.start).days >= MAX_PERIOD_DAYS:
            raise InvalidPeriod(f"a report period spans at most {MAX_PERIOD_DAYS} days")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def counted_visits(period: Period, institution_id: uuid.UUID | None = None) -> ColumnElement[bool]:
    """The one definition of a visit: a counted check-in on a local day inside the period.

    `counted` is tested as the bare column, the very predicate of the partial indexes on
    counted check-ins: PostgreSQL cannot prove `counted IS true` implies it, and so never used
    the covering index `ix_checkins_counted_cover` for a filter written that way.
    """
    clauses: list[ColumnElement[bool]] = [
        Checkin.counted.expression,
        Checkin.local_date.between(period.start, period.end),
    ]
    if institution_id is not None:
        clauses.append(Checkin.institution_id == institution_id)
    return and_(*clauses)


async def get_institution(session: AsyncSession, institution_id: uuid.UUID) -> Institution:
    institution = await session.get(Institution, institution_id)
    if institution is None:
        raise InstitutionNotFound()
    return institution


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def week_start(column: Any, dialect: str) -> ColumnElement[Any]:
    """The Monday of the ISO week of a date column: a date on PostgreSQL (date arithmetic, no
    formatting per row), 'YYYY-MM-DD' text on SQLite; `as_date` reads either."""
    if dialect == "postgresql":
        monday: ColumnElement[Any] = column - (cast(extract("isodow", column), Integer) - 1)
        return monday
    # 'weekday 0' moves forward to Sunday (or stays on it); six days back is that week's Monday.
    return func.date(column, "weekday 0", "-6 days")


def first_of_month(column: Any, dialect: str) -> ColumnElement[Any]:
    """The first day of the month of a date column, typed as `week_start`."""
    if dialect == "postgresql":
        return cast(func.date_trunc("month", column), Date)
    return func.date(column, "start of month")


def as_date(value: date | str) -> date:
    """A day as either database returns it."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def analytic_memory(session: AsyncSession) -> None:
    """Sort and hash memory for this transaction's report queries on PostgreSQL.

    A large institution's distinct-visitor figures hash or sort hundreds of thousands of
    visitor keys; with the server default (4 MB) each spills to disk several times. JIT is
    off: compiling each big aggregate costs about half a second, more than it saves here.
    """
    if dialect_name(session) == "postgresql":
        await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        await session.execute(text("SET LOCAL jit = off"))


def month_start(column: Any, dialect: str) -> ColumnElement[str]:
    """The month of a date column as 'YYYY-MM' text on both databases."""
    if dialect == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def weekday(column: Any, dialect: str) -> ColumnElement[int]:
    """0 = Monday … 6 = Sunday, as in Python's `date.weekday()`."""
    if dialect == "postgresql":
        return cast(extract("isodow", column), Integer) - 1
    return (cast(func.strftime("%w", column), Integer) + 6) % 7


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def utc_bounds(day: date, timezone: str) -> datetime:
    """The UTC instant at which `day` starts in `timezone` (for filtering UTC timestamps)."""
    return datetime(day.year, day.month, day.day, tzinfo=_zone(timezone)).astimezone(UTC)


def days_before(day: date, days: int) -> date:
    return day - timedelta(days=days)


def ratio(numerator: int, denominator: int) -> float | None:
    """A share as a float rounded to 6 places, so both databases print the same figure."""
    if denominator == 0:
        return None
    return round(numerator / denominator, 6)

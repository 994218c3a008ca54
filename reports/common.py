"""What every report shares: the period, the counted-visit filter and the few dialect branches.

Reports run as SQL inside the database. SQLite and PostgreSQL must give identical figures, so
calendar work is done on `checkins.local_date` (already the institution's day) with portable
functions; the handful of places where the dialects differ are branched here, and only here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    FromClause,
    Integer,
    Select,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    null,
    select,
    text,
    tuple_,
    union_all,
)
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


def visitor_order(column: Any, dialect: str) -> ColumnElement[Any]:
    """A visitor key to sort or partition by: bytewise on PostgreSQL.

    Keys are opaque; any consistent order will do, and the database's collation (C.UTF-8)
    compares text far more slowly than bytes when a large institution's visits are sorted by
    visitor. SQLite compares bytes already and knows no "C" collation.
    """
    ordered: ColumnElement[Any] = column.collate("C") if dialect == "postgresql" else column
    return ordered


def days_between(earlier: Any, later: Any, dialect: str) -> ColumnElement[Any]:
    """Whole days from one date column to another (NULL if either is)."""
    if dialect == "postgresql":
        difference: ColumnElement[Any] = later - earlier
        return difference
    return cast(func.julianday(later) - func.julianday(earlier), Integer)


def grouping_sets(
    source: FromClause,
    *,
    sets: Sequence[Sequence[ColumnElement[Any]]],
    measures: Sequence[ColumnElement[Any]],
    dialect: str,
) -> Select[Any] | CompoundSelect[Any]:
    """Several GROUP BYs of one source: rows (set number, every key, every measure).

    A key outside its row's set is NULL; the set number is the position in `sets`. PostgreSQL
    aggregates every set in one pass over the source (GROUPING SETS), which matters when the
    source is a sort of a million visits; SQLite has no grouping sets, so there each set is
    its own SELECT over the source, joined by UNION ALL.
    """
    keys: list[ColumnElement[Any]] = []
    for grouping in sets:
        keys.extend(key for key in grouping if not any(key is seen for seen in keys))
    if dialect == "postgresql":
        # GROUPING() has a bit per key, the first key highest, set where the key is not grouped.
        masks = {
            sum(
                1 << (len(keys) - 1 - i)
                for i, key in enumerate(keys)
                if not any(key is member for member in grouping)
            ): number
            for number, grouping in enumerate(sets)
        }
        number = case(masks, value=func.grouping(*keys))
        return (
            select(number.label("grouping_set"), *keys, *measures)
            .select_from(source)
            .group_by(func.grouping_sets(*(tuple_(*grouping) for grouping in sets)))
        )
    branches = [
        select(
            literal(number).label("grouping_set"),
            *(key if any(key is member for member in grouping) else null() for key in keys),
            *measures,
        )
        .select_from(source)
        .group_by(*grouping)
        for number, grouping in enumerate(sets)
    ]
    return union_all(*branches)


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

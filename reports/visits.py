"""Visit behaviour of one institution's own visitors over a period (docs/reports.md, "visits")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, cast, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Checkin, CheckinResult, Member, Product
from reports.common import (
    Period,
    counted_visits,
    dialect_name,
    ensure_sqlite_functions,
    get_institution,
    local_hour,
    month_start,
    ratio,
    week_start,
    weekday,
)
from reports.privacy import suppress_breakdown

# Lower bounds of the age bands in whole years; the last band is open-ended.
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0-12"),
    (13, "13-17"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-54"),
    (55, "55-64"),
    (65, "65+"),
)
UNKNOWN = "unknown"
REGION_PREFIX_LENGTH = 2
FREQUENCY_CAP = 10


@dataclass(frozen=True, slots=True)
class TimeBucket:
    start: date
    visits: int
    visitors: int


@dataclass(frozen=True, slots=True)
class HeatmapCell:
    weekday: int
    hour: int
    visits: int


@dataclass(frozen=True, slots=True)
class ReasonCount:
    result: str
    reason: str
    checkins: int


@dataclass(frozen=True, slots=True)
class FrequencyBucket:
    visits: int
    or_more: bool
    visitors: int


@dataclass(frozen=True, slots=True)
class ProductMix:
    product_id: uuid.UUID | None
    product_code: str | None
    visits: int
    visitors: int


@dataclass(frozen=True, slots=True)
class GroupCount:
    group: str
    visitors: int | None
    suppressed: bool


@dataclass(frozen=True, slots=True)
class VisitsReport:
    institution_id: uuid.UUID
    start: date
    end: date
    timezone: str
    k: int
    visits: int
    visitors: int
    new_visitors: int
    repeat_visitors: int
    repeat_visit_rate: float | None
    by_day: list[TimeBucket]
    by_week: list[TimeBucket]
    by_month: list[TimeBucket]
    heatmap: list[HeatmapCell]
    not_counted: list[ReasonCount]
    visits_per_visitor: list[FrequencyBucket]
    product_mix: list[ProductMix]
    age_bands: list[GroupCount]
    regions: list[GroupCount]


def age_cutoff(reference: date, years: int) -> date:
    """The latest birth date of someone at least `years` old on `reference`.

    Someone born on 29 February turns a year older on 1 March in common years, as in the usual
    `(yyyymmdd(reference) - yyyymmdd(birth)) // 10000` rule.
    """
    try:
        return reference.replace(year=reference.year - years)
    except ValueError:
        return date(reference.year - years, 2, 28)


async def visits_report(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period, k: int
) -> VisitsReport:
    """Every visit figure for one institution, each computed by one aggregate query."""
    institution = await get_institution(session, institution_id)
    await ensure_sqlite_functions(session)
    dialect = dialect_name(session)
    visit = counted_visits(period, institution_id)

    totals = (
        await session.execute(
            select(func.count(), func.count(distinct(Checkin.visitor_key))).where(visit)
        )
    ).one()
    visits, visitors = int(totals[0]), int(totals[1])

    async def buckets(label: str) -> list[tuple[str, int, int]]:
        expression = {
            "day": cast(Checkin.local_date, String),
            "week": week_start(Checkin.local_date, dialect),
            "month": month_start(Checkin.local_date, dialect),
        }[label].label("bucket")
        stmt = (
            select(expression, func.count(), func.count(distinct(Checkin.visitor_key)))
            .where(visit)
            .group_by(expression)
            .order_by(expression)
        )
        return [(str(b), int(v), int(u)) for b, v, u in (await session.execute(stmt)).all()]

    by_day = [TimeBucket(date.fromisoformat(b[:10]), v, u) for b, v, u in await buckets("day")]
    by_week = [TimeBucket(date.fromisoformat(b), v, u) for b, v, u in await buckets("week")]
    by_month = [
        TimeBucket(date.fromisoformat(f"{b}-01"), v, u) for b, v, u in await buckets("month")
    ]

    day_of_week = weekday(Checkin.local_date, dialect).label("weekday")
    hour = local_hour(Checkin.scanned_at, institution.timezone, dialect).label("hour")
    heatmap_rows = (
        await session.execute(
            select(day_of_week, hour, func.count())
            .where(visit)
            .group_by(day_of_week, hour)
            .order_by(day_of_week, hour)
        )
    ).all()
    heatmap = [HeatmapCell(int(d), int(h), int(n)) for d, h, n in heatmap_rows]

    not_counted_rows = (
        await session.execute(
            select(Checkin.result, Checkin.reason, func.count())
            .where(
                Checkin.institution_id == institution_id,
                Checkin.local_date.between(period.start, period.end),
                Checkin.result.in_([CheckinResult.REENTRY, CheckinResult.REFUSED]),
            )
            .group_by(Checkin.result, Checkin.reason)
            .order_by(Checkin.result, Checkin.reason)
        )
    ).all()
    not_counted = [ReasonCount(str(r), str(reason), int(n)) for r, reason, n in not_counted_rows]

    per_visitor = (
        select(Checkin.visitor_key, func.count().label("n"))
        .where(visit)
        .group_by(Checkin.visitor_key)
        .subquery()
    )
    capped = case((per_visitor.c.n >= FREQUENCY_CAP, FREQUENCY_CAP), else_=per_visitor.c.n).label(
        "capped"
    )
    frequency_rows = (
        await session.execute(select(capped, func.count()).group_by(capped).order_by(capped))
    ).all()
    visits_per_visitor = [
        FrequencyBucket(int(n), int(n) == FREQUENCY_CAP, int(c)) for n, c in frequency_rows
    ]
    repeat_visitors = sum(b.visitors for b in visits_per_visitor if b.visits >= 2)

    history = (
        select(Checkin.visitor_key)
        .where(
            Checkin.counted.is_(True),
            Checkin.institution_id == institution_id,
            Checkin.local_date <= period.end,
        )
        .group_by(Checkin.visitor_key)
        .having(func.min(Checkin.local_date) >= period.start)
        .subquery()
    )
    new_visitors = int((await session.execute(select(func.count()).select_from(history))).one()[0])

    product_rows = (
        await session.execute(
            select(
                Checkin.product_id,
                Product.code,
                func.count(),
                func.count(distinct(Checkin.visitor_key)),
            )
            .outerjoin(Product, Product.id == Checkin.product_id)
            .where(visit)
            .group_by(Checkin.product_id, Product.code)
        )
    ).all()
    product_mix = sorted(
        (ProductMix(pid, code, int(v), int(u)) for pid, code, v, u in product_rows),
        key=lambda p: (-p.visits, p.product_code or "~"),
    )

    people = _visitor_members(visit)
    band = case(
        *(
            (Member.birth_date <= age_cutoff(period.end, low), label)
            for low, label in reversed(AGE_BANDS)
        ),
        else_=None,
    ).label("band")
    age_counts = await _known_groups(session, select(band, func.count()), people, band)
    region = func.substr(Member.postal_code, 1, REGION_PREFIX_LENGTH).label("region")
    region_counts = await _known_groups(session, select(region, func.count()), people, region)
    band_order = {label: f"{i:02d}" for i, (_, label) in enumerate(AGE_BANDS)}

    return VisitsReport(
        institution_id=institution_id,
        start=period.start,
        end=period.end,
        timezone=institution.timezone,
        k=k,
        visits=visits,
        visitors=visitors,
        new_visitors=new_visitors,
        repeat_visitors=repeat_visitors,
        repeat_visit_rate=ratio(repeat_visitors, visitors),
        by_day=by_day,
        by_week=by_week,
        by_month=by_month,
        heatmap=heatmap,
        not_counted=not_counted,
        visits_per_visitor=visits_per_visitor,
        product_mix=product_mix,
        age_bands=_breakdown(age_counts, visitors, k, band_order),
        regions=_breakdown(region_counts, visitors, k, {}),
    )


def _visitor_members(visit: ColumnElement[bool]) -> Select[str | None, uuid.UUID | None]:
    """Each visitor's member, while the link exists; erased visitors fall under "unknown"."""
    return (
        select(Checkin.visitor_key, Checkin.member_id)
        .where(visit, Checkin.member_id.is_not(None))
        .distinct()
    )


async def _known_groups(
    session: AsyncSession,
    stmt: Select[str | None, int],
    people: Select[str | None, uuid.UUID | None],
    group: ColumnElement[Any],
) -> dict[str, int]:
    linked = people.subquery()
    rows = (
        await session.execute(
            stmt.select_from(linked).join(Member, Member.id == linked.c.member_id).group_by(group)
        )
    ).all()
    counts: dict[str, int] = {}
    for key, count in rows:
        name = key if key else UNKNOWN
        counts[name] = counts.get(name, 0) + int(count)
    return counts


def _breakdown(
    known: dict[str, int], visitors: int, k: int, order: dict[str, str]
) -> list[GroupCount]:
    """Add the visitors without a known value as "unknown", then suppress small cells."""
    cells = dict(known)
    unknown = visitors - sum(known.values())
    if unknown > 0:
        cells[UNKNOWN] = cells.get(UNKNOWN, 0) + unknown
    sort_key = {key: order.get(key, "~" + key if key == UNKNOWN else key) for key in cells}
    suppressed = suppress_breakdown(cells, k, sort_key=sort_key)
    return [
        GroupCount(key, suppressed[key], suppressed[key] is None)
        for key in sorted(cells, key=lambda key: sort_key[key])
    ]

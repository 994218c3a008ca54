"""Visit behaviour of one institution's own visitors over a period (docs/reports.md, "visits")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Uuid, and_, case, distinct, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from membership import rollups
from membership.demographics import AGE_BANDS
from membership.models import (
    NO_PRODUCT,
    Checkin,
    CheckinResult,
    InstitutionDayCount,
    Product,
    StoredReportKind,
)
from reports.common import (
    Period,
    analytic_memory,
    as_date,
    counted_visits,
    dialect_name,
    first_of_month,
    get_institution,
    ratio,
    week_start,
    weekday,
)
from reports.privacy import suppress_breakdown
from reports.stored import SOURCE_LIVE, stored_report

UNKNOWN = "unknown"
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
    # Where the figures come from: the closed period's stored report, or counted live now.
    source: str = SOURCE_LIVE
    computed_at: datetime | None = None


async def visits_report(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period, k: int
) -> VisitsReport:
    """Every visit figure for one institution.

    Sums (visits, heatmap, reasons, visits per day and per product) come from the day counters
    (`institution_day_counts`), a few thousand rows a year. Distinct-visitor figures are not
    additive: they read the counted check-ins from the covering index
    `ix_checkins_counted_cover` (per week, per month, per visitor, per product, latest visit).
    A scan this session made but has not committed is in the counters too (`apply_pending`).
    A closed standard period is read from its stored report while that holds (reports/stored.py).
    """
    stored = await stored_report(
        session,
        VisitsReport,
        report=StoredReportKind.VISITS,
        institution_id=institution_id,
        period=period,
        k=k,
    )
    if stored is not None:
        return stored
    institution = await get_institution(session, institution_id)
    await rollups.apply_pending(session)
    await analytic_memory(session)
    dialect = dialect_name(session)
    visit = counted_visits(period, institution_id)
    counts = InstitutionDayCount
    in_period = and_(
        counts.institution_id == institution_id,
        counts.local_date.between(period.start, period.end),
    )
    visits_here = and_(in_period, counts.counted.is_(True))
    summed = func.sum(counts.checkins)

    day_rows = (
        await session.execute(
            select(counts.local_date, summed)
            .where(visits_here)
            .group_by(counts.local_date)
            .order_by(counts.local_date)
        )
    ).all()
    # A visitor has at most one visit a day here, so a day's visitors are its visits.
    by_day = [TimeBucket(as_date(day), int(n), int(n)) for day, n in day_rows]
    visits = sum(bucket.visits for bucket in by_day)
    by_week = await _buckets(session, "week", dialect, visit, visits_here)
    by_month = await _buckets(session, "month", dialect, visit, visits_here)

    day_of_week = weekday(counts.local_date, dialect).label("weekday")
    heatmap_rows = (
        await session.execute(
            select(day_of_week, counts.hour, summed)
            .where(visits_here)
            .group_by(day_of_week, counts.hour)
            .order_by(day_of_week, counts.hour)
        )
    ).all()
    heatmap = [HeatmapCell(int(d), int(h), int(n)) for d, h, n in heatmap_rows]

    not_counted_rows = (
        await session.execute(
            select(counts.result, counts.reason, summed)
            .where(
                in_period,
                counts.result.in_([CheckinResult.REENTRY.value, CheckinResult.REFUSED.value]),
            )
            .group_by(counts.result, counts.reason)
            .order_by(counts.result, counts.reason)
        )
    ).all()
    not_counted = [ReasonCount(str(r), str(reason), int(n)) for r, reason, n in not_counted_rows]

    visits_per_visitor, visitors, new_visitors = await _frequency(
        session, institution_id, period, visit
    )
    repeat_visitors = sum(b.visitors for b in visits_per_visitor if b.visits >= 2)
    product_mix = await _product_mix(session, visit, visits_here)
    age_counts, region_counts = await _demographics(session, visit)
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


async def _buckets(
    session: AsyncSession,
    label: str,
    dialect: str,
    visit: ColumnElement[bool],
    visits_here: ColumnElement[bool],
) -> list[TimeBucket]:
    """Visits per week or month from the counters, distinct visitors from the check-ins."""

    def bucket(column: Any) -> ColumnElement[Any]:
        return (week_start if label == "week" else first_of_month)(column, dialect)

    counted_bucket = bucket(InstitutionDayCount.local_date).label("bucket")
    visit_rows = await session.execute(
        select(counted_bucket, func.sum(InstitutionDayCount.checkins))
        .where(visits_here)
        .group_by(counted_bucket)
    )
    visitors = await _distinct_visitors(session, bucket(Checkin.local_date), visit)
    return sorted(
        (TimeBucket(as_date(b), int(n), visitors.get(as_date(b), 0)) for b, n in visit_rows.all()),
        key=lambda t: t.start,
    )


async def _distinct_visitors(
    session: AsyncSession, group: ColumnElement[Any], visit: ColumnElement[bool]
) -> dict[Any, int]:
    """Distinct visitors per group, as a count over distinct (group, visitor) pairs.

    Written so because PostgreSQL can hash a DISTINCT, while `count(DISTINCT …)` always sorts.
    """
    pairs = select(group.label("grp"), Checkin.visitor_key).where(visit).distinct().subquery()
    rows = await session.execute(
        select(pairs.c.grp, func.count())
        .where(pairs.c.visitor_key.is_not(None))
        .group_by(pairs.c.grp)
    )
    return {(as_date(g) if isinstance(g, (date, str)) else g): int(n) for g, n in rows.all()}


async def _frequency(
    session: AsyncSession, institution_id: uuid.UUID, period: Period, visit: ColumnElement[bool]
) -> tuple[list[FrequencyBucket], int, int]:
    """Visits per visitor and visitors in one pass; then the new visitors.

    A visitor is new when no visit here lies before the period. Written as an anti-join in
    WHERE, so that PostgreSQL chooses between probing the unique index of visits per visitor
    and hashing the earlier visits (which wins when that index is not in memory).
    """
    per_visitor = (
        select(Checkin.visitor_key.label("visitor_key"), func.count().label("n"))
        .where(visit, Checkin.visitor_key.is_not(None))
        .group_by(Checkin.visitor_key)
        .subquery()
    )
    capped = case((per_visitor.c.n >= FREQUENCY_CAP, FREQUENCY_CAP), else_=per_visitor.c.n).label(
        "capped"
    )
    rows = (
        await session.execute(select(capped, func.count()).group_by(capped).order_by(capped))
    ).all()
    buckets = [FrequencyBucket(int(n), int(n) == FREQUENCY_CAP, int(c)) for n, c in rows]
    earlier = aliased(Checkin)
    seen_before = (
        select(earlier.id)
        .where(
            earlier.visitor_key == Checkin.visitor_key,
            earlier.institution_id == institution_id,
            earlier.counted.is_(True),
            earlier.local_date < period.start,
        )
        .exists()
    )
    new_visitors = await session.scalar(
        select(func.count(distinct(Checkin.visitor_key))).where(visit, ~seen_before)
    )
    return buckets, sum(b.visitors for b in buckets), int(new_visitors or 0)


async def _product_mix(
    session: AsyncSession, visit: ColumnElement[bool], visits_here: ColumnElement[bool]
) -> list[ProductMix]:
    counts = InstitutionDayCount
    visit_rows = (
        await session.execute(
            select(counts.product_id, func.sum(counts.checkins))
            .where(visits_here)
            .group_by(counts.product_id)
        )
    ).all()
    per_product = await _distinct_visitors(
        session, func.coalesce(Checkin.product_id, literal(NO_PRODUCT, Uuid())), visit
    )
    visitors = {uuid.UUID(str(p)): n for p, n in per_product.items()}
    ids = [p for p, _ in visit_rows if p != NO_PRODUCT]
    codes = dict(
        (await session.execute(select(Product.id, Product.code).where(Product.id.in_(ids)))).all()
    )
    mix = (
        ProductMix(
            None if p == NO_PRODUCT else p,
            codes.get(p),
            int(v),
            visitors.get(p, 0),
        )
        for p, v in visit_rows
    )
    return sorted(mix, key=lambda p: (-p.visits, p.product_code or "~"))


async def _demographics(
    session: AsyncSession, visit: ColumnElement[bool]
) -> tuple[dict[str, int], dict[str, int]]:
    """Visitors per age band and per region, each visitor as on their latest visit here.

    The band and region are the ones the check-in stored at scan time, so an erased member
    link changes nothing. Visitors without a known value are left to `_breakdown`.
    """
    latest = (
        select(
            Checkin.age_band,
            Checkin.region,
            func.row_number()
            .over(partition_by=Checkin.visitor_key, order_by=Checkin.local_date.desc())
            .label("rank"),
        )
        .where(visit, Checkin.visitor_key.is_not(None))
        .subquery()
    )
    rows = (
        await session.execute(
            select(latest.c.age_band, latest.c.region, func.count())
            .where(latest.c.rank == 1)
            .group_by(latest.c.age_band, latest.c.region)
        )
    ).all()
    bands: dict[str, int] = {}
    regions: dict[str, int] = {}
    for band, region, count in rows:
        if band:
            bands[band] = bands.get(band, 0) + int(count)
        if region:
            regions[region] = regions.get(region, 0) + int(count)
    return bands, regions


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

"""Visit behaviour of one institution's own visitors over a period (docs/reports.md, "visits")."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Uuid, and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import FunctionFilter, Over
from sqlalchemy.sql.functions import FunctionElement

from membership import rollups
from membership.demographics import AGE_BANDS
from membership.models import (
    NO_PRODUCT,
    Checkin,
    CheckinResult,
    InstitutionDayCount,
    InstitutionVisitor,
    Product,
    StoredReportKind,
)
from reports.common import (
    Period,
    analytic_memory,
    as_date,
    counted_visits,
    days_between,
    dialect_name,
    get_institution,
    grouping_sets,
    ratio,
    visitor_order,
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
    additive: they come from one ordered pass over the period's counted check-ins in the
    covering index `ix_checkins_counted_cover` (`_visitor_figures`), and the new visitors from
    the visitor rows (`institution_visitors`). A scan this session made but has not committed is
    in the counters and visitor rows too (`apply_pending`).
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
        return await _coded_as_now(session, stored)
    institution = await get_institution(session, institution_id)
    await rollups.apply_pending(session)
    await analytic_memory(session)
    dialect = dialect_name(session)
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

    product_visits = {
        uuid.UUID(str(p)): int(n)
        for p, n in await session.execute(
            select(counts.product_id, summed).where(visits_here).group_by(counts.product_id)
        )
    }
    figures = await _visitor_figures(
        session,
        visit=counted_visits(period, institution_id),
        products=sorted(product_visits),
        dialect=dialect,
    )
    visitors = sum(figures.frequency.values())
    visits_per_visitor = [
        FrequencyBucket(n, n == FREQUENCY_CAP, count)
        for n, count in sorted(figures.frequency.items())
    ]
    repeat_visitors = sum(b.visitors for b in visits_per_visitor if b.visits >= 2)
    band_order = {label: f"{i:02d}" for i, (_, label) in enumerate(AGE_BANDS)}

    return VisitsReport(
        institution_id=institution_id,
        start=period.start,
        end=period.end,
        timezone=institution.timezone,
        k=k,
        visits=visits,
        visitors=visitors,
        new_visitors=await _new_visitors(session, institution_id, period),
        repeat_visitors=repeat_visitors,
        repeat_visit_rate=ratio(repeat_visitors, visitors),
        by_day=by_day,
        by_week=_buckets(by_day, figures.first_in_week, _monday),
        by_month=_buckets(by_day, figures.first_in_month, _first_of_month),
        heatmap=heatmap,
        not_counted=not_counted,
        visits_per_visitor=visits_per_visitor,
        product_mix=await _product_mix(session, product_visits, figures.product_visitors),
        age_bands=_breakdown(figures.age_bands, visitors, k, band_order),
        regions=_breakdown(figures.regions, visitors, k, {}),
    )


@dataclass(frozen=True, slots=True)
class _VisitorFigures:
    """The distinct-visitor figures of one pass (`_visitor_figures`)."""

    # Visits per local day that are their visitor's first in that ISO week / calendar month
    # within the period: their count in a week or month is its distinct visitors.
    first_in_week: Counter[date]
    first_in_month: Counter[date]
    # Visitors per number of visits in the period (capped at FREQUENCY_CAP).
    frequency: dict[int, int]
    product_visitors: dict[uuid.UUID, int]
    # Visitors per known age band and region of their latest visit in the period.
    age_bands: dict[str, int]
    regions: dict[str, int]


# A gap of more than 30 days since the visitor's previous visit in the period starts a new week
# and a new month whatever the day, so the gap is grouped capped here: a few thousand groups.
_GAP_CAP = 31


async def _visitor_figures(
    session: AsyncSession,
    *,
    visit: ColumnElement[bool],
    products: list[uuid.UUID],
    dialect: str,
) -> _VisitorFigures:
    """Every distinct-visitor figure from one ordered pass over the period's visits.

    Each visit is numbered within its visitor's visits in the period, in date order (one sort
    by visitor and day; grouping by hash once per figure cost a pass over the index and a hash
    of every visit for each of five figures, seconds each for a large institution). From its
    previous and next visit: a visit is its visitor's first in its week (month) when the
    previous one lies before that week (month), which only the gap in days and the day itself
    decide; the visitor's latest visit in the period is the one with no next, and there its
    running number is the visitor's visit count and the running count per product says which
    products the visitor used. Visits without a visitor key are visits but no visitor.
    """
    product = func.coalesce(Checkin.product_id, literal(NO_PRODUCT, Uuid()))
    visitor = visitor_order(Checkin.visitor_key, dialect)

    def by_day(function: FunctionElement[Any] | FunctionFilter[Any]) -> Over[Any]:
        return function.over(partition_by=visitor, order_by=Checkin.local_date)

    ordered = (
        select(
            Checkin.local_date,
            Checkin.age_band,
            Checkin.region,
            days_between(by_day(func.lag(Checkin.local_date)), Checkin.local_date, dialect).label(
                "gap"
            ),
            by_day(func.lead(Checkin.local_date)).label("next_visit"),
            by_day(func.row_number()).label("visits"),
            *(
                by_day(func.count().filter(product == p)).label(f"product_{i}")
                for i, p in enumerate(products)
            ),
        )
        .where(visit, Checkin.visitor_key.is_not(None))
        .subquery()
    )
    latest = ordered.c.next_visit.is_(None)
    gap = case((ordered.c.gap > _GAP_CAP, _GAP_CAP), else_=ordered.c.gap)
    capped = case((ordered.c.visits >= FREQUENCY_CAP, FREQUENCY_CAP), else_=ordered.c.visits)
    days, frequency, demographics, per_product = range(4)
    statement = grouping_sets(
        ordered,
        sets=[
            (ordered.c.local_date, gap),
            (capped,),
            (ordered.c.age_band, ordered.c.region),
            (),
        ],
        measures=[
            func.count().label("visits"),
            func.count().filter(latest).label("visitors"),
            *(
                func.count().filter(and_(latest, ordered.c[f"product_{i}"] > 0))
                for i in range(len(products))
            ),
        ],
        dialect=dialect,
    )
    first_in_week: Counter[date] = Counter()
    first_in_month: Counter[date] = Counter()
    per_visits: dict[int, int] = {}
    bands: dict[str, int] = {}
    regions: dict[str, int] = {}
    product_visitors: dict[uuid.UUID, int] = {}
    for row in await session.execute(statement):
        kind, day, days_since, n, band, region, visits, visitors, *used = row
        if kind == days:
            local = as_date(day)
            # No previous visit in the period, or one before this week's Monday / month's 1st.
            if days_since is None or days_since > local.weekday():
                first_in_week[local] += visits
            if days_since is None or days_since > local.day - 1:
                first_in_month[local] += visits
        elif kind == frequency:
            if visitors:
                per_visits[int(n)] = int(visitors)
        elif kind == demographics and visitors:
            if band:
                bands[band] = bands.get(band, 0) + int(visitors)
            if region:
                regions[region] = regions.get(region, 0) + int(visitors)
        elif kind == per_product:
            product_visitors = {p: int(n) for p, n in zip(products, used, strict=True)}
    return _VisitorFigures(
        first_in_week, first_in_month, per_visits, product_visitors, bands, regions
    )


async def _new_visitors(session: AsyncSession, institution_id: uuid.UUID, period: Period) -> int:
    """Visitors whose first visit ever here falls in the period, from their visitor rows.

    The row holds every counted visit with a visitor key (kept at commit, pending notes
    applied first), so this equals "a visit in the period and none here before it" without
    reading earlier visits. A first visit in the period means a latest one on or after its
    start, which bounds the index range.
    """
    rows = InstitutionVisitor
    count = await session.scalar(
        select(func.count()).where(
            rows.institution_id == institution_id,
            rows.visit_1 >= period.start,
            rows.first_visit.between(period.start, period.end),
        )
    )
    return int(count or 0)


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _first_of_month(day: date) -> date:
    return day.replace(day=1)


def _buckets(
    by_day: list[TimeBucket], first_visits: Counter[date], label: Callable[[date], date]
) -> list[TimeBucket]:
    """Visits and distinct visitors per week or month from the days inside the period.

    A week's (month's) distinct visitors are its visits that were their visitor's first in it.
    """
    visits: Counter[date] = Counter()
    visitors: Counter[date] = Counter()
    for bucket in by_day:
        visits[label(bucket.start)] += bucket.visits
    for day, n in first_visits.items():
        visitors[label(day)] += n
    return [TimeBucket(start, visits[start], visitors[start]) for start in sorted(visits)]


async def _product_codes(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    return dict(
        (await session.execute(select(Product.id, Product.code).where(Product.id.in_(ids)))).all()
    )


def _ranked_mix(mix: Iterable[ProductMix]) -> list[ProductMix]:
    return sorted(mix, key=lambda p: (-p.visits, p.product_code or "~"))


async def _product_mix(
    session: AsyncSession, visits: dict[uuid.UUID, int], visitors: dict[uuid.UUID, int]
) -> list[ProductMix]:
    codes = await _product_codes(session, (p for p in visits if p != NO_PRODUCT))
    return _ranked_mix(
        ProductMix(None if p == NO_PRODUCT else p, codes.get(p), n, visitors.get(p, 0))
        for p, n in visits.items()
    )


async def _coded_as_now(session: AsyncSession, report: VisitsReport) -> VisitsReport:
    """A stored report with today's product codes, ranked again: a product recoded since the
    period was computed reads as the live report would show it."""
    codes = await _product_codes(
        session, (p.product_id for p in report.product_mix if p.product_id is not None)
    )
    mix = (
        dataclasses.replace(p, product_code=codes.get(p.product_id) if p.product_id else None)
        for p in report.product_mix
    )
    return dataclasses.replace(report, product_mix=_ranked_mix(mix))


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

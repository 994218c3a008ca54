"""Which other institutions this institution's visitors also visit (affinity), and same-day flows.

Every figure here is about other institutions' visitors, so every count below k is withheld
(docs/reports.md, "Privacy"); the ranking places withheld rows last, in code order, so that their
position does not hint at their size.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, case, distinct, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Checkin, Institution, StoredReportKind
from reports.common import (
    Period,
    analytic_memory,
    counted_visits,
    dialect_name,
    get_institution,
    ratio,
)
from reports.periods import (
    AffinityCounts,
    affinity_counts,
    programme_visitors,
    stored_affinity,
)
from reports.privacy import suppress
from reports.stored import SOURCE_LIVE, SOURCE_STORED, stored_report


@dataclass(frozen=True, slots=True)
class AffinityRow:
    institution_id: uuid.UUID
    institution_code: str
    institution_name: str
    both: int | None
    share: float | None
    lift: float | None
    jaccard: float | None
    suppressed: bool


@dataclass(frozen=True, slots=True)
class AffinityReport:
    institution_id: uuid.UUID
    start: date
    end: date
    k: int
    visitors: int
    by_lift: list[AffinityRow]
    by_share: list[AffinityRow]
    # Where the counts come from: the closed period's rollup, or counted live now.
    source: str = SOURCE_LIVE
    computed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FlowRow:
    institution_id: uuid.UUID
    institution_code: str
    institution_name: str
    visitors: int | None
    visits: int | None
    suppressed: bool


@dataclass(frozen=True, slots=True)
class FlowsReport:
    institution_id: uuid.UUID
    start: date
    end: date
    k: int
    before: list[FlowRow]
    after: list[FlowRow]
    # Where the figures come from: the closed period's stored report, or counted live now.
    source: str = SOURCE_LIVE
    computed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AffinityFigures:
    both: int | None
    share: float | None
    lift: float | None
    jaccard: float | None

    @property
    def suppressed(self) -> bool:
        return self.both is None


def affinity_figures(
    *, both: int, visitors_a: int, visitors_b: int, visitors_any: int, k: int
) -> AffinityFigures:
    """The definitions of docs/reports.md, withheld when the overlap or B's visitors are below k.

    B's own visitor count is never published, but it is checked: with a tiny B, `lift` would
    single out B's few visitors as surely as `both` would.
    """
    if both < k or visitors_b < k:
        return AffinityFigures(None, None, None, None)
    share = ratio(both, visitors_a)
    lift = ratio(both * visitors_any, visitors_a * visitors_b)
    return AffinityFigures(both, share, lift, ratio(both, visitors_a + visitors_b - both))


async def affinity_report(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period, k: int
) -> AffinityReport:
    """Affinity of this institution with every other institution visited in the period.

    A closed standard period is read from its rollup while that still holds every visit
    (reports/periods.py); any other period, or one changed since, is counted live.
    """
    await get_institution(session, institution_id)
    counts = await stored_affinity(
        session, institution_id=institution_id, period=period
    ) or await _live_counts(session, institution_id=institution_id, period=period)
    names = {
        row[0]: (str(row[1]), str(row[2]))
        for row in await session.execute(
            select(Institution.id, Institution.code, Institution.name).where(
                Institution.id.in_([other_id for other_id, _, _ in counts.others])
            )
        )
    }
    result: list[AffinityRow] = []
    for other_id, visitors_b, both in counts.others:
        figures = affinity_figures(
            both=both,
            visitors_a=counts.visitors_a,
            visitors_b=visitors_b,
            visitors_any=counts.visitors_any,
            k=k,
        )
        code, name = names[other_id]
        result.append(
            AffinityRow(
                other_id,
                code,
                name,
                figures.both,
                figures.share,
                figures.lift,
                figures.jaccard,
                figures.suppressed,
            )
        )
    return AffinityReport(
        institution_id=institution_id,
        start=period.start,
        end=period.end,
        k=k,
        visitors=counts.visitors_a,
        by_lift=_ranked(result, lambda row: row.lift),
        by_share=_ranked(result, lambda row: row.share),
        source=SOURCE_LIVE if counts.computed_at is None else SOURCE_STORED,
        computed_at=counts.computed_at,
    )


async def _live_counts(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period
) -> AffinityCounts:
    """The counts affinity is computed from, read from `checkins` now."""
    await analytic_memory(session)
    if dialect_name(session) == "postgresql":
        return await affinity_counts(session, institution_id=institution_id, period=period)
    visit = counted_visits(period)
    ours = (
        select(Checkin.visitor_key)
        .where(counted_visits(period, institution_id), Checkin.visitor_key.is_not(None))
        .distinct()
        .subquery()
    )
    visitors_a = int((await session.execute(select(func.count()).select_from(ours))).scalar_one())
    visitors_any = int((await session.execute(programme_visitors(period))).scalar_one())
    per_institution = (
        select(Checkin.institution_id, func.count(distinct(Checkin.visitor_key)).label("n"))
        .where(visit, Checkin.visitor_key.is_not(None), Checkin.institution_id != institution_id)
        .group_by(Checkin.institution_id)
        .subquery()
    )
    shared = (
        select(Checkin.institution_id, func.count(distinct(Checkin.visitor_key)).label("both"))
        .join(ours, ours.c.visitor_key == Checkin.visitor_key)
        .where(visit, Checkin.institution_id != institution_id)
        .group_by(Checkin.institution_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            per_institution.c.institution_id, per_institution.c.n, func.coalesce(shared.c.both, 0)
        ).outerjoin(shared, shared.c.institution_id == per_institution.c.institution_id)
    )
    return AffinityCounts(
        visitors_a=visitors_a,
        visitors_any=visitors_any,
        others=[(other_id, int(n), int(both)) for other_id, n, both in rows],
    )


def _ranked(
    rows: list[AffinityRow], measure: Callable[[AffinityRow], float | None]
) -> list[AffinityRow]:
    shown = sorted(
        (row for row in rows if not row.suppressed),
        key=lambda row: (-(measure(row) or 0.0), -(row.both or 0), row.institution_code),
    )
    withheld = sorted((row for row in rows if row.suppressed), key=lambda r: r.institution_code)
    return shown + withheld


async def flows_report(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period, k: int
) -> FlowsReport:
    """Where this institution's visitors went earlier and later on the same local day.

    A flow pairs a counted visit here with a counted visit elsewhere by the same visitor on the
    same local date; it is "before" when the other visit was scanned earlier, "after" when later.
    A closed standard period is read from its stored report while that holds (reports/stored.py).
    """
    stored = await stored_report(
        session,
        FlowsReport,
        report=StoredReportKind.FLOWS,
        institution_id=institution_id,
        period=period,
        k=k,
    )
    if stored is not None:
        return await _named_as_now(session, stored)
    await get_institution(session, institution_id)
    # JIT off and room to hash a large institution's visits: with the server defaults the
    # join's compilation alone took about 4 s of a national year (EXPLAIN ANALYZE).
    await analytic_memory(session)
    reports = await flows_reports(session, institution_ids=[institution_id], period=period, k=k)
    return reports[institution_id]


async def flows_reports(
    session: AsyncSession, *, institution_ids: Sequence[uuid.UUID], period: Period, k: int
) -> dict[uuid.UUID, FlowsReport]:
    """The flows reports of these institutions, counted live by one statement.

    For one institution the statement looks up each of its visits' same-day visits elsewhere;
    for many (the refresh stores every visited institution's) it joins the period's visits
    with themselves once: at national scale a month of 500 institutions takes seconds that
    way, against minutes for 500 statements that each look up their visits one by one.
    """
    one = institution_ids[0] if len(institution_ids) == 1 else None
    here = (
        select(Checkin.institution_id, Checkin.visitor_key, Checkin.local_date, Checkin.scanned_at)
        .where(counted_visits(period, one))
        .subquery()
    )
    other = Checkin.__table__.alias("other")
    # Both directions in one join, so each visit here meets its same-day visits elsewhere once.
    direction = case(
        (other.c.scanned_at < here.c.scanned_at, literal("before")), else_=literal("after")
    ).label("direction")
    stmt = (
        select(
            here.c.institution_id,
            direction,
            Institution.id,
            Institution.code,
            Institution.name,
            func.count(distinct(here.c.visitor_key)),
            func.count(),
        )
        .select_from(here)
        .join(
            other,
            and_(
                other.c.visitor_key == here.c.visitor_key,
                other.c.local_date == here.c.local_date,
                # The bare column, the predicate of the partial unique index on (visitor,
                # institution, day): a small institution's visits each probe that index for
                # the visitor's counted visits and read only the same-day ones from the heap.
                other.c.counted,
                other.c.institution_id != here.c.institution_id,
                other.c.scanned_at != here.c.scanned_at,
                # Implied by the same day; lets the planner read only the period's visits.
                other.c.local_date.between(period.start, period.end),
            ),
        )
        .join(Institution, Institution.id == other.c.institution_id)
        .group_by(
            here.c.institution_id, direction, Institution.id, Institution.code, Institution.name
        )
    )
    found: dict[uuid.UUID, dict[str, list[FlowRow]]] = {
        institution_id: {"before": [], "after": []} for institution_id in institution_ids
    }
    for here_id, name, other_id, code, inst_name, visitors, visits in await session.execute(stmt):
        if here_id not in found:
            continue
        withheld = suppress(int(visitors), k) is None
        found[here_id][str(name)].append(
            FlowRow(
                other_id,
                code,
                inst_name,
                None if withheld else int(visitors),
                None if withheld else int(visits),
                withheld,
            )
        )
    return {
        institution_id: FlowsReport(
            institution_id=institution_id,
            start=period.start,
            end=period.end,
            k=k,
            before=_ranked_flows(rows["before"]),
            after=_ranked_flows(rows["after"]),
        )
        for institution_id, rows in found.items()
    }


async def _named_as_now(session: AsyncSession, report: FlowsReport) -> FlowsReport:
    """A stored report with the other institutions' codes and names of today, ranked again:
    one renamed since the period was computed reads as the live report would show it."""
    ids = {row.institution_id for row in (*report.before, *report.after)}
    if not ids:
        return report
    names = {
        institution_id: (code, name)
        for institution_id, code, name in await session.execute(
            select(Institution.id, Institution.code, Institution.name).where(
                Institution.id.in_(ids)
            )
        )
    }

    def renamed(rows: list[FlowRow]) -> list[FlowRow]:
        return _ranked_flows(
            [
                dataclasses.replace(
                    row,
                    institution_code=names[row.institution_id][0],
                    institution_name=names[row.institution_id][1],
                )
                for row in rows
            ]
        )

    return dataclasses.replace(report, before=renamed(report.before), after=renamed(report.after))


def _ranked_flows(rows: list[FlowRow]) -> list[FlowRow]:
    """Largest flows first; withheld ones last, in code order, so their place hints nothing."""
    shown = sorted(
        (r for r in rows if not r.suppressed),
        key=lambda r: (-(r.visitors or 0), -(r.visits or 0), r.institution_code),
    )
    return shown + sorted((r for r in rows if r.suppressed), key=lambda r: r.institution_code)

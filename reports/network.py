"""The operator's view of the whole programme: the affinity matrix and the top same-day flows.

Small cells are withheld here too (rule 5): the network report is the one institutions ask the
operator to share, and the operator's own staff need no single-person figures either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from itertools import combinations

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Checkin, Institution
from reports.affinity import affinity_figures
from reports.common import Period, analytic_memory
from reports.periods import NetworkCounts, programme_counts, stored_network
from reports.privacy import suppress
from reports.stored import SOURCE_LIVE, SOURCE_STORED

TOP_FLOWS = 50


@dataclass(frozen=True, slots=True)
class NetworkInstitution:
    institution_id: uuid.UUID
    institution_code: str
    institution_name: str
    visitors: int | None
    suppressed: bool


@dataclass(frozen=True, slots=True)
class MatrixCell:
    """One unordered pair, `a` before `b` in code order; `share_ab` = both / visitors(a)."""

    a_code: str
    b_code: str
    both: int | None
    share_ab: float | None
    share_ba: float | None
    lift: float | None
    jaccard: float | None
    suppressed: bool


@dataclass(frozen=True, slots=True)
class NetworkFlow:
    from_code: str
    to_code: str
    visitors: int
    visits: int


@dataclass(frozen=True, slots=True)
class NetworkReport:
    start: date
    end: date
    k: int
    visitors: int
    institutions: list[NetworkInstitution]
    matrix: list[MatrixCell]
    top_flows: list[NetworkFlow]
    # Where the matrix's counts come from: the closed period's rollup, or counted live now.
    # The top flows are counted live either way.
    source: str = SOURCE_LIVE
    computed_at: datetime | None = None


async def network_report(
    session: AsyncSession, *, period: Period, k: int, top: int = TOP_FLOWS
) -> NetworkReport:
    """Pairwise affinity of every two institutions visited in the period, and the top flows.

    A closed standard period is read from its rollup while that still holds every visit
    (reports/periods.py); any other period, or one changed since, is counted live.
    """
    counts = await stored_network(session, period=period) or await _live_counts(
        session, period=period
    )
    visitors_any = counts.visitors_any
    visitors = {iid: n for iid, _, _, n in counts.institutions}
    codes = {iid: code for iid, code, _, _ in counts.institutions}
    shared = counts.shared

    matrix: list[MatrixCell] = []
    ordered = sorted(visitors, key=lambda i: codes[i])
    for first, second in combinations(ordered, 2):
        both = shared.get(frozenset((first, second)), 0)
        forward = affinity_figures(
            both=both,
            visitors_a=visitors[first],
            visitors_b=visitors[second],
            visitors_any=visitors_any,
            k=k,
        )
        backward = affinity_figures(
            both=both,
            visitors_a=visitors[second],
            visitors_b=visitors[first],
            visitors_any=visitors_any,
            k=k,
        )
        withheld = forward.suppressed or backward.suppressed
        matrix.append(
            MatrixCell(
                codes[first],
                codes[second],
                None if withheld else forward.both,
                None if withheld else forward.share,
                None if withheld else backward.share,
                None if withheld else forward.lift,
                None if withheld else forward.jaccard,
                withheld,
            )
        )

    institutions = [
        NetworkInstitution(
            i, str(code), str(name), suppress(visitors[i], k), suppress(visitors[i], k) is None
        )
        for i, code, name, _ in counts.institutions
    ]
    return NetworkReport(
        start=period.start,
        end=period.end,
        k=k,
        visitors=visitors_any,
        institutions=institutions,
        matrix=matrix,
        top_flows=await _top_flows(session, period=period, k=k, top=top),
        source=SOURCE_LIVE if counts.computed_at is None else SOURCE_STORED,
        computed_at=counts.computed_at,
    )


async def _live_counts(session: AsyncSession, *, period: Period) -> NetworkCounts:
    """The counts the matrix is computed from, read from `checkins` now."""
    await analytic_memory(session)
    counts = await programme_counts(session, period=period)
    institution_rows = await session.execute(
        select(Institution.id, Institution.code, Institution.name)
        .where(Institution.id.in_(list(counts.visitors)))
        .order_by(Institution.code)
    )
    return NetworkCounts(
        visitors_any=counts.visitors_any,
        institutions=[
            (i, str(code), str(name), counts.visitors[i]) for i, code, name in institution_rows
        ],
        shared={frozenset(pair): n for pair, n in counts.shared.items()},
    )


async def _top_flows(
    session: AsyncSession, *, period: Period, k: int, top: int
) -> list[NetworkFlow]:
    """Same-day moves from one institution to another, by visitors; cells below k are left out.

    A withheld flow cannot be ranked without hinting at its size, so the list holds only flows
    of at least k visitors.
    """
    first = Checkin.__table__.alias("first")
    then = Checkin.__table__.alias("then")
    source = Institution.__table__.alias("source")
    target = Institution.__table__.alias("target")
    visitors = func.count(distinct(first.c.visitor_key))
    stmt = (
        select(source.c.code, target.c.code, visitors, func.count())
        .select_from(first)
        .join(
            then,
            and_(
                then.c.visitor_key == first.c.visitor_key,
                then.c.local_date == first.c.local_date,
                # Implied by the day above, but said, so that only the period's visits are
                # hashed for the join, not every visit ever (a quarter: 13 s to 9 s).
                then.c.local_date.between(period.start, period.end),
                then.c.counted,
                then.c.institution_id != first.c.institution_id,
                then.c.scanned_at > first.c.scanned_at,
            ),
        )
        .join(source, source.c.id == first.c.institution_id)
        .join(target, target.c.id == then.c.institution_id)
        .where(first.c.counted, first.c.local_date.between(period.start, period.end))
        .group_by(source.c.code, target.c.code)
        .having(visitors >= k)
        .order_by(visitors.desc(), func.count().desc(), source.c.code, target.c.code)
        .limit(top)
    )
    return [
        NetworkFlow(str(s), str(t), int(v), int(n)) for s, t, v, n in (await session.execute(stmt))
    ]

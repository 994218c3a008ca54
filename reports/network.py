"""The operator's view of the whole programme: the affinity matrix and the top same-day flows.

Small cells are withheld here too (rule 5): the network report is the one institutions ask the
operator to share, and the operator's own staff need no single-person figures either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from itertools import combinations

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Checkin, Institution
from reports.affinity import affinity_figures
from reports.common import Period, counted_visits
from reports.privacy import suppress

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


async def network_report(
    session: AsyncSession, *, period: Period, k: int, top: int = TOP_FLOWS
) -> NetworkReport:
    """Pairwise affinity of every two institutions visited in the period, and the top flows."""
    visit = counted_visits(period)
    pairs = (
        select(Checkin.visitor_key, Checkin.institution_id)
        .where(visit)
        .group_by(Checkin.visitor_key, Checkin.institution_id)
        .subquery()
    )
    visitors_any = int(
        (
            await session.execute(select(func.count(distinct(Checkin.visitor_key))).where(visit))
        ).scalar_one()
    )
    institution_rows = (
        await session.execute(
            select(Institution.id, Institution.code, Institution.name, func.count())
            .join(pairs, pairs.c.institution_id == Institution.id)
            .group_by(Institution.id, Institution.code, Institution.name)
            .order_by(Institution.code)
        )
    ).all()
    visitors = {row[0]: int(row[3]) for row in institution_rows}
    codes = {row[0]: str(row[1]) for row in institution_rows}

    a, b = pairs.alias("a"), pairs.alias("b")
    shared_rows = (
        await session.execute(
            select(a.c.institution_id, b.c.institution_id, func.count())
            .join(
                b,
                and_(
                    a.c.visitor_key == b.c.visitor_key,
                    a.c.institution_id < b.c.institution_id,
                ),
            )
            .group_by(a.c.institution_id, b.c.institution_id)
        )
    ).all()
    shared = {frozenset((x, y)): int(n) for x, y, n in shared_rows}

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
        for i, code, name, _ in institution_rows
    ]
    return NetworkReport(
        start=period.start,
        end=period.end,
        k=k,
        visitors=visitors_any,
        institutions=institutions,
        matrix=matrix,
        top_flows=await _top_flows(session, period=period, k=k, top=top),
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
                then.c.counted.is_(True),
                then.c.institution_id != first.c.institution_id,
                then.c.scanned_at > first.c.scanned_at,
            ),
        )
        .join(source, source.c.id == first.c.institution_id)
        .join(target, target.c.id == then.c.institution_id)
        .where(first.c.counted.is_(True), first.c.local_date.between(period.start, period.end))
        .group_by(source.c.code, target.c.code)
        .having(visitors >= k)
        .order_by(visitors.desc(), func.count().desc(), source.c.code, target.c.code)
        .limit(top)
    )
    return [
        NetworkFlow(str(s), str(t), int(v), int(n)) for s, t, v, n in (await session.execute(stmt))
    ]

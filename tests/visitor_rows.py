"""The visitor rows (`institution_visitors`) as stored, and as their definition gives them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Checkin, InstitutionVisitor

Row = tuple[date, date, date | None, date | None, date | None, uuid.UUID | None, date | None]


async def visitor_rows(session: AsyncSession) -> dict[tuple[uuid.UUID, str], Row]:
    rows = (await session.execute(select(InstitutionVisitor))).scalars().all()
    return {
        (r.institution_id, r.visitor_key): (
            r.first_visit,
            r.visit_1,
            r.visit_2,
            r.visit_3,
            r.visit_4,
            r.member_id,
            r.linked_on,
        )
        for r in rows
    }


async def brute_visitor_rows(session: AsyncSession) -> dict[tuple[uuid.UUID, str], Row]:
    """Straight from the definition: each visitor's counted check-ins, grouped in Python."""
    visits: dict[tuple[uuid.UUID, str], list[Checkin]] = defaultdict(list)
    for c in (await session.execute(select(Checkin).where(Checkin.counted))).scalars():
        if c.visitor_key is not None:
            visits[(c.institution_id, c.visitor_key)].append(c)
    expected: dict[tuple[uuid.UUID, str], Row] = {}
    for key, checkins in visits.items():
        newest = sorted(checkins, key=lambda c: c.local_date, reverse=True)
        days: list[date | None] = [c.local_date for c in newest[:4]]
        days += [None] * (4 - len(days))
        linked = [c for c in newest if c.member_id is not None][:1]
        expected[key] = (
            newest[-1].local_date,
            newest[0].local_date,
            days[1],
            days[2],
            days[3],
            linked[0].member_id if linked else None,
            linked[0].local_date if linked else None,
        )
    return expected

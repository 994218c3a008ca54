"""The day counters as stored, and as their definition gives them from the check-ins."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import NO_PRODUCT, Checkin, Institution, InstitutionDayCount


async def counters(session: AsyncSession) -> Counter[tuple[object, ...]]:
    rows = (await session.execute(select(InstitutionDayCount))).scalars().all()
    return Counter(
        {
            (r.institution_id, r.local_date, r.hour, r.product_id, r.result, r.reason, r.counted): (
                r.checkins
            )
            for r in rows
        }
    )


async def brute_counters(session: AsyncSession) -> Counter[tuple[object, ...]]:
    """The counters straight from their definition: check-ins grouped in Python."""
    zones = dict((await session.execute(select(Institution.id, Institution.timezone))).all())
    expected: Counter[tuple[object, ...]] = Counter()
    for c in (await session.execute(select(Checkin))).scalars():
        hour = c.scanned_at.astimezone(ZoneInfo(zones[c.institution_id])).hour
        product = c.product_id or NO_PRODUCT
        expected[
            (c.institution_id, c.local_date, hour, product, c.result.value, c.reason, c.counted)
        ] += 1
    return expected

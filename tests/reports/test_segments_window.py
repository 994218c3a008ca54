"""Segments read only the population window, yet "new" still means the first visit ever."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from reports.segments import segments_report
from tests.factories import create_checkin, create_institution, create_member, create_venue

AS_OF = date(2026, 6, 30)


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC)


async def test_a_visit_before_the_window_keeps_a_returning_visitor_from_being_new(
    session: AsyncSession,
) -> None:
    institution = await create_institution(session)
    other = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    elsewhere = await create_venue(session, institution=other)
    returning = await create_member(session)
    newcomer = await create_member(session)
    moved = await create_member(session)
    recent = AS_OF - timedelta(days=10)
    # Three years ago here, then again last week: returning, not new.
    await create_checkin(
        session, venue=venue, member=returning, scanned_at=noon(AS_OF - timedelta(days=1100))
    )
    await create_checkin(session, venue=venue, member=returning, scanned_at=noon(recent))
    await create_checkin(session, venue=venue, member=newcomer, scanned_at=noon(recent))
    # An old visit elsewhere does not make a first visit here less new.
    await create_checkin(
        session, venue=elsewhere, member=moved, scanned_at=noon(AS_OF - timedelta(days=1100))
    )
    await create_checkin(session, venue=venue, member=moved, scanned_at=noon(recent))
    await session.commit()

    report = await segments_report(session, institution_id=institution.id, as_of=AS_OF)
    counts = {s.segment: s.visitors for s in report.segments}
    assert (report.visitors, counts["new"], counts["regular"]) == (3, 2, 1)

"""Same-day flows at their edges: a visit without visitor key, equal scan times, another day."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from membership import rollups
from membership.clock import local_date
from membership.models import Checkin, CheckinResult, Venue
from reports.affinity import flows_report
from reports.common import Period
from tests.factories import create_checkin, create_institution, create_member, create_venue

DAY = date(2026, 6, 5)
TEN = datetime(2026, 6, 5, 8, tzinfo=UTC)  # 10:00 in Amsterdam


async def _visit_without_visitor_key(
    session: AsyncSession, *, venue: Venue, scanned_at: datetime
) -> None:
    """A counted check-in with no visitor key (the column allows it): no visitor to follow."""
    checkin = Checkin(
        client_scan_id=uuid.uuid4().hex,
        institution_id=venue.institution_id,
        venue_id=venue.id,
        visitor_key=None,
        scanned_at=scanned_at,
        received_at=scanned_at,
        local_date=local_date(scanned_at, "Europe/Amsterdam"),
        result=CheckinResult.ADMITTED,
        reason="ok",
        counted=True,
    )
    session.add(checkin)
    await session.flush()
    rollups.count_checkin(session, checkin, timezone="Europe/Amsterdam")


async def test_only_a_keyed_visitor_on_the_same_day_at_another_time_flows(
    session: AsyncSession,
) -> None:
    here, there = await create_institution(session), await create_institution(session)
    here_door = await create_venue(session, institution=here)
    there_door = await create_venue(session, institution=there)
    walker, same_time, other_day = [await create_member(session) for _ in range(3)]
    # Here at 10:00, there at 12:00: one flow "after".
    await create_checkin(session, venue=here_door, member=walker, scanned_at=TEN)
    await create_checkin(
        session, venue=there_door, member=walker, scanned_at=TEN + timedelta(hours=2)
    )
    # Scanned at the same instant at both: neither before nor after.
    await create_checkin(session, venue=here_door, member=same_time, scanned_at=TEN)
    await create_checkin(session, venue=there_door, member=same_time, scanned_at=TEN)
    # There the day before the period, here in it: not the same day.
    await create_checkin(
        session, venue=there_door, member=other_day, scanned_at=TEN - timedelta(days=1)
    )
    await create_checkin(session, venue=here_door, member=other_day, scanned_at=TEN)
    # Two visits without visitor key, here and later there: nobody to pair them.
    await _visit_without_visitor_key(session, venue=here_door, scanned_at=TEN)
    await _visit_without_visitor_key(session, venue=there_door, scanned_at=TEN + timedelta(hours=3))
    await session.commit()
    report = await flows_report(
        session, institution_id=here.id, period=Period(DAY, DAY + timedelta(days=3)), k=1
    )
    assert report.before == []
    assert [(row.institution_id, row.visitors, row.visits) for row in report.after] == [
        (there.id, 1, 1)
    ]
    back = await flows_report(session, institution_id=there.id, period=Period(DAY, DAY), k=1)
    assert [(row.institution_id, row.visitors, row.visits) for row in back.before] == [
        (here.id, 1, 1)
    ]
    assert back.after == []

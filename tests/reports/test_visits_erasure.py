"""Rule 5: erasing a member, or removing the link after the retention period, changes no figure
of the visits report; and a visitor counts once per breakdown, as on the latest visit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from membership import rollups
from membership.models import CheckinResult, Member
from reports.common import Period
from reports.visits import visits_report
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_product,
    create_venue,
)

PERIOD = Period(date(2026, 2, 1), date(2026, 3, 31))


async def test_erasure_and_retention_leave_every_figure_identical(session: AsyncSession) -> None:
    institution = await create_institution(session, timezone="America/New_York")
    venue = await create_venue(session, institution=institution)
    products = [await create_product(session), None]
    members = [
        await create_member(
            session,
            birth_date=date(1950 + 7 * i, 1 + i % 12, 1 + i),
            postal_code=f"{10 + i % 4}{i:02d} AB",
        )
        for i in range(12)
    ]
    start = datetime(2026, 2, 1, 15, tzinfo=UTC)
    for i, member in enumerate(members):
        for visit in range(1 + i % 3):
            at = start + timedelta(days=9 * visit + i, hours=i % 5)
            await create_checkin(
                session,
                venue=venue,
                member=member,
                scanned_at=at,
                timezone=institution.timezone,
                product=products[i % 2],
            )
            if i % 4 == 0:
                await create_checkin(
                    session,
                    venue=venue,
                    member=member,
                    scanned_at=at + timedelta(minutes=40),
                    timezone=institution.timezone,
                    result=CheckinResult.REENTRY,
                )
    await session.commit()
    before = await visits_report(session, institution_id=institution.id, period=PERIOD, k=2)
    assert before.visits > 12
    assert {g.group for g in before.age_bands} > {"unknown"}

    erased, retained, deleted = members[0:4], members[4:8], members[8:12]
    # Erasure: the person's data goes and the check-ins lose their link.
    await session.execute(
        update(Member)
        .where(Member.id.in_([m.id for m in erased]))
        .values(birth_date=None, postal_code=None, erased_at=datetime.now(UTC))
    )
    await rollups.clear_member_links(session, [m.id for m in erased + retained])
    # A deleted member: the foreign key sets the link to NULL.
    await session.execute(delete(Member).where(Member.id.in_([m.id for m in deleted])))
    await session.commit()

    after = await visits_report(session, institution_id=institution.id, period=PERIOD, k=2)
    assert after == before


async def test_a_visitor_counts_once_with_the_band_of_the_latest_visit(
    session: AsyncSession,
) -> None:
    institution = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    # Turns 18 on 1 March 2026: 13-17 on the February visit, 18-24 on the March one.
    member = await create_member(session, birth_date=date(2008, 3, 1), postal_code="9711 AB")
    for day in (date(2026, 2, 20), date(2026, 3, 5)):
        await create_checkin(
            session,
            venue=venue,
            member=member,
            scanned_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        )
    await session.commit()
    report = await visits_report(session, institution_id=institution.id, period=PERIOD, k=1)
    assert [(g.group, g.visitors) for g in report.age_bands] == [("18-24", 1)]
    assert [(g.group, g.visitors) for g in report.regions] == [("97", 1)]
    february = await visits_report(
        session,
        institution_id=institution.id,
        period=Period(date(2026, 2, 1), date(2026, 2, 28)),
        k=1,
    )
    assert [(g.group, g.visitors) for g in february.age_bands] == [("13-17", 1)]

"""Day counters and stored demographics: the migration backfills them, the service keeps them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import migrations
from membership import demo, demographics, rollups
from membership.db import create_sessionmaker
from membership.models import (
    NO_PRODUCT,
    Checkin,
    CheckinResult,
    InstitutionDayCount,
    Member,
    Venue,
)
from tests import factories
from tests.counters import brute_counters, counters


async def _programme(session: AsyncSession) -> None:
    """Check-ins in two time zones, with and without product, birth date and postal code."""
    york = await factories.create_institution(session, timezone="America/New_York")
    dam = await factories.create_institution(session, timezone="Europe/Amsterdam")
    product = await factories.create_product(session)
    people = [
        await factories.create_member(session, birth_date=date(2008, 2, 29), postal_code="1017 AB"),
        await factories.create_member(session, birth_date=None, postal_code=""),
        await factories.create_member(session, birth_date=date(1950, 1, 1), postal_code="9"),
        await factories.create_member(session, birth_date=date(2030, 1, 1), postal_code="3511"),
    ]
    for institution in (york, dam):
        venue = await factories.create_venue(session, institution=institution)
        for i, member in enumerate(people):
            for scanned_at, result in (
                # 23:30 in New York is the next UTC day; 1 March is a birthday for 29 February.
                (datetime(2026, 3, 1, 4, 30, tzinfo=UTC), CheckinResult.ADMITTED),
                (datetime(2026, 3, 1, 5, 10, tzinfo=UTC), CheckinResult.REENTRY),
                (datetime(2026, 2, 28, 16, 0, tzinfo=UTC), CheckinResult.REFUSED),
            ):
                await factories.create_checkin(
                    session,
                    venue=venue,
                    member=member,
                    scanned_at=scanned_at,
                    timezone=institution.timezone,
                    product=product if i % 2 else None,
                    result=result,
                    linked=i != 3,
                )
    await session.commit()


def test_age_band_follows_the_age_on_the_day() -> None:
    leap = date(2008, 2, 29)
    assert demographics.age_band(leap, date(2026, 2, 28)) == "13-17"
    assert demographics.age_band(leap, date(2026, 3, 1)) == "18-24"
    assert demographics.age_band(date(2000, 1, 1), date(2065, 1, 1)) == "65+"
    assert demographics.age_band(date(2026, 1, 2), date(2026, 1, 1)) is None
    assert demographics.age_band(date(2026, 1, 1), date(2026, 1, 1)) == "0-12"
    assert demographics.age_band(None, date(2026, 1, 1)) is None
    assert demographics.region("1017 AB") == "10"
    assert demographics.region("") is None
    assert demographics.region(None) is None


async def test_factories_keep_counters_like_the_service(session: AsyncSession) -> None:
    await _programme(session)
    assert await counters(session) == await brute_counters(session)
    assert sum((await counters(session)).values()) == 24


async def test_rebuild_recomputes_exactly(session: AsyncSession) -> None:
    await _programme(session)
    expected = await brute_counters(session)
    table = InstitutionDayCount.__table__
    await session.execute(table.delete())
    await session.execute(
        table.insert().values(
            institution_id=NO_PRODUCT,
            local_date=date(2026, 1, 1),
            hour=3,
            product_id=NO_PRODUCT,
            result="admitted",
            reason="ok",
            counted=True,
            checkins=7,
        )
    )
    institution_ids = {key[0] for key in expected}
    await rollups.rebuild(session, institution_ids)
    await session.commit()
    # The stray row belongs to no rebuilt institution, so it stays; a full rebuild removes it.
    assert await counters(session) == expected + Counter(
        {(NO_PRODUCT, date(2026, 1, 1), 3, NO_PRODUCT, "admitted", "ok", True): 7}
    )
    await rollups.rebuild(session)
    await session.commit()
    assert await counters(session) == expected


async def test_a_rolled_back_scan_counts_nothing(session: AsyncSession) -> None:
    await _programme(session)
    before = await counters(session)
    member = (await session.execute(select(Member).limit(1))).scalar_one()
    venue = (await session.execute(select(Checkin.venue_id).limit(1))).scalar_one()
    await factories.create_checkin(
        session,
        venue=await session.get_one(Venue, venue),
        member=member,
        scanned_at=datetime(2026, 3, 3, 12, tzinfo=UTC),
    )
    await session.rollback()
    await session.commit()
    assert await counters(session) == before


async def test_migration_backfills_existing_checkins(
    session: AsyncSession, engine: AsyncEngine, database_url: str
) -> None:
    await _programme(session)
    expected_counters = await brute_counters(session)
    rows = (
        await session.execute(
            select(Checkin, Member).outerjoin(Member, Member.id == Checkin.member_id)
        )
    ).all()
    expected_bands = {
        c.id: (
            demographics.age_band(m.birth_date, c.local_date) if m else None,
            demographics.region(m.postal_code) if m else None,
        )
        for c, m in rows
    }
    assert set(expected_bands.values()) >= {
        ("13-17", "10"),
        ("18-24", "10"),
        (None, None),
        ("65+", "9"),
    }
    await session.close()
    await engine.dispose()

    # Alembic runs its own event loop: off this test's loop, as the CLI would run it.
    await asyncio.to_thread(migrations.downgrade, database_url, "0004")
    await asyncio.to_thread(migrations.upgrade, database_url)

    async with create_sessionmaker(engine)() as fresh:
        assert await counters(fresh) == expected_counters
        stored = (await fresh.execute(select(Checkin.id, Checkin.age_band, Checkin.region))).all()
        assert {i: (band, region) for i, band, region in stored} == expected_bands


async def test_the_demo_fills_demographics_and_counters(session: AsyncSession) -> None:
    await demo.seed_demo(session, today=date(2026, 6, 15), scale=0.1)
    await session.commit()
    assert await counters(session) == await brute_counters(session)
    rows = (await session.execute(select(Checkin, Member).join(Member))).all()
    assert rows
    for checkin, member in rows:
        assert checkin.age_band == demographics.age_band(member.birth_date, checkin.local_date)
        assert checkin.region == demographics.region(member.postal_code)
    assert {checkin.age_band for checkin, _ in rows} - {None}

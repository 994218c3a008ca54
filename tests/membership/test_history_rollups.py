"""Import of history feeds the reports like live scans: demographics, counters, one at a time."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership import history
from membership.db import create_sessionmaker
from membership.models import Checkin, Member
from tests.counters import brute_counters, counters
from tests.membership.test_history import CLI, NOW, create_world, good_file


async def test_imported_rows_carry_demographics_and_counters(session: AsyncSession) -> None:
    world = await create_world(session)
    await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
    await session.commit()

    assert await counters(session) == await brute_counters(session)
    assert sum((await counters(session)).values()) == 5
    rows = (await session.execute(select(Checkin, Member).join(Member))).all()
    stored = {(m.id == world.member.id, c.age_band, c.region) for c, m in rows}
    # The known holder (born 17 May 1985, postal code 1017 AB) was 39 in March 2025; the
    # imported holders have neither birth date nor postal code.
    assert stored == {(True, "35-44", "10"), (False, None, None)}

    again = await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
    await session.commit()
    assert again.already_imported == 5
    assert await counters(session) == await brute_counters(session)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_imports_of_one_file_at_once_import_it_once(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    world = await create_world(session)
    data = good_file(world)
    maker = create_sessionmaker(engine)
    async with maker() as first, maker() as second:
        done = await history.import_checkins(first, data=data, actor=CLI, now=NOW)
        waiting = asyncio.create_task(
            history.import_checkins(second, data=data, actor=CLI, now=NOW)
        )
        await asyncio.sleep(0.5)
        assert not waiting.done(), "the second import must wait for the first to commit"
        await first.commit()
        late = await waiting
        await second.commit()

    assert (done.counted, done.holders_created) == (4, 2)
    assert (late.already_imported, late.counted, late.holders_created) == (5, 0, 0)
    assert await session.scalar(select(func.count()).select_from(Checkin)) == 5
    assert await counters(session) == await brute_counters(session)

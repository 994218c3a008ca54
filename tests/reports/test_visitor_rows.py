"""The visitor rows stay exact through every path that counts a visit: concurrent doors,
replays, offline batches over several days, overrides, imports, factories, rebuilds, erasure
and the migration that fills them.

On PostgreSQL the requests run at once on separate connections (rule 1 under real concurrency);
after each round every row must equal what the counted check-ins give.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import migrations
from membership import demo, history, rollups
from membership.clock import utcnow
from membership.models import Checkin, InstitutionVisitor, MembershipStatus
from tests.api.conftest import Door, door, holder
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_venue,
)
from tests.membership.test_demo import SMALL as DEMO_SCALE
from tests.membership.test_demo import TODAY as DEMO_TODAY
from tests.membership.test_history import CLI, NOW, create_world, good_file
from tests.visitor_rows import brute_visitor_rows, visitor_rows

__all__ = ["door"]


async def assert_exact(session: AsyncSession) -> None:
    await session.commit()
    expected = await brute_visitor_rows(session)
    assert await visitor_rows(session) == expected
    assert expected


class TestDoors:
    async def test_concurrent_doors_and_replays(self, door: Door) -> None:
        cards = [await holder(door.session) for _ in range(4)]
        second_venue = await create_venue(door.session, institution=door.institution)
        await door.session.commit()
        devices = [door.device, await door.pair_device(second_venue)]
        now = utcnow()
        await door.race_and_replay(
            cards,
            devices,
            attempts=6,
            # Every card at once on both doors, on today and the two days before.
            scanned_at=lambda attempt: now - timedelta(days=attempt // 2),
            check=lambda: assert_exact(door.session),
        )
        rows = await visitor_rows(door.session)
        assert len(rows) == len(cards)
        assert all(row[3] is not None and row[4] is None for row in rows.values())

    async def test_crossing_offline_batches_over_several_days(self, door: Door) -> None:
        """Both batches hold the same visitors over six days, in opposite orders: each
        visitor row takes several visits in one transaction, and neither batch deadlocks."""
        cards = [await holder(door.session) for _ in range(3)]
        second_venue = await create_venue(door.session, institution=door.institution)
        await door.session.commit()
        other_device = await door.pair_device(second_venue)
        base = utcnow() - timedelta(days=6)

        def items(prefix: str, days: list[int]) -> list[dict[str, Any]]:
            return [
                {
                    "code": door.qr(card),
                    "client_scan_id": f"{prefix}-{n}-{day}",
                    "scanned_at": (base + timedelta(days=day)).isoformat(),
                    "offline_result": "admitted",
                    "offline_reason": "ok",
                }
                for n, card in enumerate(cards)
                for day in days
            ]

        forward = items("a", [0, 1, 2, 3, 4, 5])
        backward = list(reversed(items("b", [5, 4, 3, 2, 1, 0])))
        responses = await asyncio.gather(
            door.client.post("/v1/checkins/batch", json={"items": forward}, headers=door.device),
            door.client.post("/v1/checkins/batch", json={"items": backward}, headers=other_device),
        )
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        await assert_exact(door.session)
        assert await door.session.scalar(select(func.count()).where(Checkin.counted)) == 18

    async def test_an_override_counts_the_visit(self, door: Door) -> None:
        card = await holder(door.session, status=MembershipStatus.PENDING_PAYMENT)
        refused = await door.scan(door.qr(card))
        await door.session.commit()
        assert await visitor_rows(door.session) == {}
        response = await door.client.post(
            f"/v1/checkins/{refused['id']}/override",
            json={"reason": "Paid at the desk"},
            headers=door.manager,
        )
        assert response.status_code == 200, response.text
        await assert_exact(door.session)


async def test_an_import_merges_into_the_rows_a_door_made(session: AsyncSession) -> None:
    world = await create_world(session)
    # A live visit after the file's days: the import's older visits go behind it.
    await create_checkin(
        session,
        venue=world.venue,
        member=world.member,
        scanned_at=datetime(2025, 6, 1, 10, tzinfo=UTC),
    )
    await session.commit()
    await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
    await assert_exact(session)
    again = await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
    assert again.already_imported == 5
    await assert_exact(session)


async def test_many_visits_in_one_transaction_rebuild_and_erasure(session: AsyncSession) -> None:
    """Seven visits of one visitor in a transaction, some without a link (as after retention),
    then a rebuild from the check-ins, then erasure of one member."""
    institution = await create_institution(session, timezone="America/New_York")
    venue = await create_venue(session, institution=institution)
    members = [await create_member(session) for _ in range(3)]
    start = datetime(2026, 3, 1, 15, tzinfo=UTC)
    for i, member in enumerate(members):
        for day in (9, 2, 30, 14, 7, 21, 1)[: 3 + 2 * i]:
            await create_checkin(
                session,
                venue=venue,
                member=member,
                scanned_at=start + timedelta(days=day),
                timezone=institution.timezone,
                linked=day not in (30, 21),
            )
    await assert_exact(session)

    await session.execute(delete(InstitutionVisitor))
    await rollups.rebuild(session, {institution.id})
    await assert_exact(session)

    await rollups.clear_member_links(session, [members[2].id])
    await assert_exact(session)
    rows = await visitor_rows(session)
    assert sum(1 for row in rows.values() if row[5] is None) == 1


async def test_the_migration_fills_the_rows_from_the_checkins(
    session: AsyncSession, database_url: str
) -> None:
    institution = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    members = [await create_member(session) for _ in range(3)]
    for i, member in enumerate(members):
        for day in range(1 + 2 * i):
            await create_checkin(
                session,
                venue=venue,
                member=member,
                scanned_at=datetime(2026, 1, 3 + 3 * day, 12, tzinfo=UTC),
                linked=day != 4,
            )
    await session.commit()
    expected = await brute_visitor_rows(session)
    await session.close()
    await asyncio.to_thread(migrations.downgrade, database_url, "0007")
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await visitor_rows(session) == expected


async def test_the_demo_seed_fills_the_rows(session: AsyncSession) -> None:
    await demo.seed_demo(session, today=DEMO_TODAY, scale=DEMO_SCALE)
    await assert_exact(session)

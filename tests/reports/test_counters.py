"""The day counters stay exact through the real check-in path: races, replays, batches, overrides.

On PostgreSQL the requests run at once on separate connections (rule 1 under real concurrency);
after each round every counter must equal the number of check-ins with its key.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from membership import demographics
from membership.clock import utcnow
from membership.models import Checkin, InstitutionDayCount, Member, MembershipStatus
from tests.api.conftest import Door, door, holder
from tests.counters import brute_counters, counters
from tests.factories import (
    create_card,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.helpers import one_local_day

__all__ = ["door"]


async def assert_exact(door: Door) -> None:
    await door.session.commit()
    assert await counters(door.session) == await brute_counters(door.session)
    visits = await door.session.scalar(
        select(func.coalesce(func.sum(InstitutionDayCount.checkins), 0)).where(
            InstitutionDayCount.counted
        )
    )
    assert visits == await door.session.scalar(select(func.count()).where(Checkin.counted))


async def test_concurrent_doors_and_replays_keep_every_counter_exact(door: Door) -> None:
    cards = [await holder(door.session) for _ in range(4)]
    second_venue = await create_venue(door.session, institution=door.institution)
    await door.session.commit()
    devices = [door.device, await door.pair_device(second_venue)]
    now = one_local_day(door.institution.timezone, hours=1) + timedelta(hours=1)
    scans = await door.race_and_replay(
        cards,
        devices,
        attempts=8,
        # Every card at the same instant on both doors, and once more an hour earlier.
        scanned_at=lambda attempt: now - timedelta(hours=attempt // 6),
        check=lambda: assert_exact(door),
    )
    assert await door.session.scalar(select(func.count()).select_from(Checkin)) == scans
    assert await door.session.scalar(select(func.count()).where(Checkin.counted)) == len(cards)


async def test_two_offline_batches_over_the_same_counters_in_opposite_order(door: Door) -> None:
    """Counters are written at commit in key order, so crossing batches cannot deadlock.

    The batches share counters (one product, the same hours) but no visitor: two batches that
    count the same visitors in opposite order wait on each other's visit rows, whatever the
    counters do.
    """
    product = await create_product(door.session)
    cards = []
    for _ in range(12):
        member = await create_member(door.session)
        membership = await create_membership(door.session, product=product, holders=[member])
        cards.append(await create_card(door.session, member=member, membership=membership))
    second_venue = await create_venue(door.session, institution=door.institution)
    await door.session.commit()
    other_device = await door.pair_device(second_venue)
    base = utcnow() - timedelta(hours=8)

    def items(first_card: int, hours: list[int]) -> list[dict[str, Any]]:
        return [
            {
                "code": door.qr(cards[first_card + n]),
                "client_scan_id": f"{first_card}-{n}",
                "scanned_at": (base + timedelta(hours=hour)).isoformat(),
                "offline_result": "admitted",
                "offline_reason": "ok",
            }
            for n, hour in enumerate(hours)
        ]

    forward, backward = list(range(6)), list(reversed(range(6)))
    responses = await asyncio.gather(
        door.client.post(
            "/v1/checkins/batch", json={"items": items(0, forward)}, headers=door.device
        ),
        door.client.post(
            "/v1/checkins/batch", json={"items": items(6, backward)}, headers=other_device
        ),
    )
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    await assert_exact(door)
    assert await door.session.scalar(select(func.count()).where(Checkin.counted)) == 12


async def test_an_override_moves_its_checkin_to_the_new_counter(door: Door) -> None:
    card = await holder(door.session, status=MembershipStatus.PENDING_PAYMENT)
    refused = await door.scan(door.qr(card))
    await assert_exact(door)
    response = await door.client.post(
        f"/v1/checkins/{refused['id']}/override",
        json={"reason": "Paid at the desk"},
        headers=door.manager,
    )
    assert response.status_code == 200, response.text
    await assert_exact(door)
    rows = (await door.session.execute(select(InstitutionDayCount))).scalars().all()
    # The refusal's counter is gone rather than left at zero.
    assert [(r.result, r.reason, r.counted, r.checkins) for r in rows] == [
        ("admitted", "override", True, 1)
    ]


async def test_a_scan_stores_the_age_band_and_region_of_its_day(door: Door) -> None:
    card = await holder(door.session)
    answer = await door.scan(door.qr(card))
    row = await door.session.get_one(Checkin, int(answer["id"]))
    member = await door.session.get_one(Member, card.member_id)
    assert member.postal_code == "1017 AB"
    assert (row.age_band, row.region) == (
        demographics.age_band(member.birth_date, row.local_date),
        "10",
    )
    assert row.age_band is not None

"""Two doors upload offline batches that count the same visitors in opposite orders.

Each counted visit holds its (visitor, institution, day) entry of the unique index until the
batch commits, so batches stored in upload order would deadlock on PostgreSQL and one door would
get a 500. Stored card by card, the second batch waits for the first and both are answered.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from membership import card_numbers
from membership.models import Card, Checkin
from tests.api.conftest import Door, door
from tests.factories import (
    create_card,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.helpers import one_local_day

__all__ = ["door"]


async def test_crossing_batches_over_the_same_visitors_are_both_answered(door: Door) -> None:
    product = await create_product(door.session)
    cards: list[Card] = []
    for _ in range(8):
        member = await create_member(door.session)
        membership = await create_membership(door.session, product=product, holders=[member])
        cards.append(await create_card(door.session, member=member, membership=membership))
    second_venue = await create_venue(door.session, institution=door.institution)
    await door.session.commit()
    other_device = await door.pair_device(second_venue)
    # Each round's two batches (an hour apart) are one local day's scans.
    base = one_local_day(door.institution.timezone, hours=2)

    def batch(prefix: str, order: list[int], minutes: int) -> dict[str, list[dict[str, Any]]]:
        return {
            "items": [
                {
                    "code": door.qr(cards[n]),
                    "client_scan_id": f"{prefix}-{n}",
                    "scanned_at": (base + timedelta(minutes=minutes + i)).isoformat(),
                    "offline_result": "admitted",
                    "offline_reason": "ok",
                }
                for i, n in enumerate(order)
            ]
        }

    forward = list(range(len(cards)))
    for round_ in range(3):
        # Each round is a new day's worth of scans an hour apart, so every round counts again.
        offset = round_ * 24 * 60
        responses = await asyncio.gather(
            door.client.post(
                "/v1/checkins/batch", json=batch(f"a{round_}", forward, offset), headers=door.device
            ),
            door.client.post(
                "/v1/checkins/batch",
                json=batch(f"b{round_}", forward[::-1], offset + 60),
                headers=other_device,
            ),
        )
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        # Answers keep the upload order, whatever order the scans were stored in.
        for response, prefix, order in zip(
            responses, ("a", "b"), (forward, forward[::-1]), strict=True
        ):
            items = response.json()["items"]
            assert [item["index"] for item in items] == list(range(len(cards)))
            assert [item["checkin"]["client_scan_id"] for item in items] == [
                f"{prefix}{round_}-{n}" for n in order
            ]
            assert [item["checkin"]["holder"]["card_number"] for item in items] == [
                card_numbers.display(cards[n].number) for n in order
            ]
    counted = await door.session.scalar(select(func.count()).where(Checkin.counted))
    assert counted == len(cards) * len({(base + timedelta(days=r)).date() for r in range(3)})

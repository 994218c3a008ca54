"""A scanner's sync: keys, rules, accepted products and a revocation delta by cursor."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from membership import cards
from membership.audit import SYSTEM
from membership.clock import utcnow
from membership.models import ProductKind
from tests.api.conftest import Door, holder
from tests.factories import create_institution, create_product


async def sync(door: Door, cursor: int = 0) -> dict[str, object]:
    response = await door.client.get(f"/v1/scanner/sync?cursor={cursor}", headers=door.device)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_sync_carries_what_an_offline_decision_needs(door: Door) -> None:
    hall = await create_institution(door.session)
    await create_product(door.session, code="CLUBHALL", kind=ProductKind.CLUB, accepted_at=[hall])
    await create_product(door.session, code="ADULT")
    await door.session.commit()
    body = await sync(door)
    assert body["programme"] == door.settings.programme_code
    assert body["institution"]["anti_passback_minutes"] == 15  # type: ignore[index]
    assert body["institution"]["timezone"] == "Europe/Amsterdam"  # type: ignore[index]
    assert [p["code"] for p in body["products"]] == ["ADULT"]  # type: ignore[attr-defined]
    assert len(body["keys"]) == 1  # type: ignore[arg-type]
    assert body["revocations"]["entries"] == []  # type: ignore[index]


async def test_revocations_arrive_as_a_delta(door: Door, session: AsyncSession) -> None:
    first, second = await holder(session), await holder(session)
    await cards.block(session, card_id=first.id, reason="stolen", actor=SYSTEM, now=utcnow())
    await session.commit()
    initial = await sync(door)
    feed = initial["revocations"]
    assert [e["card_number"] for e in feed["entries"]] == [first.number]  # type: ignore[index]
    await cards.block(session, card_id=second.id, reason="fraud", actor=SYSTEM, now=utcnow())
    await session.commit()
    delta = (await sync(door, cursor=feed["cursor"]))["revocations"]  # type: ignore[index]
    assert [e["card_number"] for e in delta["entries"]] == [second.number]  # type: ignore[index]
    assert delta["has_more"] is False  # type: ignore[index]


async def test_sync_needs_a_device_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/scanner/sync")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"

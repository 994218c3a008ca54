"""Fixtures of the API tests: a door with a paired scanner, and card holders to scan."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from membership import codes
from membership.clock import utcnow
from membership.keys import KeyStore
from membership.models import (
    Card,
    CardStatus,
    Institution,
    MembershipStatus,
    ProductKind,
    StaffRole,
    Venue,
)
from membership.settings import Settings
from tests.factories import (
    auth_headers,
    create_card,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_staff_user,
    create_venue,
)


@dataclass
class Door:
    client: httpx.AsyncClient
    session: AsyncSession
    settings: Settings
    institution: Institution
    venue: Venue
    manager: dict[str, str]
    device: dict[str, str]

    def qr(self, card: Card, *, version: int | None = None, product: str = "ADULT") -> str:
        _key_id, private_key = KeyStore.from_settings(self.settings).signing_key()
        code = codes.CardCode(
            programme=self.settings.programme_code,
            card_number=card.number,
            card_version=version or card.version,
            valid_until=date.today() + timedelta(days=200),
            product_code=product,
        )
        return codes.encode(code, private_key=private_key)

    async def scan(
        self, code: str, *, at: datetime | None = None, scan_id: str | None = None
    ) -> dict[str, Any]:
        body = {
            "code": code,
            "client_scan_id": scan_id or uuid.uuid4().hex,
            "scanned_at": (at or utcnow()).isoformat(),
        }
        response = await self.client.post("/v1/checkins", json=body, headers=self.device)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def race_and_replay(
        self,
        cards: list[Card],
        devices: list[dict[str, str]],
        *,
        attempts: int,
        scanned_at: Callable[[int], datetime],
        check: Callable[[], Awaitable[None]],
    ) -> int:
        """Every card scanned `attempts` times at once, the attempts alternating between the
        devices and `scanned_at(attempt)`; then every scan sent again, which must change
        nothing. `check` runs after each round; returns the number of distinct scans."""

        async def scan(card: Card, attempt: int) -> httpx.Response:
            body = {
                "code": self.qr(card),
                "client_scan_id": f"race-{card.number}-{attempt}",
                "scanned_at": scanned_at(attempt).isoformat(),
            }
            return await self.client.post(
                "/v1/checkins", json=body, headers=devices[attempt % len(devices)]
            )

        scans = [(card, attempt) for attempt in range(attempts) for card in cards]
        for _round in range(2):
            responses = await asyncio.gather(*(scan(card, a) for card, a in scans))
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            await check()
        return len(scans)

    async def pair_device(self, venue: Venue) -> dict[str, str]:
        response = await self.client.post(
            f"/v1/institutions/{venue.institution_id}/devices",
            json={"venue_id": str(venue.id), "name": "Main door"},
            headers=self.manager,
        )
        assert response.status_code == 201, response.text
        paired = await self.client.post(
            "/v1/devices/pair", json={"pairing_code": response.json()["pairing_code"]}
        )
        assert paired.status_code == 200, paired.text
        return {"Authorization": f"Bearer {paired.json()['device_key']}"}


@pytest.fixture
async def door(session: AsyncSession, client: httpx.AsyncClient, settings: Settings) -> Door:
    KeyStore.from_settings(settings).ensure()
    institution = await create_institution(session, anti_passback_minutes=15)
    venue = await create_venue(session, institution=institution)
    manager = await create_staff_user(
        session, role=StaffRole.INSTITUTION_MANAGER, institution=institution
    )
    headers = await auth_headers(session, staff_user=manager)
    await session.commit()
    door = Door(client, session, settings, institution, venue, headers, {})
    door.device = await door.pair_device(venue)
    return door


async def holder(
    session: AsyncSession,
    *,
    status: MembershipStatus = MembershipStatus.ACTIVE,
    starts_on: date | None = None,
    ends_on: date | None = None,
    card_status: CardStatus = CardStatus.ACTIVE,
    version: int = 1,
    accepted_at: list[Institution] | None = None,
    visit_limit: int | None = None,
) -> Card:
    product = await create_product(
        session,
        kind=ProductKind.CLUB if accepted_at else ProductKind.ANNUAL,
        accepted_at=accepted_at,
    )
    member = await create_member(session)
    membership = await create_membership(
        session,
        product=product,
        holders=[member],
        status=status,
        starts_on=starts_on,
        ends_on=ends_on,
    )
    card = await create_card(
        session, member=member, membership=membership, status=card_status, version=version
    )
    if visit_limit is not None:
        card.visit_limit = visit_limit
        card.expires_at = utcnow() + timedelta(days=31)
    await session.commit()
    return card

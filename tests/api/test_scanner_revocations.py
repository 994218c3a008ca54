"""The revocation feed over HTTP: only paired, unrevoked scanners read it, as a delta by cursor."""

from __future__ import annotations

import hashlib
import secrets

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from membership import cards
from membership.audit import Actor
from membership.clock import utcnow
from membership.models import Card, Device
from tests.factories import (
    create_card,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)

ACTOR = Actor(label="operator@example.org")


async def _device(session: AsyncSession, *, revoked: bool = False) -> str:
    """A paired scanner; returns its key, of which only the SHA-256 is stored."""
    key = "dk_" + secrets.token_urlsafe(24)
    venue = await create_venue(session, institution=await create_institution(session))
    session.add(
        Device(
            venue_id=venue.id,
            name="Front desk",
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            key_prefix=key[:8],
            paired_at=utcnow(),
            revoked_at=utcnow() if revoked else None,
        )
    )
    await session.flush()
    return key


async def _cards(session: AsyncSession, count: int) -> list[Card]:
    product = await create_product(session)
    issued = []
    for _ in range(count):
        member = await create_member(session)
        membership = await create_membership(session, product=product, holders=[member])
        issued.append(await create_card(session, member=member, membership=membership))
    return issued


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer dk_unknown"}, {"Authorization": "Basic abc"}],
        ids=["missing", "unknown", "not-bearer"],
    )
    async def test_refused_without_a_known_device_key(
        self, client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str]
    ) -> None:
        await _device(session)
        await session.commit()
        response = await client.get("/v1/scanner/revocations", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"

    async def test_a_revoked_device_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        key = await _device(session, revoked=True)
        await session.commit()
        response = await client.get(
            "/v1/scanner/revocations", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 401


class TestDelta:
    async def test_a_scanner_syncs_only_what_changed_since_its_cursor(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = {"Authorization": f"Bearer {await _device(session)}"}
        first, second, third = await _cards(session, 3)
        await cards.block(session, card_id=first.id, reason="fraud", actor=ACTOR, now=utcnow())
        await cards.report_lost(session, card_id=second.id, actor=ACTOR, now=utcnow())
        await session.commit()

        response = await client.get("/v1/scanner/revocations?since=0", headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert [(e["card_number"], e["revoked"], e["reason"]) for e in body["entries"]] == [
            (first.number, True, "blocked"),
            (second.number, True, "lost"),
        ]
        assert body["has_more"] is False
        cursor = body["cursor"]

        await cards.reissue(session, card_id=third.id, actor=ACTOR, now=utcnow())
        await cards.unblock(session, card_id=first.id, actor=ACTOR, now=utcnow())
        await session.commit()
        delta = (
            await client.get(f"/v1/scanner/revocations?since={cursor}", headers=headers)
        ).json()
        assert [(e["card_number"], e["min_version"], e["revoked"]) for e in delta["entries"]] == [
            (third.number, 2, False),
            (first.number, 1, False),
        ]
        again = await client.get(
            f"/v1/scanner/revocations?since={delta['cursor']}", headers=headers
        )
        assert again.json() == {"entries": [], "cursor": delta["cursor"], "has_more": False}

    async def test_pages_with_a_limit(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = {"Authorization": f"Bearer {await _device(session)}"}
        for card in await _cards(session, 3):
            await cards.block(session, card_id=card.id, reason="x", actor=ACTOR, now=utcnow())
        await session.commit()
        page = (await client.get("/v1/scanner/revocations?limit=2", headers=headers)).json()
        assert len(page["entries"]) == 2
        assert page["has_more"] is True
        rest = (
            await client.get(
                f"/v1/scanner/revocations?limit=2&since={page['cursor']}", headers=headers
            )
        ).json()
        assert len(rest["entries"]) == 1
        assert rest["has_more"] is False

    @pytest.mark.parametrize("query", ["since=-1", "since=abc", "limit=0", "limit=100000"])
    async def test_bad_cursor_or_limit(
        self, client: httpx.AsyncClient, session: AsyncSession, query: str
    ) -> None:
        headers = {"Authorization": f"Bearer {await _device(session)}"}
        await session.commit()
        response = await client.get(f"/v1/scanner/revocations?{query}", headers=headers)
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/validation-error"

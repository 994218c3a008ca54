"""Member self-service over the API: magic-link sign-in, my things, renew, consents."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import members
from membership.clock import utcnow
from membership.keys import KeyStore
from membership.models import AuditEntry, Card, Member, MembershipTerm, OutboxEmail
from membership.settings import Settings
from tests.factories import create_member, create_product
from tests.helpers import assert_problem

EMAIL = "sanne@example.org"


def _body(code: str, email: str = EMAIL) -> dict[str, Any]:
    return {
        "product_code": code,
        "holders": [
            {
                "first_name": "Sanne",
                "last_name": "Jansen",
                "email": email,
                "birth_date": "1990-04-02",
                "postal_code": "3511 AB",
                "language": "en",
            }
        ],
    }


async def _bought_and_paid(client: httpx.AsyncClient, code: str, email: str = EMAIL) -> Any:
    response = await client.post("/v1/purchases", json=_body(code, email))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (await client.post(answer["checkout_url"] + "/pay")).status_code == 303
    return answer


async def _link_token(session: AsyncSession) -> str:
    context = await session.scalar(
        select(OutboxEmail.context)
        .where(OutboxEmail.template == "magic_link")
        .order_by(OutboxEmail.id.desc())
    )
    await session.commit()
    assert context is not None
    return parse_qs(urlsplit(context["link"]).query)["token"][0]


async def _signed_in(session: AsyncSession, client: httpx.AsyncClient) -> dict[str, str]:
    assert (await client.post("/v1/members/sign-in", json={"email": EMAIL})).status_code == 202
    redeemed = await client.post("/v1/members/sessions", json={"token": await _link_token(session)})
    assert redeemed.status_code == 201, redeemed.text
    return {"Authorization": f"Bearer {redeemed.json()['access_token']}"}


async def _magic_links(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(OutboxEmail).where(OutboxEmail.template == "magic_link")
    )
    await session.commit()
    return int(count or 0)


class TestSignIn:
    async def test_unknown_and_known_addresses_get_the_same_answer(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_product(session, code="ANNUAL")
        await session.commit()
        await _bought_and_paid(client, "ANNUAL")
        unknown = await client.post("/v1/members/sign-in", json={"email": "who@example.org"})
        known = await client.post("/v1/members/sign-in", json={"email": EMAIL})
        assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
        assert await _magic_links(session) == 1

    async def test_a_link_works_once(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_product(session, code="ANNUAL")
        await session.commit()
        await _bought_and_paid(client, "ANNUAL")
        await _signed_in(session, client)
        again = await client.post(
            "/v1/members/sessions", json={"token": await _link_token(session)}
        )
        assert_problem(again, 401, "invalid-sign-in-link")

    async def test_a_link_expires_after_fifteen_minutes(self, session: AsyncSession) -> None:
        await create_product(session, code="ANNUAL")
        await create_member(session, email=EMAIL)
        now = utcnow()
        await members.request_sign_in(session, email=EMAIL, base_url="http://x", now=now)
        await session.commit()
        token = await _link_token(session)
        late = now + members.SIGN_IN_LINK_TTL + timedelta(seconds=1)
        with pytest.raises(members.InvalidSignInLink):
            await members.redeem_sign_in(session, token=token, ttl=timedelta(hours=1), now=late)
        await session.rollback()
        opened = await members.redeem_sign_in(
            session, token=token, ttl=timedelta(hours=1), now=now + timedelta(minutes=14)
        )
        assert opened.expires_at == now + timedelta(minutes=14, hours=1)

    async def test_my_pages_need_a_member_token(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/me/memberships"), 401, "invalid-member-token")
        bad = {"Authorization": "Bearer not-a-session"}
        assert_problem(await client.get("/v1/me/cards", headers=bad), 401, "invalid-member-token")


class TestMine:
    async def test_memberships_cards_payments_and_receipts(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_product(session, code="ANNUAL")
        await session.commit()
        await _bought_and_paid(client, "ANNUAL")
        await _bought_and_paid(client, "ANNUAL", email="someone.else@example.org")
        headers = await _signed_in(session, client)
        mine = (await client.get("/v1/me/memberships", headers=headers)).json()
        assert [m["status"] for m in mine] == ["active"]
        assert len(mine[0]["terms"]) == 1
        assert len((await client.get("/v1/me/cards", headers=headers)).json()) == 1
        assert len((await client.get("/v1/me/payments", headers=headers)).json()) == 1
        receipts = (await client.get("/v1/me/receipts", headers=headers)).json()
        assert [(r["amount_minor"], r["vat_minor"]) for r in receipts] == [(7500, 619)]

    async def test_renewing_early_starts_at_the_old_end(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_product(session, code="ANNUAL")
        await session.commit()
        await _bought_and_paid(client, "ANNUAL")
        headers = await _signed_in(session, client)
        membership_id = (await client.get("/v1/me/memberships", headers=headers)).json()[0]["id"]
        renewal = await client.post(
            f"/v1/me/memberships/{membership_id}/renewals", json={}, headers=headers
        )
        assert renewal.status_code == 201, renewal.text
        await client.post(renewal.json()["checkout_url"] + "/pay")
        terms = list(
            await session.scalars(select(MembershipTerm).order_by(MembershipTerm.starts_on))
        )
        await session.commit()
        assert len(terms) == 2
        assert terms[1].starts_on == terms[0].ends_on
        assert terms[1].kind.value == "renewal"

    async def test_someone_elses_membership_is_not_found(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_product(session, code="ANNUAL")
        await session.commit()
        other = await _bought_and_paid(client, "ANNUAL", email="someone.else@example.org")
        await _bought_and_paid(client, "ANNUAL")
        headers = await _signed_in(session, client)
        url = f"/v1/me/memberships/{other['membership_id']}/renewals"
        assert_problem(await client.post(url, json={}, headers=headers), 404, "not-found")

    async def test_auto_renew_off_and_consents_are_timestamped_and_audited(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_product(session, code="ANNUAL")
        await session.commit()
        response = await client.post("/v1/purchases", json={**_body("ANNUAL"), "auto_renew": True})
        await client.post(response.json()["checkout_url"] + "/pay")
        headers = await _signed_in(session, client)
        membership = (await client.get("/v1/me/memberships", headers=headers)).json()[0]
        assert membership["auto_renew"] is True
        off = await client.put(
            f"/v1/me/memberships/{membership['id']}/auto-renew",
            json={"enabled": False},
            headers=headers,
        )
        assert off.status_code == 200, off.text
        assert off.json()["auto_renew"] is False
        member_id = membership["holder_ids"][0]
        changed = await client.patch(
            f"/v1/me/members/{member_id}", json={"share_contact": True}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["share_contact"] is True
        assert changed.json()["share_contact_at"] is not None
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action.in_(("member.update", "membership.auto_renew_off")))
        )
        assert audited == 2
        refused = await client.patch(
            f"/v1/me/members/{member_id}", json={"email": "x@example.org"}, headers=headers
        )
        assert_problem(refused, 422, "validation-error")


class TestMyCardImages:
    async def test_the_holder_gets_a_qr_that_decodes_to_their_signed_code(
        self, session: AsyncSession, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        KeyStore.from_settings(settings).ensure()
        await create_product(session, code="ANNUAL")
        await session.commit()
        await _bought_and_paid(client, "ANNUAL")
        await _bought_and_paid(client, "ANNUAL", email="someone.else@example.org")
        headers = await _signed_in(session, client)
        (card,) = (await client.get("/v1/me/cards", headers=headers)).json()
        code = await client.get(f"/v1/me/cards/{card['id']}/code", headers=headers)
        assert code.status_code == 200, code.text
        png = await client.get(f"/v1/me/cards/{card['id']}/qr.png", headers=headers)
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
        assert [result.text for result in decoded] == [code.json()["text"]]
        pdf = await client.get(f"/v1/me/cards/{card['id']}/card.pdf", headers=headers)
        assert (pdf.status_code, pdf.content[:4]) == (200, b"%PDF")

    async def test_someone_elses_card_is_not_found(
        self, session: AsyncSession, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        KeyStore.from_settings(settings).ensure()
        await create_product(session, code="ANNUAL")
        await session.commit()
        await _bought_and_paid(client, "ANNUAL", email="someone.else@example.org")
        await _bought_and_paid(client, "ANNUAL")
        headers = await _signed_in(session, client)
        other = await session.scalar(
            select(Card.id).join(Member).where(Member.email == "someone.else@example.org")
        )
        await session.commit()
        for path in ("code", "qr.png", "card.png"):
            response = await client.get(f"/v1/me/cards/{other}/{path}", headers=headers)
            assert_problem(response, 404, "not-found")
        assert (await client.get(f"/v1/me/cards/{other}/code")).status_code == 401

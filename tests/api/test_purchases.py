"""Buying a card through the API with the local provider, from the form to an active card."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import utcnow
from membership.models import (
    Card,
    CardStatus,
    Member,
    MembershipStatus,
    MembershipTerm,
    OutboxEmail,
    Payment,
    PaymentStatus,
    ProductKind,
    Receipt,
    StaffRole,
)
from membership.payments import events, local
from membership.settings import Settings
from tests.factories import (
    auth_headers,
    create_institution,
    create_product,
    create_staff_user,
)
from tests.helpers import assert_problem, table_counts


def holder(**overrides: Any) -> dict[str, Any]:
    person = {
        "first_name": "Sanne",
        "last_name": "Jansen",
        "email": "sanne@example.org",
        "birth_date": "1990-04-02",
        "postal_code": "3511 AB",
        "language": "nl",
    }
    person.update(overrides)
    return person


def purchase(code: str, *holders: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "product_code": code,
        "holders": list(holders) or [holder()],
        "consents": {"marketing_opt_in": True, "share_contact": False},
        "auto_renew": False,
    }
    body.update(overrides)
    return body


async def count(session: AsyncSession, model: Any, *where: Any) -> int:
    found = await session.scalar(select(func.count()).select_from(model).where(*where))
    await session.commit()
    return int(found or 0)


@pytest.fixture
async def annual(session: AsyncSession) -> str:
    product = await create_product(session, code="ANNUAL", price_minor=7500)
    await session.commit()
    return product.code


async def buy(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await client.post("/v1/purchases", json=body, headers=headers)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


class TestPurchase:
    async def test_creates_a_pending_membership_priced_by_the_server(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        answer = await buy(client, purchase(annual))
        assert answer["membership_status"] == "pending_payment"
        assert (answer["payment"]["amount_minor"], answer["payment"]["currency"]) == (7500, "EUR")
        assert answer["payment"]["status"] == "pending"
        assert "/v1/payments/local/checkouts/cs_local_" in answer["checkout_url"]
        member = await session.scalar(select(Member))
        assert member is not None
        assert member.marketing_opt_in is True
        assert member.marketing_opt_in_at is not None
        assert member.share_contact_at is None
        assert await count(session, MembershipTerm) == 0
        assert await count(session, Card) == 0

    async def test_pay_on_the_local_page_then_return_gives_an_active_card(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        answer = await buy(client, purchase(annual))
        page = await client.get(answer["checkout_url"])
        assert page.status_code == 200
        assert answer["payment"]["reference"] in page.text
        paid = await client.post(answer["checkout_url"] + "/pay")
        assert paid.status_code == 303
        back = await client.get(paid.headers["location"])
        assert back.status_code == 200
        assert back.json()["membership_status"] == "active"
        assert back.json()["payment"]["status"] == "succeeded"
        assert await count(session, MembershipTerm) == 1
        assert await count(session, Card, Card.status == CardStatus.ACTIVE) == 1
        assert await count(session, Receipt) == 1
        assert await count(session, OutboxEmail, OutboxEmail.template == "welcome") == 1

    async def test_return_before_paying_changes_nothing_and_decline_cancels(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        answer = await buy(client, purchase(annual))
        back_url = f"/v1/purchases/{answer['payment']['id']}/return"
        assert (await client.get(back_url)).json()["membership_status"] == "pending_payment"
        declined = await client.post(answer["checkout_url"] + "/decline")
        assert declined.status_code == 303
        back = await client.get(back_url)
        assert back.json()["payment"]["status"] == "cancelled"
        assert back.json()["membership_status"] == "pending_payment"
        assert await count(session, MembershipTerm) == 0

    async def test_duo_card_gives_each_holder_a_card(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        product = await create_product(session, code="DUO", kind=ProductKind.DUO, max_holders=2)
        await session.commit()
        body = purchase(product.code, holder(), holder(first_name="Piet", email="piet@example.org"))
        answer = await buy(client, body)
        await client.post(answer["checkout_url"] + "/pay")
        assert await count(session, Card) == 2
        assert await count(session, OutboxEmail, OutboxEmail.template == "welcome") == 2


class TestIdempotencyKey:
    async def test_same_key_and_body_returns_the_first_answer(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        first = await buy(client, purchase(annual), **{"Idempotency-Key": "k-1"})
        counts = await table_counts(session)
        again = await buy(client, purchase(annual), **{"Idempotency-Key": "k-1"})
        assert again == first
        assert await table_counts(session) == counts

    async def test_same_key_with_another_body_is_refused_and_writes_nothing(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        await buy(client, purchase(annual), **{"Idempotency-Key": "k-2"})
        counts = await table_counts(session)
        other = purchase(annual, holder(first_name="Someone"))
        response = await client.post(
            "/v1/purchases", json=other, headers={"Idempotency-Key": "k-2"}
        )
        assert_problem(response, 409, "idempotency-key-reused")
        assert await table_counts(session) == counts


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "status", "slug"),
        [
            (purchase("NOPE"), 404, "product-not-found"),
            (purchase("ANNUAL", holder(), holder()), 422, "holder-count-invalid"),
            (purchase("ANNUAL", amount_minor=1), 422, "validation-error"),
            (purchase("ANNUAL", holder(birth_date="not a date")), 422, "validation-error"),
            (purchase("ANNUAL", holder(language="fr")), 422, "validation-error"),
            (purchase("ANNUAL", holders=[]), 422, "validation-error"),
            (purchase("ANNUAL", holder(email="nobody")), 422, "validation-error"),
        ],
    )
    async def test_is_refused_with_a_problem_and_nothing_written(
        self,
        session: AsyncSession,
        client: httpx.AsyncClient,
        annual: str,
        body: dict[str, Any],
        status: int,
        slug: str,
    ) -> None:
        counts = await table_counts(session)
        assert_problem(await client.post("/v1/purchases", json=body), status, slug)
        assert await table_counts(session) == counts

    @pytest.mark.parametrize(
        ("years", "allowed"), [(12, False), (13, True), (25, True), (26, False)]
    )
    async def test_age_limits_are_checked_on_the_first_day_of_validity(
        self, session: AsyncSession, client: httpx.AsyncClient, years: int, allowed: bool
    ) -> None:
        await create_product(session, code="YOUTH", kind=ProductKind.YOUTH, min_age=13, max_age=25)
        await session.commit()
        today = date.today()
        born = today.replace(year=today.year - years) - timedelta(days=1)
        if today.month == 2 and today.day == 29:
            born = date(today.year - years, 2, 28)
        response = await client.post(
            "/v1/purchases", json=purchase("YOUTH", holder(birth_date=born.isoformat()))
        )
        if allowed:
            assert response.status_code == 201, response.text
        else:
            assert_problem(response, 422, "age-outside-limits")

    async def test_auto_renew_on_a_product_that_forbids_it(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        product = await create_product(session, code="ONCE")
        product.auto_renew_allowed = False
        await session.commit()
        response = await client.post("/v1/purchases", json=purchase("ONCE", auto_renew=True))
        assert_problem(response, 422, "auto-renew-not-allowed")


class TestOperatorRefund:
    async def _paid(self, client: httpx.AsyncClient, code: str) -> dict[str, Any]:
        answer = await buy(client, purchase(code))
        await client.post(answer["checkout_url"] + "/pay")
        return answer

    async def _operator(self, session: AsyncSession) -> dict[str, str]:
        operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
        headers = await auth_headers(session, staff_user=operator)
        await session.commit()
        return headers

    async def test_full_refund_ends_the_membership_and_blocks_the_card(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        answer = await self._paid(client, annual)
        headers = await self._operator(session)
        url = f"/v1/payments/{answer['payment']['id']}/refunds"
        refund = await client.post(
            url, json={"amount_minor": 7500, "reason": "moved abroad"}, headers=headers
        )
        assert refund.status_code == 201, refund.text
        assert refund.json()["kind"] == "refund"
        back = await client.get(f"/v1/purchases/{answer['payment']['id']}/return")
        assert back.json()["membership_status"] == MembershipStatus.REFUNDED.value
        assert back.json()["payment"]["status"] == PaymentStatus.REFUNDED.value
        assert await count(session, Card, Card.status == CardStatus.BLOCKED) == 1
        again = await client.post(
            url, json={"amount_minor": 1, "reason": "once more"}, headers=headers
        )
        assert_problem(again, 422, "refund-too-large")

    async def test_partial_refund_keeps_the_card_and_staff_may_not_refund(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str
    ) -> None:
        answer = await self._paid(client, annual)
        headers = await self._operator(session)
        url = f"/v1/payments/{answer['payment']['id']}/refunds"
        body = {"amount_minor": 2500, "reason": "goodwill"}
        assert (await client.post(url, json=body, headers=headers)).status_code == 201
        assert await count(session, Card, Card.status == CardStatus.ACTIVE) == 1
        institution = await create_institution(session)
        staff = await create_staff_user(
            session, role=StaffRole.INSTITUTION_STAFF, institution=institution
        )
        staff_headers = await auth_headers(session, staff_user=staff)
        await session.commit()
        assert_problem(await client.post(url, json=body, headers=staff_headers), 403, "forbidden")


class TestConcurrency:
    async def test_retries_racing_with_one_key_buy_once(
        self, session: AsyncSession, client: httpx.AsyncClient, annual: str, backend: str
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        headers = {"Idempotency-Key": "race-1"}
        responses = await asyncio.gather(
            *(
                client.post("/v1/purchases", json=purchase(annual), headers=headers)
                for _ in range(6)
            )
        )
        assert [r.status_code for r in responses] == [201] * 6
        assert len({r.json()["payment"]["id"] for r in responses}) == 1
        assert await count(session, Payment) == 1
        assert await count(session, Member) == 1

    async def test_webhook_and_browser_return_at_the_same_instant_apply_once(
        self,
        session: AsyncSession,
        client: httpx.AsyncClient,
        app: FastAPI,
        settings: Settings,
        annual: str,
        backend: str,
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        answer = await buy(client, purchase(annual))
        checkout_id = answer["checkout_url"].rsplit("/", 1)[1]
        stored = await local.finish_checkout(
            session, checkout_id=checkout_id, paid=True, now=utcnow()
        )
        await session.commit()
        assert stored.event_id is not None
        back_url = f"/v1/purchases/{answer['payment']['id']}/return"
        outcome, *returns = await asyncio.gather(
            events.process(
                app.state.sessionmaker, event_id=stored.event_id, settings=settings, now=utcnow()
            ),
            *(client.get(back_url) for _ in range(3)),
        )
        assert outcome in ("applied", "already-applied")
        assert all(r.json()["membership_status"] == "active" for r in returns)
        assert await count(session, MembershipTerm) == 1
        assert await count(session, Card) == 1
        assert await count(session, Receipt) == 1
        assert await count(session, OutboxEmail, OutboxEmail.template == "welcome") == 1
        assert await count(session, Payment) == 1

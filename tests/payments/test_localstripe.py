"""StripeProvider against a real fake Stripe server: localstripe plus the project's shim.

The events localstripe records are read back, signed by the test and posted into the app, so
the run is deterministic (no 1 s delivery delay, no port for the app). What localstripe cannot
show (real Checkout pages, idempotency keys, Stripe's dunning) is covered by the unit layer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import local_date, utcnow
from membership.models import (
    Card,
    CardStatus,
    Membership,
    MembershipStatus,
    MembershipTerm,
    OutboxEmail,
    Payment,
    PaymentKind,
    StaffRole,
    WebhookEvent,
)
from membership.payments import events
from membership.settings import Settings
from tests.factories import auth_headers, create_product, create_staff_user
from tests.payments import stripe_events as se
from tests.payments.conftest import free_port

# stripe 16's async client hands httpx the form body as `data=bytes`, which httpx 0.28
# deprecates; harmless at run time, but this suite turns every warning into an error.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning"
)

API_KEY = "sk_test_ci"
SHIM = Path(__file__).parent / "stripe_fake" / "shim.py"


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = free_port()
    # localstripe's import warns under aiohttp 3.14; a subprocess must not inherit -W error.
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(SHIM), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/v1/balance", auth=(API_KEY, ""), timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            pytest.fail("localstripe did not start")
        yield url
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture
def stripe_api(localstripe_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=localstripe_url, auth=(API_KEY, "")) as api:
        api.delete("/_config/data").raise_for_status()
        yield api


@pytest.fixture
def settings(settings: Settings, localstripe_url: str) -> Settings:
    return settings.model_copy(
        update={
            "payment_provider": "stripe",
            "stripe_api_key": SecretStr(API_KEY),
            "stripe_api_base": localstripe_url,
            "stripe_webhook_secret": SecretStr(se.SECRET),
        }
    )


@pytest.fixture
async def app(app: FastAPI) -> AsyncIterator[FastAPI]:
    """The provider's HTTP pool is closed by the app's lifespan, which ASGITransport skips."""
    yield app
    await app.state.payment_provider.aclose()


async def _deliver_events(stripe_api: httpx.Client, client: httpx.AsyncClient) -> list[str]:
    """Every recorded event, oldest first, signed and posted to the app's webhook."""
    listed = stripe_api.get("/v1/events", params={"limit": 100}).json()["data"]
    delivered = []
    for event in reversed(listed):
        body = json.dumps(event)
        headers = {"Stripe-Signature": se.signed_header(body), "Content-Type": "application/json"}
        response = await client.post("/v1/payments/stripe/webhook", content=body, headers=headers)
        assert response.status_code == 200, response.text
        delivered.append(event["type"])
    return delivered


async def _count(session: AsyncSession, model: Any, *where: Any) -> int:
    found = await session.scalar(select(func.count()).select_from(model).where(*where))
    await session.commit()
    return int(found or 0)


async def test_one_off_purchase_return_events_and_refund(
    session: AsyncSession, client: httpx.AsyncClient, stripe_api: httpx.Client
) -> None:
    await create_product(session, code="ANNUAL", price_minor=7500)
    operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    staff_headers = await auth_headers(session, staff_user=operator)
    await session.commit()
    body = {
        "product_code": "ANNUAL",
        "holders": [
            {
                "first_name": "Sanne",
                "last_name": "Jansen",
                "email": "sanne@example.org",
                "birth_date": "1990-04-02",
                "postal_code": "3511 AB",
                "language": "en",
            }
        ],
    }
    bought = await client.post("/v1/purchases", json=body)
    assert bought.status_code == 201, bought.text
    payment_id = bought.json()["payment"]["id"]
    checkout_id = bought.json()["checkout_url"].rsplit("/", 1)[1]
    session_at_stripe = stripe_api.get(f"/v1/checkout/sessions/{checkout_id}").json()
    assert session_at_stripe["amount_total"] == 7500
    assert session_at_stripe["client_reference_id"] == payment_id

    stripe_api.post(f"/_test/checkout/sessions/{checkout_id}/complete").raise_for_status()
    back = await client.get(f"/v1/purchases/{payment_id}/return")
    assert back.json()["membership_status"] == "active"

    delivered = await _deliver_events(stripe_api, client)
    assert "checkout.session.completed" in delivered
    assert await _count(session, WebhookEvent, WebhookEvent.processed_at.is_(None)) == 0
    assert await _count(session, MembershipTerm) == 1
    assert await _count(session, Card, Card.status == CardStatus.ACTIVE) == 1

    refund = await client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount_minor": 7500, "reason": "changed their mind"},
        headers=staff_headers,
    )
    assert refund.status_code == 201, refund.text
    refunds_at_stripe = stripe_api.get("/v1/refunds").json()["data"]
    assert [r["amount"] for r in refunds_at_stripe] == [7500]
    delivered = await _deliver_events(stripe_api, client)
    assert "charge.refunded" in delivered
    assert await _count(session, Payment, Payment.kind == PaymentKind.REFUND) == 1
    assert await _count(session, Card, Card.status == CardStatus.BLOCKED) == 1


async def _settle(app: FastAPI, settings: Settings) -> None:
    """Events of one second come back in any order; those that waited are retried later."""
    await events.process_due(
        app.state.sessionmaker, settings=settings, now=utcnow() + timedelta(hours=2)
    )


async def test_subscription_renewal_failed_renewal_and_cancel(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
) -> None:
    completed, membership = await _subscribed(session, client, stripe_api, app, settings)
    assert membership.provider_subscription_id == completed["subscription"]
    assert await _count(session, MembershipTerm) == 1

    renewal = stripe_api.post(
        "/v1/invoices",
        data={"customer": completed["customer"], "subscription": completed["subscription"]},
    ).json()
    stripe_api.post(f"/_test/invoices/{renewal['id']}/pay").raise_for_status()
    await _deliver_events(stripe_api, client)
    await _settle(app, settings)
    terms = list(await session.scalars(select(MembershipTerm).order_by(MembershipTerm.starts_on)))
    await session.commit()
    assert len(terms) == 2
    assert terms[1].starts_on == terms[0].ends_on
    assert await _count(session, Payment, Payment.kind == PaymentKind.RENEWAL) == 1

    stripe_api.post(f"/_test/customers/{completed['customer']}/declining_card").raise_for_status()
    failing = stripe_api.post(
        "/v1/invoices",
        data={"customer": completed["customer"], "subscription": completed["subscription"]},
    ).json()
    stripe_api.post(f"/_test/invoices/{failing['id']}/pay")
    await _deliver_events(stripe_api, client)
    status = await session.scalar(select(Membership.status).where(Membership.id == membership.id))
    await session.commit()
    assert status == MembershipStatus.IN_GRACE
    assert await _count(session, OutboxEmail, OutboxEmail.template == "payment_failed") == 1
    assert await _count(session, MembershipTerm) == 2

    stripe_api.delete(f"/v1/subscriptions/{completed['subscription']}").raise_for_status()
    await _deliver_events(stripe_api, client)
    auto_renew = await session.scalar(
        select(Membership.auto_renew).where(Membership.id == membership.id)
    )
    await session.commit()
    assert auto_renew is False


async def _subscribed(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
) -> tuple[dict[str, Any], Membership]:
    """An auto-renewing purchase paid through Checkout, its events handled."""
    await create_product(session, code="ANNUAL", price_minor=7500)
    await session.commit()
    body = {
        "product_code": "ANNUAL",
        "auto_renew": True,
        "holders": [
            {
                "first_name": "Joke",
                "last_name": "de Vries",
                "email": "joke@example.org",
                "birth_date": "1980-06-15",
                "postal_code": "2511 CV",
                "language": "nl",
            }
        ],
    }
    bought = await client.post("/v1/purchases", json=body)
    assert bought.status_code == 201, bought.text
    checkout_id = bought.json()["checkout_url"].rsplit("/", 1)[1]
    completed = stripe_api.post(f"/_test/checkout/sessions/{checkout_id}/complete").json()
    await _deliver_events(stripe_api, client)
    await _settle(app, settings)
    membership = await session.scalar(select(Membership).where(Membership.auto_renew.is_(True)))
    await session.commit()
    assert membership is not None
    return completed, membership


async def _renew_at_stripe(
    stripe_api: httpx.Client, client: httpx.AsyncClient, completed: dict[str, Any]
) -> dict[str, Any]:
    """A renewal invoice paid by the subscription; returns it as Stripe knows it."""
    invoice = stripe_api.post(
        "/v1/invoices",
        data={"customer": completed["customer"], "subscription": completed["subscription"]},
    ).json()
    stripe_api.post(f"/_test/invoices/{invoice['id']}/pay").raise_for_status()
    await _deliver_events(stripe_api, client)
    paid: dict[str, Any] = stripe_api.get(f"/v1/invoices/{invoice['id']}").json()
    return paid


async def _renewal_payment(session: AsyncSession) -> Payment:
    payment = await session.scalar(
        select(Payment)
        .where(Payment.kind == PaymentKind.RENEWAL)
        .execution_options(populate_existing=True)
    )
    await session.commit()
    assert payment is not None
    return payment


async def _renewal_is_the_current_term(session: AsyncSession, settings: Settings) -> None:
    """Travel a year on: the first term is over, the renewal term runs today."""
    terms = list(await session.scalars(select(MembershipTerm).order_by(MembershipTerm.starts_on)))
    today = local_date(utcnow(), settings.programme_timezone)
    shift = terms[1].starts_on - today + timedelta(days=30)
    for term in terms:
        term.starts_on -= shift
        term.ends_on -= shift
    await session.commit()


async def test_operator_refund_of_the_current_renewal_ends_it_and_blocks_cards(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
) -> None:
    completed, membership = await _subscribed(session, client, stripe_api, app, settings)
    invoice = await _renew_at_stripe(stripe_api, client, completed)
    await _settle(app, settings)
    renewal = await _renewal_payment(session)
    assert renewal.provider_payment_id == invoice["id"]
    await _renewal_is_the_current_term(session, settings)
    operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    headers = await auth_headers(session, staff_user=operator)
    await session.commit()

    refunded = await client.post(
        f"/v1/payments/{renewal.id}/refunds",
        json={"amount_minor": 7500, "reason": "moved abroad"},
        headers=headers,
    )
    assert refunded.status_code == 201, refunded.text
    at_stripe = stripe_api.get("/v1/refunds").json()["data"]
    assert [(r["payment_intent"], r["amount"]) for r in at_stripe] == [
        (invoice["payment_intent"], 7500)
    ]
    delivered = await _deliver_events(stripe_api, client)
    assert "charge.refunded" in delivered
    await _settle(app, settings)

    assert await _count(session, Payment, Payment.kind == PaymentKind.REFUND) == 1
    statuses = list(
        await session.scalars(select(MembershipTerm.status).order_by(MembershipTerm.starts_on))
    )
    await session.commit()
    assert [s.value for s in statuses] == ["active", "refunded"]
    gone = (
        await session.execute(
            select(Membership.status, Membership.auto_renew).where(Membership.id == membership.id)
        )
    ).one()
    await session.commit()
    assert tuple(gone) == (MembershipStatus.REFUNDED, False)
    assert await _count(session, Card, Card.status == CardStatus.BLOCKED) == 1
    subscription = stripe_api.get(f"/v1/subscriptions/{completed['subscription']}").json()
    assert subscription["status"] == "canceled"


async def test_dashboard_refund_of_an_early_renewal_ends_only_that_term_once(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
) -> None:
    completed, membership = await _subscribed(session, client, stripe_api, app, settings)
    invoice = await _renew_at_stripe(stripe_api, client, completed)
    await _settle(app, settings)

    # Partly, then the rest, from the dashboard: the charge names only its payment intent.
    intent = invoice["payment_intent"]
    stripe_api.post("/v1/refunds", data={"payment_intent": intent, "amount": 2500})
    await _deliver_events(stripe_api, client)
    renewal = await _renewal_payment(session)
    assert (renewal.status.value, renewal.refunded_minor) == ("partially_refunded", 2500)
    assert await _count(session, MembershipTerm, MembershipTerm.status == "refunded") == 0

    stripe_api.post("/v1/refunds", data={"payment_intent": intent, "amount": 5000})
    delivered = await _deliver_events(stripe_api, client)
    assert delivered.count("charge.refunded") == 2  # the first one again: changes nothing
    await _settle(app, settings)
    renewal = await _renewal_payment(session)
    assert (renewal.status.value, renewal.refunded_minor) == ("refunded", 7500)
    assert await _count(session, Payment, Payment.kind == PaymentKind.REFUND) == 2
    statuses = list(
        await session.scalars(select(MembershipTerm.status).order_by(MembershipTerm.starts_on))
    )
    await session.commit()
    assert [s.value for s in statuses] == ["active", "refunded"]
    # The first term still runs: the member keeps the card until its end.
    still = await session.scalar(select(Membership.status).where(Membership.id == membership.id))
    await session.commit()
    assert still == MembershipStatus.ACTIVE
    assert await _count(session, Card, Card.status == CardStatus.ACTIVE) == 1


async def test_refund_of_a_subscriptions_first_payment_goes_to_its_invoice(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
) -> None:
    completed, _membership = await _subscribed(session, client, stripe_api, app, settings)
    first = await session.scalar(select(Payment).where(Payment.kind == PaymentKind.PURCHASE))
    operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    headers = await auth_headers(session, staff_user=operator)
    await session.commit()
    assert first is not None
    assert first.provider_payment_id == completed["invoice"]
    refunded = await client.post(
        f"/v1/payments/{first.id}/refunds",
        json={"amount_minor": 7500, "reason": "duplicate purchase"},
        headers=headers,
    )
    assert refunded.status_code == 201, refunded.text
    invoice = stripe_api.get(f"/v1/invoices/{completed['invoice']}").json()
    at_stripe = stripe_api.get("/v1/refunds").json()["data"]
    assert [r["payment_intent"] for r in at_stripe] == [invoice["payment_intent"]]
    await _deliver_events(stripe_api, client)
    assert await _count(session, Payment, Payment.kind == PaymentKind.REFUND) == 1
    assert await _count(session, Card, Card.status == CardStatus.BLOCKED) == 1


async def test_operator_refund_and_its_echo_at_the_same_instant_book_one_refund(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
    backend: str,
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: this race needs row locks")
    completed, _membership = await _subscribed(session, client, stripe_api, app, settings)
    invoice = await _renew_at_stripe(stripe_api, client, completed)
    await _settle(app, settings)
    renewal = await _renewal_payment(session)
    operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    headers = await auth_headers(session, staff_user=operator)
    await session.commit()
    echo = se.charge_refunded(invoice["payment_intent"], amount=7500, refunded=7500)
    body, signed = se.signed(echo)
    answers = await asyncio.gather(
        client.post(
            f"/v1/payments/{renewal.id}/refunds",
            json={"amount_minor": 7500, "reason": "double charge"},
            headers=headers,
        ),
        *(
            client.post("/v1/payments/stripe/webhook", content=body, headers=signed)
            for _ in range(5)
        ),
    )
    assert all(answer.status_code in (200, 201, 422) for answer in answers), answers
    await _deliver_events(stripe_api, client)
    await _settle(app, settings)
    assert await _count(session, Payment, Payment.kind == PaymentKind.REFUND) == 1
    assert await _count(session, MembershipTerm, MembershipTerm.status == "refunded") == 1
    refunded = await _renewal_payment(session)
    assert refunded.refunded_minor == 7500


async def test_erasing_a_subscriber_cancels_the_subscription_at_stripe(
    session: AsyncSession,
    client: httpx.AsyncClient,
    stripe_api: httpx.Client,
    app: FastAPI,
    settings: Settings,
) -> None:
    completed, membership = await _subscribed(session, client, stripe_api, app, settings)
    operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    headers = await auth_headers(session, staff_user=operator)
    holder = await session.scalar(select(Card.member_id).where(Card.membership_id == membership.id))
    await session.commit()

    erased = await client.post(f"/v1/admin/members/{holder}/erasure", headers=headers)

    assert erased.status_code == 200, erased.text
    subscription = stripe_api.get(f"/v1/subscriptions/{completed['subscription']}").json()
    assert subscription["status"] == "canceled"
    # Stripe's own word of the cancellation is handled like any other, for a member now erased.
    assert "customer.subscription.deleted" in await _deliver_events(stripe_api, client)
    assert await _count(session, WebhookEvent, WebhookEvent.processed_at.is_(None)) == 0
    auto_renew = await session.scalar(
        select(Membership.auto_renew).where(Membership.id == membership.id)
    )
    await session.commit()
    assert auto_renew is False

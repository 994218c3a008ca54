"""The Stripe webhook: signed events stored once, handled once, in any order (rule 3)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import utcnow
from membership.models import (
    AuditEntry,
    Card,
    CardStatus,
    Membership,
    MembershipStatus,
    MembershipTerm,
    OutboxEmail,
    Payment,
    PaymentStatus,
    Receipt,
    TermStatus,
    WebhookEvent,
)
from membership.payments import events
from membership.settings import Settings
from tests.factories import create_member, create_pending_purchase, create_product
from tests.helpers import assert_problem, table_counts
from tests.payments import stripe_events as se

URL = "/v1/payments/stripe/webhook"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"stripe_webhook_secret": SecretStr(se.SECRET)})


async def _pending(session: AsyncSession, *, holders: int = 1, auto_renew: bool = False) -> Payment:
    product = await create_product(session, max_holders=max(holders, 1))
    people = [await create_member(session) for _ in range(holders)]
    payment = await create_pending_purchase(
        session, product=product, holders=people, auto_renew=auto_renew
    )
    await session.commit()
    return payment


async def _post(client: httpx.AsyncClient, event: dict[str, object]) -> dict[str, object]:
    body, headers = se.signed(event)
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


async def _count(session: AsyncSession, model: Any, *where: Any) -> int:
    count = await session.scalar(select(func.count()).select_from(model).where(*where))
    await session.commit()
    return int(count or 0)


async def _membership(session: AsyncSession, payment: Payment) -> Membership:
    membership = await session.scalar(
        select(Membership)
        .where(Membership.id == payment.membership_id)
        .execution_options(populate_existing=True)
    )
    await session.commit()
    assert membership is not None
    return membership


class TestSignature:
    async def test_bad_signature_wrong_secret_and_stale_timestamp_store_nothing(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        event = se.event("invoice.paid", {"id": "in_1", "object": "invoice"})
        before = await table_counts(session)
        body, headers = se.signed(event, secret="whsec_someone_else")
        assert_problem(
            await client.post(URL, content=body, headers=headers), 400, "invalid-signature"
        )
        body, headers = se.signed(event, timestamp=int(time.time()) - 1000)
        assert_problem(
            await client.post(URL, content=body, headers=headers), 400, "invalid-signature"
        )
        body, headers = se.signed(event)
        tampered = body.replace("in_1", "in_2")
        assert_problem(
            await client.post(URL, content=tampered, headers=headers), 400, "invalid-signature"
        )
        assert_problem(await client.post(URL, content=body), 400, "invalid-signature")
        assert await table_counts(session) == before

    @pytest.mark.parametrize("secret", [None, ""])
    async def test_missing_or_empty_secret_refuses_every_event(
        self, session: AsyncSession, client: httpx.AsyncClient, app: FastAPI, secret: str | None
    ) -> None:
        app.state.settings = app.state.settings.model_copy(
            update={"stripe_webhook_secret": None if secret is None else SecretStr(secret)}
        )
        body, headers = se.signed(se.event("invoice.paid", {"id": "in_1"}), secret="")
        assert_problem(
            await client.post(URL, content=body, headers=headers), 503, "webhook-not-configured"
        )
        assert await _count(session, WebhookEvent) == 0


class TestCheckoutCompleted:
    async def test_applies_the_payment_once_however_often_it_arrives(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await _pending(session, holders=2)
        event = se.checkout_completed(payment.provider_checkout_id or "")
        assert (await _post(client, event))["duplicate"] is False
        assert (await _post(client, event))["duplicate"] is True
        assert await _count(session, WebhookEvent) == 1
        assert await _count(session, MembershipTerm, MembershipTerm.payment_id == payment.id) == 1
        assert await _count(session, Card, Card.membership_id == payment.membership_id) == 2
        assert await _count(session, OutboxEmail, OutboxEmail.template == "welcome") == 2
        assert await _count(session, Receipt, Receipt.payment_id == payment.id) == 1
        assert (await _membership(session, payment)).status == MembershipStatus.ACTIVE
        stored = await session.scalar(select(WebhookEvent))
        assert stored is not None
        assert stored.processed_at is not None

    async def test_receipt_carries_the_vat_included_at_the_products_rate(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await _pending(session)
        await _post(client, se.checkout_completed(payment.provider_checkout_id or ""))
        receipt = await session.scalar(select(Receipt).where(Receipt.payment_id == payment.id))
        assert receipt is not None
        # 75.00 including 9 % VAT holds 6.19 of VAT.
        assert (receipt.amount_minor, receipt.vat_minor, receipt.vat_rate_bp) == (7500, 619, 900)
        assert receipt.reference == payment.reference

    async def test_unpaid_completion_waits_and_expiry_cancels(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await _pending(session)
        checkout = payment.provider_checkout_id or ""
        await _post(client, se.checkout_completed(checkout, paid=False))
        await _post(client, se.checkout_expired(checkout))
        refreshed = await session.scalar(
            select(Payment)
            .where(Payment.id == payment.id)
            .execution_options(populate_existing=True)
        )
        assert refreshed is not None
        assert refreshed.status == PaymentStatus.CANCELLED
        assert await _count(session, MembershipTerm) == 0

    async def test_event_before_its_payment_exists_waits_for_a_retry(
        self, session: AsyncSession, client: httpx.AsyncClient, app: FastAPI, settings: Settings
    ) -> None:
        await _post(client, se.checkout_completed("cs_not_yet"))
        product = await create_product(session)
        member = await create_member(session)
        await create_pending_purchase(
            session, product=product, holders=[member], checkout_id="cs_not_yet"
        )
        await session.commit()
        stored = await session.scalar(select(WebhookEvent))
        assert stored is not None
        assert stored.processed_at is None
        assert stored.attempts == 1
        await session.commit()
        later = utcnow() + timedelta(hours=2)
        taken = await events.process_due(app.state.sessionmaker, settings=settings, now=later)
        assert taken == 1
        assert await _count(session, MembershipTerm) == 1
        assert await _count(session, WebhookEvent, WebhookEvent.processed_at.is_(None)) == 0


class TestSubscriptions:
    async def _subscribed(self, session: AsyncSession, client: httpx.AsyncClient) -> Payment:
        payment = await _pending(session, auto_renew=True)
        await _post(
            client, se.checkout_completed(payment.provider_checkout_id or "", subscription="sub_1")
        )
        await _post(
            client, se.invoice("invoice.paid", "in_first", "sub_1", reason="subscription_create")
        )
        return payment

    async def test_renewal_invoice_extends_from_the_old_end(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await self._subscribed(session, client)
        assert await _count(session, MembershipTerm) == 1
        await _post(client, se.invoice("invoice.paid", "in_2", "sub_1"))
        await _post(client, se.invoice("invoice.paid", "in_2", "sub_1"))
        terms = list(
            await session.scalars(
                select(MembershipTerm)
                .where(MembershipTerm.membership_id == payment.membership_id)
                .order_by(MembershipTerm.starts_on)
            )
        )
        await session.commit()
        assert len(terms) == 2
        assert terms[1].starts_on == terms[0].ends_on
        # The renewal keeps the holder's card: no second card, one renewal e-mail.
        assert await _count(session, Card) == 1
        assert await _count(session, OutboxEmail, OutboxEmail.template == "renewed") == 1

    async def test_renewal_before_the_checkout_waits_then_applies(
        self, session: AsyncSession, client: httpx.AsyncClient, app: FastAPI, settings: Settings
    ) -> None:
        payment = await _pending(session, auto_renew=True)
        await _post(client, se.invoice("invoice.paid", "in_2", "sub_1"))
        assert await _count(session, MembershipTerm) == 0
        await _post(
            client, se.checkout_completed(payment.provider_checkout_id or "", subscription="sub_1")
        )
        await events.process_due(
            app.state.sessionmaker, settings=settings, now=utcnow() + timedelta(hours=2)
        )
        assert await _count(session, MembershipTerm) == 2

    async def test_failed_renewal_puts_the_membership_in_grace_and_mails(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await self._subscribed(session, client)
        await _post(client, se.invoice("invoice.payment_failed", "in_2", "sub_1"))
        assert (await _membership(session, payment)).status == MembershipStatus.IN_GRACE
        assert await _count(session, OutboxEmail, OutboxEmail.template == "payment_failed") == 1

    async def test_deleted_subscription_turns_auto_renew_off(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await self._subscribed(session, client)
        await _post(client, se.subscription_deleted("sub_1"))
        membership = await _membership(session, payment)
        assert membership.auto_renew is False
        assert membership.status == MembershipStatus.ACTIVE


class TestRefundAndUnknown:
    async def test_full_refund_at_the_provider_ends_the_term_and_blocks_cards(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await _pending(session)
        checkout = payment.provider_checkout_id or ""
        await _post(client, se.checkout_completed(checkout))
        await _post(client, se.charge_refunded(f"pi_{checkout}", amount=7500, refunded=7500))
        await _post(client, se.charge_refunded(f"pi_{checkout}", amount=7500, refunded=7500))
        assert (await _membership(session, payment)).status == MembershipStatus.REFUNDED
        term = await session.scalar(select(MembershipTerm))
        assert term is not None
        assert term.status == TermStatus.REFUNDED
        card = await session.scalar(select(Card))
        assert card is not None
        assert card.status == CardStatus.BLOCKED
        assert await _count(session, Payment, Payment.refund_of_id == payment.id) == 1
        assert await _count(session, AuditEntry, AuditEntry.action == "payment.refund") == 1

    async def test_partial_refund_keeps_the_membership(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        payment = await _pending(session)
        checkout = payment.provider_checkout_id or ""
        await _post(client, se.checkout_completed(checkout))
        await _post(client, se.charge_refunded(f"pi_{checkout}", amount=7500, refunded=2500))
        assert (await _membership(session, payment)).status == MembershipStatus.ACTIVE
        refreshed = await session.scalar(
            select(Payment)
            .where(Payment.id == payment.id)
            .execution_options(populate_existing=True)
        )
        assert refreshed is not None
        assert (refreshed.status, refreshed.refunded_minor) == (
            PaymentStatus.PARTIALLY_REFUNDED,
            2500,
        )

    async def test_unknown_event_type_is_stored_and_ignored(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await _post(client, se.event("customer.created", {"id": "cus_1", "object": "customer"}))
        stored = await session.scalar(select(WebhookEvent))
        assert stored is not None
        assert stored.type == "customer.created"
        assert stored.processed_at is not None
        assert await _count(session, Payment) == 0


@pytest.mark.postgres
class TestConcurrency:
    async def test_ten_copies_in_parallel_give_one_term_one_card_one_mail(
        self, session: AsyncSession, client: httpx.AsyncClient, backend: str
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        payment = await _pending(session)
        event = se.checkout_completed(payment.provider_checkout_id or "")
        answers = await asyncio.gather(*(_post(client, event) for _ in range(10)))
        assert sum(1 for answer in answers if answer["duplicate"] is False) == 1
        assert await _count(session, MembershipTerm) == 1
        assert await _count(session, Card) == 1
        assert await _count(session, OutboxEmail, OutboxEmail.template == "welcome") == 1
        assert await _count(session, Receipt) == 1

    async def test_ten_distinct_deliveries_racing_apply_once(
        self, session: AsyncSession, client: httpx.AsyncClient, backend: str
    ) -> None:
        """Different event ids for one checkout (Stripe may resend as a new event): the payment
        row lock and the unique term per payment keep it to one term."""
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        payment = await _pending(session)
        checkout = payment.provider_checkout_id or ""
        await asyncio.gather(*(_post(client, se.checkout_completed(checkout)) for _ in range(10)))
        assert await _count(session, WebhookEvent) == 10
        assert await _count(session, MembershipTerm) == 1
        assert await _count(session, Card) == 1
        assert await _count(session, OutboxEmail, OutboxEmail.template == "welcome") == 1

"""`LocalProvider`: sells cards with no Stripe account, for demos (`make run`) and tests.

Its checkout is a page of this service with "pay" and "decline". Choosing one stores the same
Stripe-shaped event (`checkout.session.completed` or `checkout.session.expired`) that Stripe
would send, through the same store-once-then-handle path, so a demo exercises the real code.
State lives in the database (the stored events), never in process memory, so any worker can
answer for any checkout.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership.errors import NotFound
from membership.models import Membership, Payment, WebhookEvent
from membership.payments import events
from membership.payments.provider import (
    Checkout,
    CheckoutRequest,
    CheckoutState,
    CheckoutStatus,
    Refund,
)

NAME = "local"
_PREFIX = "cs_local_"


class CheckoutNotFound(NotFound):
    code = "checkout-not-found"
    title = "No local checkout has this id"


def _event_id(checkout_id: str, outcome: str) -> str:
    # One id per checkout and outcome: paying twice stores one event.
    return f"evt_{checkout_id}_{outcome}"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class LocalProvider:
    name = NAME

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, base_url: str) -> None:
        self._sessionmaker = sessionmaker
        self._base_url = base_url.rstrip("/")

    def _checkout(self, request: CheckoutRequest) -> Checkout:
        checkout_id = _PREFIX + request.payment_id.replace("-", "")
        return Checkout(
            checkout_id=checkout_id,
            url=f"{self._base_url}/v1/payments/local/checkouts/{checkout_id}",
        )

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        return self._checkout(request)

    async def start_subscription(self, request: CheckoutRequest) -> Checkout:
        return self._checkout(request)

    async def checkout_status(self, checkout_id: str) -> CheckoutStatus:
        async with self._sessionmaker() as session:
            found = await session.scalars(
                select(WebhookEvent.provider_event_id).where(
                    WebhookEvent.provider == NAME,
                    WebhookEvent.provider_event_id.in_(
                        [_event_id(checkout_id, "paid"), _event_id(checkout_id, "declined")]
                    ),
                )
            )
            ids = set(found)
        if _event_id(checkout_id, "paid") in ids:
            return CheckoutStatus(
                checkout_id=checkout_id,
                state=CheckoutState.PAID,
                provider_payment_id="pi_" + checkout_id,
            )
        if _event_id(checkout_id, "declined") in ids:
            return CheckoutStatus(checkout_id=checkout_id, state=CheckoutState.EXPIRED)
        return CheckoutStatus(checkout_id=checkout_id, state=CheckoutState.OPEN)

    async def refund(
        self, *, provider_payment_id: str, amount_minor: int, idempotency_key: str
    ) -> Refund:
        return Refund(refund_id="re_local_" + _short(idempotency_key), amount_minor=amount_minor)

    async def cancel_subscription(self, subscription_id: str) -> None:
        """Nothing to cancel elsewhere: a local subscription exists only as our membership."""

    async def aclose(self) -> None:
        """No connections of its own: it uses the app's sessions."""


async def checkout_payment(session: AsyncSession, *, checkout_id: str) -> Payment:
    """The payment a local checkout page is for: what the page shows (amount, reference)."""
    payment = await session.scalar(
        select(Payment).where(Payment.provider == NAME, Payment.provider_checkout_id == checkout_id)
    )
    if payment is None:
        raise CheckoutNotFound()
    return payment


async def finish_checkout(
    session: AsyncSession, *, checkout_id: str, paid: bool, now: datetime
) -> events.Stored:
    """Store the event Stripe would send for this outcome; the caller handles it after commit."""
    payment = await checkout_payment(session, checkout_id=checkout_id)
    membership = await session.get(Membership, payment.membership_id)
    subscription = (
        "sub_local_" + checkout_id.removeprefix(_PREFIX)
        if paid and membership is not None and membership.auto_renew
        else None
    )
    checkout: dict[str, Any] = {
        "id": checkout_id,
        "object": "checkout.session",
        "mode": "subscription" if subscription else "payment",
        "status": "complete" if paid else "expired",
        "payment_status": "paid" if paid else "unpaid",
        "payment_intent": "pi_" + checkout_id if paid and not subscription else None,
        "invoice": "in_" + checkout_id if subscription else None,
        "subscription": subscription,
        "client_reference_id": str(payment.id),
        "amount_total": payment.amount_minor,
        "currency": payment.currency.lower(),
        "metadata": {"payment_id": str(payment.id), "reference": payment.reference},
    }
    event = {
        "id": _event_id(checkout_id, "paid" if paid else "declined"),
        "object": "event",
        "type": "checkout.session.completed" if paid else "checkout.session.expired",
        "created": int(now.timestamp()),
        "livemode": False,
        "data": {"object": checkout},
    }
    return await events.store(session, provider=NAME, event=event, now=now)

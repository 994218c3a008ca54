"""`LocalProvider`: sells cards with no Stripe account, for demos (`make run`) and tests.

Its checkout is a page of this service with "pay" and "decline". Choosing one stores the same
Stripe-shaped event (`checkout.session.completed` or `checkout.session.expired`) that Stripe
would send, through the same store-once-then-handle path, so a demo exercises the real code.
State lives in the database (the stored events), never in process memory, so any worker can
answer for any checkout.

An auto-renewing checkout starts a local subscription. Stripe would charge it at the end of
each period; here the job runner does (`charge_due_renewals`), storing the `invoice.paid` or
`invoice.payment_failed` Stripe would send, so renewals and their failures take the same path
as in production. Paying with the "expiring card" makes every renewal of that subscription
fail, to show the grace days and the e-mails without waiting for a real card to expire.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership.clock import local_date
from membership.errors import NotFound
from membership.models import (
    Membership,
    MembershipStatus,
    MembershipTerm,
    Payment,
    Product,
    TermStatus,
    WebhookEvent,
)
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
_SUBSCRIPTION_PREFIX = "sub_local_"
_EXPIRING = "expiring"


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

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, base_url: str, timezone: str
    ) -> None:
        self._sessionmaker = sessionmaker
        self._base_url = base_url.rstrip("/")
        self._timezone = timezone

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
        """Nothing to cancel elsewhere: a local subscription is our membership's auto-renew,
        which the caller turns off, and only auto-renewing memberships are charged."""

    async def invoice_of_payment(self, provider_payment_id: str) -> str | None:
        """Local refunds send no `charge.refunded`, so no charge ever needs its invoice."""
        return None

    async def charge_due_renewals(self, *, now: datetime) -> int:
        """Charge every local subscription whose paid period has ended (as Stripe would at
        `current_period_end`): one invoice per period, whose event id makes racing runners
        store it once; the event is then handled like Stripe's."""
        today = local_date(now, self._timezone)
        ends = (
            select(MembershipTerm.membership_id, func.max(MembershipTerm.ends_on).label("ends_on"))
            .where(MembershipTerm.status == TermStatus.ACTIVE)
            .group_by(MembershipTerm.membership_id)
            .subquery()
        )
        async with self._sessionmaker() as session:
            due = await session.execute(
                select(
                    Membership.provider_subscription_id,
                    ends.c.ends_on,
                    Product.price_minor,
                    Product.currency,
                )
                .join(ends, ends.c.membership_id == Membership.id)
                .join(Product, Product.id == Membership.product_id)
                .where(
                    Membership.auto_renew.is_(True),
                    Membership.provider_subscription_id.startswith(
                        _SUBSCRIPTION_PREFIX, autoescape=True
                    ),
                    Membership.status.in_((MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)),
                    ends.c.ends_on <= today,
                )
            )
            charged = 0
            for subscription, period_end, price_minor, currency in list(due):
                declined = await _card_expiring(session, subscription)
                event = _renewal_invoice_event(
                    subscription=subscription,
                    period_end=period_end,
                    amount_minor=price_minor,
                    currency=currency,
                    paid=not declined,
                    now=now,
                )
                stored = await events.store(session, provider=NAME, event=event, now=now)
                charged += 0 if stored.duplicate else 1
            await session.commit()
        return charged

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


def _renewal_invoice_event(
    *,
    subscription: str,
    period_end: date,
    amount_minor: int,
    currency: str,
    paid: bool,
    now: datetime,
) -> dict[str, Any]:
    """The event Stripe sends for a subscription's renewal invoice, in the current API shape."""
    invoice_id = f"in_local_{subscription.removeprefix(_SUBSCRIPTION_PREFIX)}_{period_end:%Y%m%d}"
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "billing_reason": "subscription_cycle",
        "status": "paid" if paid else "open",
        "amount_due": amount_minor,
        "amount_paid": amount_minor if paid else 0,
        "currency": currency.lower(),
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription},
        },
    }
    return {
        "id": "evt_" + invoice_id,
        "object": "event",
        "type": "invoice.paid" if paid else "invoice.payment_failed",
        "created": int(now.timestamp()),
        "livemode": False,
        "data": {"object": invoice},
    }


async def _card_expiring(session: AsyncSession, subscription: str) -> bool:
    """Whether the subscription was paid with the page's expiring card (kept in its event)."""
    checkout_id = _PREFIX + subscription.removeprefix(_SUBSCRIPTION_PREFIX)
    payload = await session.scalar(
        select(WebhookEvent.payload).where(
            WebhookEvent.provider == NAME,
            WebhookEvent.provider_event_id == _event_id(checkout_id, "paid"),
        )
    )
    metadata = ((payload or {}).get("data") or {}).get("object", {}).get("metadata") or {}
    return bool(metadata.get("card") == _EXPIRING)


async def finish_checkout(
    session: AsyncSession,
    *,
    checkout_id: str,
    paid: bool,
    now: datetime,
    expiring_card: bool = False,
) -> events.Stored:
    """Store the event Stripe would send for this outcome; the caller handles it after commit.

    `expiring_card` pays now with a card that every later renewal of the subscription finds
    declined.
    """
    payment = await checkout_payment(session, checkout_id=checkout_id)
    membership = await session.get(Membership, payment.membership_id)
    subscription = (
        _SUBSCRIPTION_PREFIX + checkout_id.removeprefix(_PREFIX)
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
    if subscription and expiring_card:
        checkout["metadata"]["card"] = _EXPIRING
    event = {
        "id": _event_id(checkout_id, "paid" if paid else "declined"),
        "object": "event",
        "type": "checkout.session.completed" if paid else "checkout.session.expired",
        "created": int(now.timestamp()),
        "livemode": False,
        "data": {"object": checkout},
    }
    return await events.store(session, provider=NAME, event=event, now=now)

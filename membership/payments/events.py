"""Provider events: stored once by event id, then handled in a transaction of their own.

The HTTP endpoint only verifies and stores (an INSERT that ignores a duplicate event id), so it
answers at once. Handling happens right after in a fresh transaction that also marks the row
handled, or later in `jobs`: an event that arrives before what it refers to (a renewal invoice
before the checkout that created the subscription) is put back with a backoff and retried.
Both Stripe and the local provider send events of Stripe's shape; one handler serves both.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership import memberships, outbox
from membership.audit import Actor
from membership.models import (
    Membership,
    MembershipStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    WebhookEvent,
)
from membership.payments.provider import PaymentProvider
from membership.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
CLAIM_FOR = timedelta(minutes=5)
_BACKOFF_BASE = timedelta(seconds=10)
_BACKOFF_MAX = timedelta(hours=1)


class NotReady(Exception):
    """The event refers to something not (yet) here; it waits and is tried again."""


@dataclass(frozen=True)
class Stored:
    event_id: int | None  # None: this provider event id was stored before

    @property
    def duplicate(self) -> bool:
        return self.event_id is None


async def store(
    session: AsyncSession, *, provider: str, event: dict[str, Any], now: datetime
) -> Stored:
    """Insert the event unless its provider id is known; the unique constraint decides races."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(WebhookEvent)
        .values(
            provider=provider,
            provider_event_id=str(event["id"]),
            type=str(event.get("type", ""))[:100],
            payload=event,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(WebhookEvent.id)
    )
    return Stored(event_id=await session.scalar(statement))


def backoff(attempts: int) -> timedelta:
    delay: timedelta = _BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    return min(delay, _BACKOFF_MAX)


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data") or {}
    found = data.get("object") if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _subscription_of_invoice(invoice: dict[str, Any]) -> str | None:
    """The current API puts it in `invoice.parent`; the pre-2025 `invoice.subscription` is gone."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, dict) else {}
    return _id(details.get("subscription")) if isinstance(details, dict) else None


@dataclass(frozen=True)
class Context:
    """What a handler may use besides the event: `client` is the app's provider, when the
    event came from it, for the rare link only the provider knows (a charge's invoice)."""

    provider: str
    client: PaymentProvider | None
    settings: Settings
    now: datetime


Handler = Callable[[AsyncSession, Context, dict[str, Any]], Awaitable[str]]


async def _checkout_completed(session: AsyncSession, ctx: Context, event: dict[str, Any]) -> str:
    checkout = _object(event)
    payment = await memberships.find_payment(
        session, provider=ctx.provider, checkout_id=_id(checkout) or ""
    )
    if payment is None:
        raise NotReady("no payment for this checkout yet")
    if checkout.get("payment_status") not in ("paid", "no_payment_required"):
        return "awaiting-payment"
    result = await memberships.apply_payment(
        session,
        payment_id=payment.id,
        provider_payment_id=_id(checkout.get("payment_intent")) or _id(checkout.get("invoice")),
        subscription_id=_id(checkout.get("subscription")),
        settings=ctx.settings,
        now=ctx.now,
    )
    return "applied" if result.applied_now else "already-applied"


async def _checkout_expired(session: AsyncSession, ctx: Context, event: dict[str, Any]) -> str:
    payment = await memberships.find_payment(
        session, provider=ctx.provider, checkout_id=_id(_object(event)) or ""
    )
    if payment is None:
        raise NotReady("no payment for this checkout yet")
    await memberships.mark_payment_failed(
        session, payment_id=payment.id, status=PaymentStatus.CANCELLED
    )
    return "cancelled"


async def _membership_by_subscription(
    session: AsyncSession, subscription_id: str | None
) -> Membership:
    membership = None
    if subscription_id:
        membership = await session.scalar(
            select(Membership).where(Membership.provider_subscription_id == subscription_id)
        )
    if membership is None:
        raise NotReady("no membership for this subscription yet")
    return membership


async def _invoice_paid(session: AsyncSession, ctx: Context, event: dict[str, Any]) -> str:
    """A renewal paid by the subscription; its first invoice is the checkout's own payment.

    The renewal's payment is known by its invoice id: that is what names this period once,
    however often the event comes. The provider links the invoice to the money (its payment
    intent) when a refund needs it.
    """
    invoice = _object(event)
    if invoice.get("billing_reason") == "subscription_create":
        return "first-invoice"
    membership = await _membership_by_subscription(session, _subscription_of_invoice(invoice))
    invoice_id = _id(invoice) or ""
    payment = await memberships.find_payment(
        session, provider=ctx.provider, provider_payment_id=invoice_id
    )
    if payment is None:
        product = (await memberships.load_membership(session, membership_id=membership.id)).product
        payment = Payment(
            id=uuid.uuid4(),
            reference=memberships.new_reference(ctx.settings.programme_code),
            membership_id=membership.id,
            kind=PaymentKind.RENEWAL,
            status=PaymentStatus.PENDING,
            provider=ctx.provider,
            provider_payment_id=invoice_id,
            amount_minor=int(invoice.get("amount_paid", product.price_minor)),
            currency=str(invoice.get("currency", product.currency)).upper(),
            vat_rate_bp=product.vat_rate_bp,
        )
        session.add(payment)
        await session.flush()
    result = await memberships.apply_payment(
        session,
        payment_id=payment.id,
        provider_payment_id=invoice_id,
        subscription_id=None,
        settings=ctx.settings,
        now=ctx.now,
    )
    return "applied" if result.applied_now else "already-applied"


async def _invoice_failed(session: AsyncSession, ctx: Context, event: dict[str, Any]) -> str:
    """A failed renewal: the member keeps access through the grace days, and is told."""
    invoice = _object(event)
    membership = await _membership_by_subscription(session, _subscription_of_invoice(invoice))
    loaded = await memberships.load_membership(session, membership_id=membership.id)
    if loaded.status == MembershipStatus.ACTIVE:
        loaded.status = MembershipStatus.IN_GRACE
    for holder in loaded.holders:
        await outbox.enqueue(
            session,
            dedup_key=f"payment_failed:{_id(invoice)}:{holder.id}",
            member=holder,
            template="payment_failed",
            context={
                "first_name": holder.first_name,
                "product": loaded.product.name,
                "grace_days": loaded.product.grace_days,
            },
            now=ctx.now,
        )
    await session.flush()
    return "in-grace"


async def _refunded_payment(
    session: AsyncSession, ctx: Context, charge: dict[str, Any]
) -> Payment | None:
    """Ours by the charge's payment intent (a one-off purchase) or, failing that, by the
    invoice that intent paid (a subscription's first or renewal payment): current Stripe
    charges no longer name their invoice, so only the provider can tell."""
    intent = _id(charge.get("payment_intent"))
    if intent is None:
        return None
    payment = await memberships.find_payment(
        session, provider=ctx.provider, provider_payment_id=intent
    )
    if payment is not None or ctx.client is None or ctx.client.name != ctx.provider:
        return payment
    invoice_id = await ctx.client.invoice_of_payment(intent)
    if invoice_id is None:
        return None
    return await memberships.find_payment(
        session, provider=ctx.provider, provider_payment_id=invoice_id
    )


async def _charge_refunded(session: AsyncSession, ctx: Context, event: dict[str, Any]) -> str:
    """A refund made at the provider (the dashboard, or the echo of our own refund)."""
    charge = _object(event)
    payment = await _refunded_payment(session, ctx, charge)
    if payment is None:
        raise NotReady("no payment for this charge yet")
    total = int(charge.get("amount_refunded", 0))
    booked = await memberships.record_refund(
        session,
        payment_id=payment.id,
        refunded_total_minor=total,
        provider_refund_id=f"{_id(charge)}:{total}",
        reason="refunded at the provider",
        actor=Actor(label=f"webhook:{ctx.provider}"),
        timezone=ctx.settings.programme_timezone,
        now=ctx.now,
    )
    if booked is None:
        return "already-refunded"
    if booked.cancel_subscription and ctx.client is not None:
        await ctx.client.cancel_subscription(booked.cancel_subscription)
    return "refunded"


async def _subscription_deleted(session: AsyncSession, ctx: Context, event: dict[str, Any]) -> str:
    """Auto-renew ended at the provider: the paid term runs out normally."""
    membership = await _membership_by_subscription(session, _id(_object(event)))
    membership.auto_renew = False
    await session.flush()
    return "auto-renew-off"


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
    "checkout.session.expired": _checkout_expired,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_failed,
    "charge.refunded": _charge_refunded,
    "customer.subscription.deleted": _subscription_deleted,
}


async def handle(
    session: AsyncSession,
    *,
    event_id: int,
    settings: Settings,
    now: datetime,
    provider: PaymentProvider | None = None,
) -> str:
    """Handle one stored event in the caller's transaction and mark it handled there too.

    The row is locked first: two runners (or a runner and the endpoint) never handle the same
    event at once, and a handled one is skipped.
    """
    row = await session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.processed_at is not None:
        return "already-handled"
    handler = HANDLERS.get(row.type)
    ctx = Context(provider=row.provider, client=provider, settings=settings, now=now)
    outcome = "ignored" if handler is None else await handler(session, ctx, row.payload)
    row.processed_at = now
    row.attempts += 1
    row.last_error = None
    await session.flush()
    return outcome


async def process(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    event_id: int,
    settings: Settings,
    now: datetime,
    provider: PaymentProvider | None = None,
) -> str:
    """`handle` in its own transaction; a failure is recorded on the event for a later retry.

    An event that used its last attempt is logged at error level: it will not be tried again
    by itself, and the operator sees it in `GET /v1/admin/failed-work`.
    """
    try:
        async with sessionmaker() as session:
            outcome = await handle(
                session, event_id=event_id, settings=settings, now=now, provider=provider
            )
            await session.commit()
    except Exception as exc:  # the event stays stored; the job runner retries it
        reason = "not-ready" if isinstance(exc, NotReady) else "failed"
        if not isinstance(exc, NotReady):
            log.exception("webhook.process.failed", extra={"event_id": event_id})
        async with sessionmaker() as session:
            attempts = (
                await session.scalar(
                    select(WebhookEvent.attempts).where(WebhookEvent.id == event_id)
                )
                or 0
            ) + 1
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.processed_at.is_(None))
                .values(
                    attempts=attempts,
                    next_attempt_at=now + backoff(attempts),
                    last_error=f"{reason}: {exc}"[:1000],
                )
            )
            await session.commit()
        if attempts >= MAX_ATTEMPTS:
            log.error(
                "webhook.process.gave_up",
                extra={"event_id": event_id, "attempts": attempts, "error": f"{reason}: {exc}"},
            )
        else:
            log.info("webhook.process.retry", extra={"event_id": event_id, "attempts": attempts})
        return reason
    log.info("webhook.process.done", extra={"event_id": event_id, "outcome": outcome})
    return outcome


def _given_up() -> Any:
    return (WebhookEvent.processed_at.is_(None)) & (WebhookEvent.attempts >= MAX_ATTEMPTS)


async def given_up(session: AsyncSession, *, limit: int) -> tuple[int, list[WebhookEvent]]:
    """Events no runner will try again (all attempts used): how many, and the oldest ones."""
    count = await session.scalar(select(func.count()).select_from(WebhookEvent).where(_given_up()))
    rows = await session.scalars(
        select(WebhookEvent).where(_given_up()).order_by(WebhookEvent.id).limit(limit)
    )
    return int(count or 0), list(rows)


async def retry(session: AsyncSession, *, event_id: int, now: datetime) -> WebhookEvent:
    """Give a given-up event a fresh set of attempts, due now (after its cause was fixed)."""
    row: WebhookEvent | None = await session.scalar(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, _given_up())
        .values(attempts=0, next_attempt_at=now)
        .returning(WebhookEvent)
    )
    if row is None:
        raise outbox.NotGivenUp("No given-up webhook event has this id.", event_id=event_id)
    return row


async def claim_due(session: AsyncSession, *, now: datetime, limit: int) -> list[int]:
    """Ids of due events for this runner; another runner gets different ones (see outbox)."""
    due = (
        select(WebhookEvent.id)
        .where(
            WebhookEvent.processed_at.is_(None),
            WebhookEvent.next_attempt_at <= now,
            WebhookEvent.attempts < MAX_ATTEMPTS,
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        ids = list(await session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(ids))
                .values(next_attempt_at=now + CLAIM_FOR)
            )
        return ids
    claimed: list[int] = []
    for candidate in list(await session.scalars(due)):
        won = await session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.id == candidate,
                WebhookEvent.processed_at.is_(None),
                WebhookEvent.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + CLAIM_FOR)
            .returning(WebhookEvent.id)
        )
        if won.scalar_one_or_none() is not None:
            claimed.append(candidate)
    return claimed


async def process_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    now: datetime,
    limit: int = 100,
    provider: PaymentProvider | None = None,
) -> int:
    """One pass of the job runner over stored events that are due; returns how many it took."""
    async with sessionmaker() as session:
        ids = await claim_due(session, now=now, limit=limit)
        await session.commit()
    for event_id in ids:
        await process(
            sessionmaker, event_id=event_id, settings=settings, now=now, provider=provider
        )
    return len(ids)

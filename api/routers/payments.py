"""Payments: the provider's webhook, the local provider's checkout page, operator refunds."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import pages, problems
from api.auth import OperatorAdmin
from api.deps import SessionDep, SettingsDep
from api.schemas.purchases import PaymentRead, RefundCreate
from membership import memberships
from membership.clock import utcnow
from membership.errors import NotFound
from membership.payments import events, local
from membership.payments.provider import PaymentProvider
from membership.payments.stripe import verify_event
from membership.settings import Settings

router = APIRouter(prefix="/v1/payments", tags=["payments"])


def get_provider(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.payment_provider
    return provider


ProviderDep = Annotated[PaymentProvider, Depends(get_provider)]


async def _process(request: Request, event_id: int, settings: Settings) -> None:
    """After the response: the event's own transaction; a failure stays queued for `jobs`."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    await events.process(
        sessionmaker,
        event_id=event_id,
        settings=settings,
        now=utcnow(),
        provider=get_provider(request),
    )


@router.post("/stripe/webhook", responses=problems.responses(400, 503))
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Verified, stored once and answered at once; handled after the answer (rule 3)."""
    secret = settings.stripe_webhook_secret
    event = verify_event(
        await request.body(), stripe_signature, secret.get_secret_value() if secret else None
    )
    stored = await events.store(session, provider="stripe", event=event, now=utcnow())
    if stored.event_id is not None:
        background.add_task(_process, request, stored.event_id, settings)
    return {"received": True, "duplicate": stored.duplicate}


def _local_only(provider: PaymentProvider) -> None:
    if provider.name != local.NAME:
        raise NotFound("The local checkout is switched off.")


@router.get(
    "/local/checkouts/{checkout_id}",
    response_class=HTMLResponse,
    responses=problems.responses(404),
)
async def local_checkout_page(
    checkout_id: str, request: Request, session: SessionDep, provider: ProviderDep
) -> HTMLResponse:
    """Stands in for Stripe's page; an auto-renewing purchase may pick a card that will be
    declined at renewal, to show the grace days."""
    _local_only(provider)
    payment = await local.checkout_payment(session, checkout_id=checkout_id)
    membership = await memberships.load_membership(session, membership_id=payment.membership_id)
    holder = membership.holders[0] if membership.holders else None
    return pages.render(
        request,
        "local_checkout",
        language=pages.language_for(request, holder.language if holder else None),
        reference=payment.reference,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        auto_renew=membership.auto_renew,
        action=f"/v1/payments/local/checkouts/{checkout_id}",
    )


@router.post(
    "/local/checkouts/{checkout_id}/{outcome}",
    status_code=status.HTTP_303_SEE_OTHER,
    responses=problems.responses(404),
)
async def local_checkout_finish(
    checkout_id: str,
    outcome: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    background: BackgroundTasks,
) -> RedirectResponse:
    """Sends the event Stripe would send, then returns the browser as Stripe would."""
    _local_only(provider)
    if outcome not in ("pay", "pay-expiring-card", "decline"):
        raise NotFound("No such checkout action.")
    stored = await local.finish_checkout(
        session,
        checkout_id=checkout_id,
        paid=outcome != "decline",
        expiring_card=outcome == "pay-expiring-card",
        now=utcnow(),
    )
    if stored.event_id is not None:
        background.add_task(_process, request, stored.event_id, settings)
    payment = await local.checkout_payment(session, checkout_id=checkout_id)
    return RedirectResponse(
        f"/v1/purchases/{payment.id}/return", status_code=status.HTTP_303_SEE_OTHER
    )


@router.post(
    "/{payment_id}/refunds",
    response_model=PaymentRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409, 502),
)
async def refund_payment(
    payment_id: uuid.UUID,
    body: RefundCreate,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    principal: OperatorAdmin,
) -> PaymentRead:
    """Full or partial; a full refund ends the term and blocks its cards (audited)."""
    refund = await memberships.refund(
        session,
        provider=provider,
        payment_id=payment_id,
        amount_minor=body.amount_minor,
        reason=body.reason,
        actor=principal.actor,
        timezone=settings.programme_timezone,
        now=utcnow(),
    )
    return PaymentRead.of(refund)

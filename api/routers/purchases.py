"""Purchases: a visitor buys a card; the browser comes back from the checkout."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import HTMLResponse, JSONResponse

from api import pages, problems
from api.deps import SessionDep, SettingsDep
from api.routers.payments import ProviderDep
from api.schemas.purchases import PurchaseCreate, PurchaseRead
from membership import memberships
from membership.clock import utcnow
from membership.models import PaymentStatus
from membership.payments import idempotency

router = APIRouter(prefix="/v1/purchases", tags=["purchases"])

IdempotencyKeyHeader = Annotated[str | None, Header(min_length=1, max_length=255)]


@router.post(
    "",
    response_model=PurchaseRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(404, 409, 502),
)
async def create_purchase(
    body: PurchaseCreate,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Price from the product, never from the request; a retried key gets the first answer."""
    claim = None
    if idempotency_key is not None:
        claim = await idempotency.begin(
            session,
            scope="purchase",
            key=idempotency_key,
            body_hash=idempotency.request_hash(body.model_dump(mode="json")),
        )
        if isinstance(claim, idempotency.Replay):
            return JSONResponse(claim.body, status_code=claim.status)
    result = await memberships.purchase(
        session,
        provider=provider,
        settings=settings,
        product_code=body.product_code,
        holders=[holder.details() for holder in body.holders],
        marketing_opt_in=body.consents.marketing_opt_in,
        share_contact=body.consents.share_contact,
        auto_renew=body.auto_renew,
        now=utcnow(),
    )
    answer = PurchaseRead.of(result).model_dump(mode="json")
    if claim is not None:
        await idempotency.finish(session, row=claim, status=201, body=answer)
    return JSONResponse(answer, status_code=status.HTTP_201_CREATED)


_STATES = {
    PaymentStatus.PENDING: "pending",
    PaymentStatus.SUCCEEDED: "paid",
    PaymentStatus.PARTIALLY_REFUNDED: "paid",
    PaymentStatus.REFUNDED: "refunded",
    PaymentStatus.FAILED: "failed",
    PaymentStatus.CANCELLED: "failed",
}
# A pending page looks again this often (a meta refresh: no JavaScript needed).
PENDING_REFRESH_SECONDS = 5


def _wants_html(request: Request) -> bool:
    """Browsers coming back from the checkout ask for HTML; API clients get JSON."""
    return "text/html" in request.headers.get("accept", "")


@router.get(
    "/{payment_id}/return",
    response_model=PurchaseRead,
    responses={
        **problems.responses(404, 502),
        200: {"content": {"text/html": {}}, "description": "JSON, or a page for a browser"},
    },
)
async def purchase_return(
    payment_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    cancelled: bool = False,
) -> PurchaseRead | HTMLResponse:
    """Where the checkout sends the browser back: asks the provider, applies a paid payment,
    and shows the visitor paid, pending (looking again by itself) or failed.

    `cancelled` marks the checkout's cancel address: the visitor left without paying, so a
    checkout the provider still holds open is shown as not paid rather than waited for (the
    payment itself stays pending: going back to the checkout and paying still works).
    """
    payment, membership = await memberships.confirm_with_provider(
        session, provider=provider, payment_id=payment_id, settings=settings, now=utcnow()
    )
    if not _wants_html(request):
        return PurchaseRead.of_payment(payment, membership)
    state = _STATES[payment.status]
    if state == "pending" and cancelled:
        state = "failed"
    holder = membership.holders[0] if membership.holders else None
    return pages.render(
        request,
        "checkout_return",
        language=pages.language_for(request, holder.language if holder else None),
        refresh_seconds=PENDING_REFRESH_SECONDS if state == "pending" else None,
        state=state,
        product=membership.product.name,
        reference=payment.reference,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        paid_until=memberships.paid_until(membership),
    )

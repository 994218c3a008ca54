"""Purchases: a visitor buys a card; the browser comes back from the checkout."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, status
from fastapi.responses import JSONResponse

from api import problems
from api.deps import SessionDep, SettingsDep
from api.routers.payments import ProviderDep
from api.schemas.purchases import PurchaseCreate, PurchaseRead
from membership import memberships
from membership.clock import utcnow
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


@router.get(
    "/{payment_id}/return", response_model=PurchaseRead, responses=problems.responses(404, 502)
)
async def purchase_return(
    payment_id: uuid.UUID, session: SessionDep, settings: SettingsDep, provider: ProviderDep
) -> PurchaseRead:
    """Where the checkout sends the browser back: asks the provider, applies a paid payment."""
    payment, membership = await memberships.confirm_with_provider(
        session, provider=provider, payment_id=payment_id, settings=settings, now=utcnow()
    )
    return PurchaseRead.of_payment(payment, membership)

"""Member self-service: sign in by e-mailed link, then see and manage what I hold."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import problems
from api.deps import SessionDep, SettingsDep
from api.routers.payments import ProviderDep
from api.schemas.cards import CardRead
from api.schemas.members import (
    AutoRenewUpdate,
    MemberRead,
    MemberSessionRead,
    MembershipRead,
    MemberUpdate,
    ReceiptRead,
    RenewalCreate,
    SignInRedeem,
    SignInRequest,
)
from api.schemas.purchases import PaymentRead, PurchaseRead
from membership import cards, members, memberships
from membership.clock import utcnow

router = APIRouter(tags=["members"])

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MemberToken",
    description="A token from `POST /v1/members/sessions`.",
)


async def current_member_email(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise members.InvalidMemberToken()
    return await members.authenticate(session, token=credentials.credentials, now=utcnow())


MemberEmail = Annotated[str, Depends(current_member_email)]


@router.post(
    "/v1/members/sign-in", status_code=status.HTTP_202_ACCEPTED, responses=problems.responses()
)
async def request_sign_in(
    body: SignInRequest, session: SessionDep, settings: SettingsDep
) -> dict[str, bool]:
    """Always the same answer, whether or not the address belongs to a member."""
    await members.request_sign_in(
        session, email=body.email, base_url=settings.base_url, now=utcnow()
    )
    return {"accepted": True}


@router.post(
    "/v1/members/sessions",
    response_model=MemberSessionRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401),
)
async def redeem_sign_in(
    body: SignInRedeem, session: SessionDep, settings: SettingsDep
) -> MemberSessionRead:
    """Trade the link's token (single use, 15 minutes) for a session token."""
    opened = await members.redeem_sign_in(
        session,
        token=body.token,
        ttl=timedelta(hours=settings.token_ttl_hours),
        now=utcnow(),
    )
    return MemberSessionRead(access_token=opened.token, expires_at=opened.expires_at)


@router.get(
    "/v1/me/memberships", response_model=list[MembershipRead], responses=problems.responses(401)
)
async def my_memberships(session: SessionDep, email: MemberEmail) -> list[MembershipRead]:
    return [MembershipRead.of(m) for m in await memberships.memberships_of(session, email=email)]


@router.get("/v1/me/cards", response_model=list[CardRead], responses=problems.responses(401))
async def my_cards(session: SessionDep, email: MemberEmail) -> list[CardRead]:
    found: list[CardRead] = []
    for membership in await memberships.memberships_of(session, email=email):
        for card in await cards.list_cards(session, membership_id=membership.id):
            if card.member.email == email:
                found.append(CardRead.of(card))
    return found


@router.get("/v1/me/payments", response_model=list[PaymentRead], responses=problems.responses(401))
async def my_payments(session: SessionDep, email: MemberEmail) -> list[PaymentRead]:
    return [PaymentRead.of(p) for p in await memberships.payments_of(session, email=email)]


@router.get("/v1/me/receipts", response_model=list[ReceiptRead], responses=problems.responses(401))
async def my_receipts(session: SessionDep, email: MemberEmail) -> list[ReceiptRead]:
    return [ReceiptRead.of(r) for r in await memberships.receipts_of(session, email=email)]


@router.post(
    "/v1/me/memberships/{membership_id}/renewals",
    response_model=PurchaseRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 404, 409, 502),
)
async def renew(
    membership_id: uuid.UUID,
    body: RenewalCreate,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    email: MemberEmail,
) -> PurchaseRead:
    """A checkout for the next term; renewing early loses no day (the term starts at the end)."""
    membership = await memberships.own_membership(session, email=email, membership_id=membership_id)
    result = await memberships.start_renewal(
        session,
        provider=provider,
        settings=settings,
        membership=membership,
        auto_renew=body.auto_renew,
    )
    return PurchaseRead.of(result)


@router.put(
    "/v1/me/memberships/{membership_id}/auto-renew",
    response_model=MembershipRead,
    responses=problems.responses(401, 404, 502),
)
async def stop_auto_renew(
    membership_id: uuid.UUID,
    body: AutoRenewUpdate,
    session: SessionDep,
    provider: ProviderDep,
    email: MemberEmail,
) -> MembershipRead:
    """Only off: turning it on is a renewal with `auto_renew`, which pays the next term."""
    membership = await memberships.own_membership(session, email=email, membership_id=membership_id)
    await memberships.stop_auto_renew(session, provider=provider, membership=membership)
    return MembershipRead.of(membership)


@router.patch(
    "/v1/me/members/{member_id}",
    response_model=MemberRead,
    responses=problems.responses(401, 404),
)
async def update_me(
    member_id: uuid.UUID, body: MemberUpdate, session: SessionDep, email: MemberEmail
) -> MemberRead:
    """Postal code, language and consents; each consent change is timestamped and audited."""
    member = await members.get_own_member(session, email=email, member_id=member_id)
    updated = await members.update_details(
        session, member=member, values=body.values(), now=utcnow()
    )
    return MemberRead.of(updated)

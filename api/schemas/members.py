"""Member self-service: sign-in, my memberships, payments and receipts, my details."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, StringConstraints

from api.schemas.common import PatchModel, RequestModel
from membership.erasure import Erasure
from membership.models import Member, Membership, Receipt


class SignInRequest(RequestModel):
    email: EmailStr


class SignInRedeem(RequestModel):
    token: Annotated[str, StringConstraints(min_length=20, max_length=200)]


class MemberSessionRead(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


class TermRead(BaseModel):
    starts_on: date
    ends_on: date
    kind: str
    status: str


class MembershipRead(BaseModel):
    id: uuid.UUID
    product_code: str
    product_name: str
    status: str
    auto_renew: bool
    paid_until: date | None
    holder_ids: list[uuid.UUID]
    terms: list[TermRead]

    @classmethod
    def of(cls, membership: Membership) -> MembershipRead:
        ends = [term.ends_on for term in membership.terms if term.status.value == "active"]
        return cls(
            id=membership.id,
            product_code=membership.product.code,
            product_name=membership.product.name,
            status=membership.status.value,
            auto_renew=membership.auto_renew,
            paid_until=max(ends) if ends else None,
            holder_ids=[holder.id for holder in membership.holders],
            terms=[
                TermRead(
                    starts_on=term.starts_on,
                    ends_on=term.ends_on,
                    kind=term.kind.value,
                    status=term.status.value,
                )
                for term in membership.terms
            ],
        )


class ReceiptRead(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    membership_id: uuid.UUID
    reference: str
    description: str
    amount_minor: int
    vat_minor: int
    vat_rate_bp: int
    currency: str
    issued_on: date

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptRead:
        return cls(**{name: getattr(receipt, name) for name in cls.model_fields})


class RenewalCreate(RequestModel):
    auto_renew: bool = False


class AutoRenewUpdate(RequestModel):
    enabled: Literal[False]


class MemberRead(BaseModel):
    id: uuid.UUID
    first_name: str
    last_name: str
    email: str | None
    postal_code: str | None
    language: str
    marketing_opt_in: bool
    marketing_opt_in_at: datetime | None
    share_contact: bool
    share_contact_at: datetime | None

    @classmethod
    def of(cls, member: Member) -> MemberRead:
        return cls(**{name: getattr(member, name) for name in cls.model_fields})


class MemberUpdate(PatchModel):
    postal_code: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=16)] | None
    ) = None
    language: Literal["en", "nl"] | None = None
    marketing_opt_in: bool | None = None
    share_contact: bool | None = None


class MemberErasureRead(BaseModel):
    """`erased_now` is false when the member had been erased before: nothing changed, and
    `erased_at` is the first erasure's time."""

    member_id: uuid.UUID
    erased_at: datetime
    erased_now: bool

    @classmethod
    def of(cls, done: Erasure) -> MemberErasureRead:
        return cls(member_id=done.member_id, erased_at=done.erased_at, erased_now=done.erased_now)

"""Purchases: what a visitor sends to buy a card, and what they get back."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints

from api.schemas.common import RequestModel
from membership.members import HolderDetails
from membership.memberships import PurchaseResult
from membership.models import Membership, Payment

PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
PostalCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=16)]


class HolderIn(RequestModel):
    first_name: PersonName
    last_name: PersonName
    email: EmailStr
    birth_date: date = Field(gt=date(1900, 1, 1))
    postal_code: PostalCode
    language: Literal["en", "nl"] = "nl"

    def details(self) -> HolderDetails:
        return HolderDetails(**self.model_dump())


class Consents(RequestModel):
    marketing_opt_in: bool = False
    share_contact: bool = False


class PurchaseCreate(RequestModel):
    """No price or amount: the server takes it from the product, so it cannot be tampered with."""

    product_code: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    holders: Annotated[list[HolderIn], Field(min_length=1, max_length=20)]
    consents: Consents = Consents()
    auto_renew: bool = False


class PaymentRead(BaseModel):
    id: uuid.UUID
    reference: str
    kind: str
    status: str
    amount_minor: int
    refunded_minor: int
    currency: str

    @classmethod
    def of(cls, payment: Payment) -> PaymentRead:
        return cls(
            id=payment.id,
            reference=payment.reference,
            kind=payment.kind.value,
            status=payment.status.value,
            amount_minor=payment.amount_minor,
            refunded_minor=payment.refunded_minor,
            currency=payment.currency,
        )


class PurchaseRead(BaseModel):
    membership_id: uuid.UUID
    membership_status: str
    payment: PaymentRead
    checkout_url: str | None = None

    @classmethod
    def of(cls, result: PurchaseResult) -> PurchaseRead:
        return cls(
            membership_id=result.membership.id,
            membership_status=result.membership.status.value,
            payment=PaymentRead.of(result.payment),
            checkout_url=result.checkout_url,
        )

    @classmethod
    def of_payment(cls, payment: Payment, membership: Membership) -> PurchaseRead:
        return cls(
            membership_id=membership.id,
            membership_status=membership.status.value,
            payment=PaymentRead.of(payment),
        )


class RefundCreate(RequestModel):
    amount_minor: int = Field(gt=0, le=10**11)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)]

"""The small surface the service needs from a payment provider, and the values it passes.

Stripe in production, the local provider for demos and tests: both answer the same questions and
produce events of the same shape, so everything after the checkout is one code path (rule 3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from membership.errors import DomainError


class CheckoutState(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class CheckoutRequest:
    """One checkout for one payment of ours; `payment_id` also derives the idempotency keys."""

    payment_id: str
    reference: str
    amount_minor: int
    currency: str
    description: str
    customer_email: str | None
    success_url: str
    cancel_url: str
    # Set for an auto-renewing purchase: the checkout starts a subscription of this period.
    renew_every_months: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkout:
    checkout_id: str
    url: str


@dataclass(frozen=True)
class CheckoutStatus:
    checkout_id: str
    state: CheckoutState
    provider_payment_id: str | None = None
    subscription_id: str | None = None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    amount_minor: int


class ProviderError(DomainError):
    """The provider could not be reached or refused the call; nothing was changed on our side."""

    code = "payment-provider-error"
    title = "The payment provider could not be reached or refused the request"
    status = 502


class PaymentProvider(Protocol):
    """What a provider does for us; every create call is idempotent on the caller's key."""

    name: str

    async def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def checkout_status(self, checkout_id: str) -> CheckoutStatus: ...

    async def refund(
        self, *, provider_payment_id: str, amount_minor: int, idempotency_key: str
    ) -> Refund: ...

    async def start_subscription(self, request: CheckoutRequest) -> Checkout: ...

    async def cancel_subscription(self, subscription_id: str) -> None: ...

    async def invoice_of_payment(self, provider_payment_id: str) -> str | None:
        """The invoice a payment (intent) paid, if any: a subscription's payments are known
        to us by their invoice, while a refund's charge names only the payment intent."""
        ...

    async def charge_due_renewals(self, *, now: datetime) -> int:
        """Charge the subscriptions whose period has ended, where the provider relies on our
        job runner for it; returns how many it charged (Stripe bills on its own: 0)."""
        ...

    async def aclose(self) -> None: ...

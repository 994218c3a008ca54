"""`StripeProvider`: the provider interface over the official `stripe.StripeClient`.

Every create call carries an idempotency key derived from our own payment id, so a retry after a
timeout can never make a second checkout or refund at Stripe. Only fields of the current API are
read (not the pre-2025 shapes that localstripe still serves), so tests cannot pass on a shape
production no longer sends.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import stripe

from membership.errors import DomainError
from membership.payments.provider import (
    Checkout,
    CheckoutRequest,
    CheckoutState,
    CheckoutStatus,
    ProviderError,
    Refund,
)
from membership.settings import Settings


class WebhookNotConfigured(DomainError):
    code = "webhook-not-configured"
    title = "Webhooks are not accepted: no signing secret is configured"
    status = 503


class InvalidSignature(DomainError):
    code = "invalid-signature"
    title = "The webhook signature is missing, wrong or too old"
    status = 400


def verify_event(payload: bytes, signature: str | None, secret: str | None) -> dict[str, Any]:
    """The event, parsed only after its signature and timestamp have been checked.

    An empty secret is refused outright: HMAC with an empty key is still a valid HMAC, so
    anybody could sign events for a service that forgot to configure one.
    """
    if not secret:
        raise WebhookNotConfigured()
    if not signature:
        raise InvalidSignature()
    try:
        stripe.Webhook.construct_event(payload, signature, secret)
        event: Any = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise InvalidSignature() from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise InvalidSignature("The payload is not an event.")
    return event


def _id(value: Any) -> str | None:
    """An id field, whether Stripe sent it as an id or expanded into an object."""
    if value is None or isinstance(value, str):
        return value
    found = getattr(value, "id", None)
    return found if isinstance(found, str) else None


class StripeProvider:
    name = "stripe"

    def __init__(self, client: stripe.StripeClient, http_client: stripe.HTTPXClient) -> None:
        self._client = client
        self._http_client = http_client

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeProvider:
        if settings.stripe_api_key is None:
            raise ProviderError("MEMBERSHIP_STRIPE_API_KEY is not set")
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        # Our own HTTP client, so that `aclose` can close its connection pool at shutdown.
        http_client = stripe.HTTPXClient()
        client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=2,
            http_client=http_client,
        )
        return cls(client, http_client)

    async def aclose(self) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]

    def _session_params(self, request: CheckoutRequest) -> dict[str, Any]:
        metadata = {"payment_id": request.payment_id, "reference": request.reference}
        metadata.update(request.metadata)
        price_data: dict[str, Any] = {
            "currency": request.currency.lower(),
            "unit_amount": request.amount_minor,
            "product_data": {"name": request.description},
        }
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": request.payment_id,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "metadata": metadata,
            "line_items": [{"quantity": 1, "price_data": price_data}],
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        if request.renew_every_months:
            price_data["recurring"] = {
                "interval": "month",
                "interval_count": request.renew_every_months,
            }
            params["mode"] = "subscription"
            params["subscription_data"] = {"metadata": metadata}
        else:
            params["payment_intent_data"] = {"metadata": metadata}
        return params

    async def _create_session(self, request: CheckoutRequest, key: str) -> Checkout:
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params=self._session_params(request),  # type: ignore[arg-type]
                options={"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            raise ProviderError(str(exc)) from exc
        if session.url is None:
            raise ProviderError("Stripe returned a checkout without a URL")
        return Checkout(checkout_id=session.id, url=session.url)

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        return await self._create_session(request, f"checkout:{request.payment_id}")

    async def start_subscription(self, request: CheckoutRequest) -> Checkout:
        if not request.renew_every_months:
            raise ValueError("a subscription needs its renewal period")
        return await self._create_session(request, f"subscription:{request.payment_id}")

    async def checkout_status(self, checkout_id: str) -> CheckoutStatus:
        try:
            session = await self._client.v1.checkout.sessions.retrieve_async(checkout_id)
        except stripe.StripeError as exc:
            raise ProviderError(str(exc)) from exc
        if session.status == "complete" and session.payment_status in (
            "paid",
            "no_payment_required",
        ):
            state = CheckoutState.PAID
        elif session.status == "expired":
            state = CheckoutState.EXPIRED
        else:
            state = CheckoutState.OPEN
        return CheckoutStatus(
            checkout_id=session.id,
            state=state,
            provider_payment_id=_id(session.payment_intent) or _id(session.invoice),
            subscription_id=_id(session.subscription),
        )

    async def _payment_of_invoice(self, invoice_id: str) -> str:
        """The payment intent that paid an invoice (current API: the invoice's payments)."""
        try:
            listed = await self._client.v1.invoice_payments.list_async(
                params={"invoice": invoice_id, "status": "paid", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise ProviderError(str(exc)) from exc
        for invoice_payment in listed.data:
            intent = _id(getattr(invoice_payment.payment, "payment_intent", None))
            if intent:
                return intent
        raise ProviderError(f"Stripe knows no paid payment of invoice {invoice_id}")

    async def invoice_of_payment(self, provider_payment_id: str) -> str | None:
        try:
            listed = await self._client.v1.invoice_payments.list_async(
                params={
                    "payment": {"type": "payment_intent", "payment_intent": provider_payment_id},
                    "limit": 1,
                }
            )
        except stripe.StripeError as exc:
            raise ProviderError(str(exc)) from exc
        return next((_id(found.invoice) for found in listed.data), None)

    async def charge_due_renewals(self, *, now: datetime) -> int:
        """Stripe charges subscriptions itself and tells us with `invoice.paid` or
        `invoice.payment_failed`."""
        return 0

    async def refund(
        self, *, provider_payment_id: str, amount_minor: int, idempotency_key: str
    ) -> Refund:
        """A subscription's payment is ours by invoice id; Stripe refunds its payment intent."""
        intent = provider_payment_id
        if provider_payment_id.startswith("in_"):
            intent = await self._payment_of_invoice(provider_payment_id)
        try:
            refund = await self._client.v1.refunds.create_async(
                params={"payment_intent": intent, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise ProviderError(str(exc)) from exc
        return Refund(refund_id=refund.id, amount_minor=refund.amount)

    async def cancel_subscription(self, subscription_id: str) -> None:
        try:
            await self._client.v1.subscriptions.cancel_async(subscription_id)
        except stripe.StripeError as exc:
            raise ProviderError(str(exc)) from exc

"""Stripe events in the current API's shape, signed by the test itself (no server needed)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import stripe

SECRET = "whsec_test_secret_for_the_suite"
_ids = itertools.count(1)


def event(type_: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_ids)}",
        "object": "event",
        "type": type_,
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def checkout_completed(
    checkout_id: str, *, subscription: str | None = None, paid: bool = True
) -> dict[str, Any]:
    return event(
        "checkout.session.completed",
        {
            "id": checkout_id,
            "object": "checkout.session",
            "mode": "subscription" if subscription else "payment",
            "status": "complete",
            "payment_status": "paid" if paid else "unpaid",
            "payment_intent": None if subscription else f"pi_{checkout_id}",
            "subscription": subscription,
        },
    )


def checkout_expired(checkout_id: str) -> dict[str, Any]:
    return event(
        "checkout.session.expired",
        {"id": checkout_id, "object": "checkout.session", "status": "expired"},
    )


def invoice(
    type_: str,
    invoice_id: str,
    subscription: str,
    *,
    amount: int = 7500,
    reason: str = "subscription_cycle",
) -> dict[str, Any]:
    return event(
        type_,
        {
            "id": invoice_id,
            "object": "invoice",
            "billing_reason": reason,
            "amount_paid": amount if type_ == "invoice.paid" else 0,
            "currency": "eur",
            "status": "paid" if type_ == "invoice.paid" else "open",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription},
            },
        },
    )


def charge_refunded(payment_intent: str, *, amount: int, refunded: int) -> dict[str, Any]:
    return event(
        "charge.refunded",
        {
            "id": f"ch_{payment_intent}",
            "object": "charge",
            "payment_intent": payment_intent,
            "amount": amount,
            "amount_refunded": refunded,
            "refunded": amount == refunded,
        },
    )


def subscription_deleted(subscription: str) -> dict[str, Any]:
    return event(
        "customer.subscription.deleted",
        {"id": subscription, "object": "subscription", "status": "canceled"},
    )


def signed(
    payload: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


def signed_header(body: str, *, secret: str = SECRET) -> str:
    """For a body that must be posted byte for byte as it came (events read back from a server)."""
    return stripe.WebhookSignature.generate_signature_header(body, secret)

"""localstripe on loopback, without its shared pickle file, plus what it lacks for us.

Run as a script (`python shim.py --port N`); it imports localstripe (GPL-3.0-or-later)
internals, so it lives under `tests/` and never ships with the service. It adds:
- Checkout Sessions in payment mode (`POST/GET /v1/checkout/sessions`) with inline
  `price_data`, and `POST /_test/checkout/sessions/{id}/complete`, which pays the session with a
  real localstripe PaymentIntent and records `checkout.session.completed`;
- a `charge.refunded` event on every refund (stock localstripe sends no charge events);
- `GET /v1/invoice_payments` (current API: how an invoice links to its payment intent, since
  invoices no longer carry `payment_intent`), filtered by `invoice` or by `payment`.
Events are read back from `GET /v1/events`, signed by the test and posted into the app.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web
from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Customer,
    Event,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Plan,
    Refund,
    StripeObject,
    Subscription,
    store,
)
from localstripe.server import app, get_post_data, json_response, unflatten_data

store.dump_to_disk = lambda: None  # no shared /tmp/localstripe.pickle between runs and jobs


class _Exported:
    """What `Event` needs of its data: an `_export()`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def _export(self, expand: Any = None) -> dict[str, Any]:
        return dict(self._data)


class CheckoutSession(StripeObject):
    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(
        self,
        mode: str | None = None,
        line_items: list[dict[str, Any]] | None = None,
        success_url: str | None = None,
        cancel_url: str | None = None,
        client_reference_id: str | None = None,
        customer_email: str | None = None,
        metadata: dict[str, str] | None = None,
        payment_intent_data: dict[str, Any] | None = None,
        subscription_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs))
        if mode not in ("payment", "subscription") or not line_items or not success_url:
            raise UserError(400, "Bad request")
        price = line_items[0]["price_data"]
        if (mode == "subscription") != ("recurring" in price):
            raise UserError(400, "Bad request")
        super().__init__()
        self.mode = mode
        self.status = "open"
        self.payment_status = "unpaid"
        self.amount_total = int(price["unit_amount"]) * int(line_items[0].get("quantity", 1))
        self.currency = price["currency"]
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.client_reference_id = client_reference_id
        self.customer_email = customer_email
        self.metadata = metadata or {}
        self._price = price
        self._payment_metadata = (payment_intent_data or {}).get("metadata") or {}
        self._subscription_metadata = (subscription_data or {}).get("metadata") or {}
        self.payment_intent: str | None = None
        self.subscription = None
        self.invoice = None
        self.customer = None
        self.url = f"https://checkout.localstripe.test/{self.id}"


async def create_session(request: web.Request) -> web.Response:
    data = await get_post_data(request) or {}
    return json_response(CheckoutSession(**data)._export())


async def retrieve_session(request: web.Request) -> web.Response:
    return json_response(CheckoutSession._api_retrieve(request.match_info["id"])._export())


async def complete_session(request: web.Request) -> web.Response:
    """What a buyer paying on Stripe's page does: a PaymentIntent that succeeds."""
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    if session.mode == "subscription":
        _subscribe(session)
    else:
        intent = PaymentIntent._api_create(
            amount=session.amount_total,
            currency=session.currency,
            payment_method="pm_card_visa",
            confirm=True,
            metadata=session._payment_metadata,
        )
        session.payment_intent = intent.id
    session.status = "complete"
    session.payment_status = "paid"
    resources.schedule_webhook(Event("checkout.session.completed", session))
    return json_response(session._export())


def _subscribe(session: CheckoutSession) -> None:
    """A customer with a card, a legacy Plan for the inline price, and the subscription."""
    card = PaymentMethod._api_create(
        type="card",
        card={"number": "4242424242424242", "exp_month": "12", "exp_year": "2040", "cvc": "123"},
    )
    customer = Customer._api_create(
        email=session.customer_email,
        payment_method=card.id,
        invoice_settings={"default_payment_method": card.id},
    )
    recurring = session._price["recurring"]
    plan = Plan._api_create(
        amount=session.amount_total,
        currency=session.currency,
        interval=recurring["interval"],
        interval_count=int(recurring.get("interval_count", 1)),
        product={"name": session._price["product_data"]["name"]},
    )
    subscription = Subscription._api_create(
        customer=customer.id, items=[{"plan": plan.id}], metadata=session._subscription_metadata
    )
    session.subscription = subscription.id
    session.invoice = subscription.latest_invoice
    session.customer = customer.id


async def use_declining_card(request: web.Request) -> web.Response:
    """Make the customer's next charge fail, as an expired card would at renewal."""
    customer = Customer._api_retrieve(request.match_info["id"])
    card = PaymentMethod._api_create(
        type="card",
        card={"number": "4000000000000341", "exp_month": "12", "exp_year": "2040", "cvc": "123"},
    )
    PaymentMethod._api_attach(card.id, customer=customer.id)
    customer.invoice_settings = {"default_payment_method": card.id}
    return json_response(customer._export())


_original_invoice_init = Invoice.__init__


def _invoice_init(self: Invoice, *args: Any, **kwargs: Any) -> None:
    """Stock invoices have no billing reason; ours tell the first from a renewal."""
    _original_invoice_init(self, *args, **kwargs)
    if self.subscription is None:
        self.billing_reason = "manual"
        return
    earlier = [
        key
        for key, invoice in store.items()
        if key.startswith("invoice:")
        and invoice is not self
        and getattr(invoice, "subscription", None) == self.subscription
    ]
    self.billing_reason = "subscription_cycle" if earlier else "subscription_create"


_original_invoice_success = Invoice._on_payment_success


def _invoice_success(self: Invoice) -> None:
    """Current Stripe sends `invoice.paid`; stock localstripe only the older event."""
    _original_invoice_success(self)
    resources.schedule_webhook(Event("invoice.paid", self))


async def pay_invoice(request: web.Request) -> web.Response:
    """`invoices.pay`, plus the `invoice.payment_failed` stock localstripe omits on a decline."""
    invoice_id = request.match_info["id"]
    try:
        invoice = Invoice._api_pay_invoice(invoice_id)
    except UserError:
        invoice = Invoice._api_retrieve(invoice_id)
        resources.schedule_webhook(Event("invoice.payment_failed", invoice))
        raise
    if invoice.status != "paid":
        resources.schedule_webhook(Event("invoice.payment_failed", invoice))
    return json_response(invoice._export())


Invoice.__init__ = _invoice_init  # type: ignore[method-assign]
Invoice._on_payment_success = _invoice_success  # type: ignore[method-assign]

_original_refund_init = Refund.__init__


def _refund_init(self: Refund, *args: Any, **kwargs: Any) -> None:
    _original_refund_init(self, *args, **kwargs)
    charge = Charge._api_retrieve(self.charge)
    refunded = sum(
        refund.amount
        for key, refund in store.items()
        if key.startswith("refund:") and refund.charge == self.charge
    )
    intent = kwargs.get("payment_intent") or getattr(charge, "payment_intent", None)
    data = {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_refunded": refunded,
        "currency": charge.currency,
        "payment_intent": intent,
        "refunded": refunded >= charge.amount,
    }
    resources.schedule_webhook(Event("charge.refunded", _Exported(data)))


Refund.__init__ = _refund_init  # type: ignore[method-assign]


def _invoice_payment(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": "inpay_" + invoice.id.removeprefix("in_"),
        "object": "invoice_payment",
        "invoice": invoice.id,
        "amount_paid": invoice.amount_paid,
        "currency": invoice.currency,
        "status": "paid" if invoice.status == "paid" else "open",
        "is_default": True,
        "payment": {"type": "payment_intent", "payment_intent": invoice.payment_intent},
    }


async def list_invoice_payments(request: web.Request) -> web.Response:
    """The current API's link between an invoice and the payment intent that paid it."""
    query = unflatten_data(request.query) or {}
    wanted_invoice = query.get("invoice")
    payment = query.get("payment") or {}
    wanted_intent = payment.get("payment_intent") if isinstance(payment, dict) else None
    found = [
        _invoice_payment(invoice)
        for key, invoice in store.items()
        if key.startswith("invoice:")
        and invoice.payment_intent is not None
        and wanted_invoice in (None, invoice.id)
        and wanted_intent in (None, invoice.payment_intent)
    ]
    if query.get("status"):
        found = [item for item in found if item["status"] == query["status"]]
    limit = int(query.get("limit", 10))
    return json_response(
        {
            "object": "list",
            "url": "/v1/invoice_payments",
            "has_more": len(found) > limit,
            "data": found[:limit],
        }
    )


app.router.add_post("/v1/checkout/sessions", create_session)
app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
app.router.add_post("/_test/checkout/sessions/{id}/complete", complete_session)
app.router.add_post("/_test/customers/{id}/declining_card", use_declining_card)
app.router.add_post("/_test/invoices/{id}/pay", pay_invoice)
app.router.add_get("/v1/invoice_payments", list_invoice_payments)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()

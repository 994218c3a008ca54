"""localstripe on loopback, without its shared pickle file, plus what it lacks for us.

Run as a script (`python shim.py --port N`); it imports localstripe (GPL-3.0-or-later)
internals, so it lives under `tests/` and never ships with the service. It adds:
- Checkout Sessions in payment mode (`POST/GET /v1/checkout/sessions`) with inline
  `price_data`, and `POST /_test/checkout/sessions/{id}/complete`, which pays the session with a
  real localstripe PaymentIntent and records `checkout.session.completed`;
- a `charge.refunded` event on every refund (stock localstripe sends no charge events).
Events are read back from `GET /v1/events`, signed by the test and posted into the app.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web
from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import Charge, Event, PaymentIntent, Refund, StripeObject, store
from localstripe.server import app, get_post_data, json_response

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
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs))
        if mode != "payment" or not line_items or not success_url:
            raise UserError(400, "Bad request")
        price = line_items[0]["price_data"]
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
        self._payment_metadata = (payment_intent_data or {}).get("metadata") or {}
        self.payment_intent: str | None = None
        self.subscription = None
        self.invoice = None
        self.url = f"https://checkout.localstripe.test/{self.id}"


async def create_session(request: web.Request) -> web.Response:
    data = await get_post_data(request) or {}
    return json_response(CheckoutSession(**data)._export())


async def retrieve_session(request: web.Request) -> web.Response:
    return json_response(CheckoutSession._api_retrieve(request.match_info["id"])._export())


async def complete_session(request: web.Request) -> web.Response:
    """What a buyer paying on Stripe's page does: a PaymentIntent that succeeds."""
    session = CheckoutSession._api_retrieve(request.match_info["id"])
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

app.router.add_post("/v1/checkout/sessions", create_session)
app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
app.router.add_post("/_test/checkout/sessions/{id}/complete", complete_session)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()

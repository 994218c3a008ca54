"""Benchmark of payments (issue 7): purchases per second through the API with the local
provider, and provider events handled per second on PostgreSQL.

1. recreates the PostgreSQL database `mbench_payments` and migrates it;
2. buys cards through the real app in-process (httpx over ASGI, no network): each purchase is
   `POST /v1/purchases` and the local checkout's `pay`, which stores the event and applies the
   payment (term, card, receipt, welcome e-mail) in its own transaction, at concurrency 1 and 8;
3. stores checkout-completed events for pending purchases and lets the job runner's
   `process_due` handle them, one pass after another, and times that.

It reports, it does not judge. The load runs on the same machine as the database.

    .venv/bin/python -m benchmarks.payments --purchases 200 --events 500

(`-m` from the checkout root: run as a file, `benchmarks/reports.py` would shadow `reports`.)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

import migrations
from api.app import create_app
from membership.clock import utcnow
from membership.models import (
    Member,
    Membership,
    MembershipStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    ProductKind,
)
from membership.payments import events
from membership.settings import Settings

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DATABASE = "mbench_payments"


async def _recreate(server: str) -> str:
    dsn = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()
    return make_url(server).set(database=DATABASE).render_as_string(hide_password=False)


def _body(n: int) -> dict[str, Any]:
    return {
        "product_code": "ANNUAL",
        "holders": [
            {
                "first_name": "Bench",
                "last_name": f"Member {n}",
                "email": f"bench{n}@example.org",
                "birth_date": "1980-06-15",
                "postal_code": "1017 AB",
                "language": "nl",
            }
        ],
    }


async def _purchases(client: httpx.AsyncClient, count: int, concurrency: int) -> float:
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            bought = await client.post("/v1/purchases", json=_body(n + concurrency * 100_000))
            assert bought.status_code == 201, bought.text
            paid = await client.post(bought.json()["checkout_url"] + "/pay")
            assert paid.status_code == 303, paid.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _events(settings: Settings, app: Any, product_id: uuid.UUID, count: int) -> float:
    sessionmaker = app.state.sessionmaker
    now = utcnow()
    async with sessionmaker() as session:
        for n in range(count):
            member = Member(first_name="Event", last_name=f"Member {n}", email=f"ev{n}@example.org")
            membership = Membership(
                product_id=product_id, status=MembershipStatus.PENDING_PAYMENT, holders=[member]
            )
            session.add(membership)
            await session.flush()
            payment = Payment(
                reference=f"MK-EV{n:07d}",
                membership_id=membership.id,
                kind=PaymentKind.PURCHASE,
                status=PaymentStatus.PENDING,
                provider="stripe",
                provider_checkout_id=f"cs_bench_{n}",
                amount_minor=7500,
                currency="EUR",
                vat_rate_bp=900,
            )
            session.add(payment)
            event = {
                "id": f"evt_bench_{n}",
                "type": "checkout.session.completed",
                "data": {
                    "object": {
                        "id": f"cs_bench_{n}",
                        "object": "checkout.session",
                        "status": "complete",
                        "payment_status": "paid",
                        "payment_intent": f"pi_bench_{n}",
                    }
                },
            }
            await events.store(session, provider="stripe", event=event, now=now)
        await session.commit()
    started = time.perf_counter()
    handled = 0
    while handled < count:
        taken = await events.process_due(sessionmaker, settings=settings, now=utcnow(), limit=100)
        if taken == 0:
            break
        handled += taken
    return handled / (time.perf_counter() - started)


async def run(server: str, purchases: int, event_count: int) -> None:
    url = await _recreate(server)
    # Alembic runs its own event loop: in a thread, beside this one.
    await asyncio.to_thread(migrations.upgrade, url)
    with tempfile.TemporaryDirectory(prefix="mbench-") as workdir:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            key_dir=Path(workdir) / "keys",
            base_url="http://bench",
        )
        app = create_app(settings)
        async with app.state.sessionmaker() as session:
            product = Product(
                code="ANNUAL",
                name="Annual card",
                kind=ProductKind.ANNUAL,
                price_minor=7500,
                currency="EUR",
                vat_rate_bp=900,
            )
            session.add(product)
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await _purchases(client, 10, 1)  # warm-up
            for concurrency in (1, 8):
                rate = await _purchases(client, purchases, concurrency)
                print(f"purchases (buy + pay + apply), concurrency {concurrency}: {rate:8.1f} /s")
        rate = await _events(settings, app, product.id, event_count)
        print(f"checkout events handled by the job runner:        {rate:8.1f} /s")
        await app.state.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", default=SERVER, help="PostgreSQL URL of the server")
    parser.add_argument("--purchases", type=int, default=200)
    parser.add_argument("--events", type=int, default=500)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.server, arguments.purchases, arguments.events))


if __name__ == "__main__":
    main()

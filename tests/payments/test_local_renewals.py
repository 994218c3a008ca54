"""Auto-renew with the local provider: `make run` renews at period end with no Stripe account.

The job runner charges a local subscription when its paid period ends and stores the event
Stripe would send (`invoice.paid`, or `invoice.payment_failed` for the pay page's expiring
card); the same handlers as for Stripe then extend the membership or start its grace days.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from membership import jobs
from membership.clock import utcnow
from membership.models import (
    Membership,
    MembershipStatus,
    MembershipTerm,
    OutboxEmail,
    Payment,
    PaymentKind,
    WebhookEvent,
)
from membership.settings import Settings
from tests.factories import create_product, move_term_end


async def _count(session: AsyncSession, model: Any, *where: Any) -> int:
    found = await session.scalar(select(func.count()).select_from(model).where(*where))
    await session.commit()
    return int(found or 0)


async def _bought(
    session: AsyncSession, client: httpx.AsyncClient, *, outcome: str = "pay"
) -> Membership:
    """An auto-renewing card paid on the local checkout page with the chosen button."""
    await create_product(session, code="ANNUAL", grace_days=14)
    await session.commit()
    body = {
        "product_code": "ANNUAL",
        "auto_renew": True,
        "holders": [
            {
                "first_name": "Fenna",
                "last_name": "Visser",
                "email": "fenna@example.org",
                "birth_date": "1985-03-09",
                "postal_code": "9711 AB",
                "language": "nl",
            }
        ],
    }
    bought = await client.post("/v1/purchases", json=body)
    assert bought.status_code == 201, bought.text
    checkout = bought.json()["checkout_url"].removeprefix("http://testserver")
    paid = await client.post(f"{checkout}/{outcome}")
    assert paid.status_code == 303, paid.text
    membership = await session.scalar(select(Membership).execution_options(populate_existing=True))
    await session.commit()
    assert membership is not None
    assert membership.status == MembershipStatus.ACTIVE
    assert (membership.provider_subscription_id or "").startswith("sub_local_")
    return membership


async def _status(session: AsyncSession, membership: Membership) -> MembershipStatus:
    status = await session.scalar(select(Membership.status).where(Membership.id == membership.id))
    await session.commit()
    assert status is not None
    return status


async def test_renewal_is_charged_at_period_end_and_extends_from_the_old_end(
    session: AsyncSession, client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    membership = await _bought(session, client)
    sessionmaker = app.state.sessionmaker
    now = utcnow()
    await move_term_end(session, membership, 1, timezone=settings.programme_timezone)
    early = await jobs.run_once(sessionmaker, settings=settings, now=now)
    assert early.renewals_charged == 0

    await move_term_end(session, membership, 0, timezone=settings.programme_timezone)
    report = await jobs.run_once(sessionmaker, settings=settings, now=now)
    assert (report.renewals_charged, report.in_grace) == (1, 0)
    terms = list(
        await session.scalars(
            select(MembershipTerm)
            .order_by(MembershipTerm.starts_on)
            .execution_options(populate_existing=True)
        )
    )
    await session.commit()
    assert len(terms) == 2
    assert terms[1].starts_on == terms[0].ends_on  # not a paid day lost
    renewal = await session.scalar(select(Payment).where(Payment.kind == PaymentKind.RENEWAL))
    await session.commit()
    assert renewal is not None
    assert renewal.provider == "local"
    assert (renewal.provider_payment_id or "").startswith("in_local_")
    assert await _status(session, membership) == MembershipStatus.ACTIVE
    assert await _count(session, OutboxEmail, OutboxEmail.template == "renewed") == 1

    again = await jobs.run_once(sessionmaker, settings=settings, now=now)
    assert again.renewals_charged == 0
    assert await _count(session, MembershipTerm) == 2


async def test_expiring_card_declines_the_renewal_then_grace_then_expiry(
    session: AsyncSession, client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    membership = await _bought(session, client, outcome="pay-expiring-card")
    sessionmaker = app.state.sessionmaker
    now = utcnow()
    await move_term_end(session, membership, 0, timezone=settings.programme_timezone)
    report = await jobs.run_once(sessionmaker, settings=settings, now=now)
    assert report.renewals_charged == 1
    assert await _status(session, membership) == MembershipStatus.IN_GRACE
    assert await _count(session, OutboxEmail, OutboxEmail.template == "payment_failed") == 1
    assert await _count(session, WebhookEvent, WebhookEvent.type == "invoice.payment_failed") == 1

    # One attempt per period: the next passes neither charge again nor mail again.
    later = await jobs.run_once(sessionmaker, settings=settings, now=now + timedelta(days=3))
    assert later.renewals_charged == 0
    assert await _count(session, OutboxEmail, OutboxEmail.template == "payment_failed") == 1
    assert await _count(session, MembershipTerm) == 1

    await move_term_end(session, membership, -15, timezone=settings.programme_timezone)
    await jobs.run_once(sessionmaker, settings=settings, now=now)
    assert await _status(session, membership) == MembershipStatus.EXPIRED


async def test_auto_renew_turned_off_is_not_charged(
    session: AsyncSession, client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    membership = await _bought(session, client)
    await session.execute(
        update(Membership).where(Membership.id == membership.id).values(auto_renew=False)
    )
    await session.commit()
    await move_term_end(session, membership, 0, timezone=settings.programme_timezone)
    report = await jobs.run_once(app.state.sessionmaker, settings=settings, now=utcnow())
    assert report.renewals_charged == 0
    assert await _count(session, Payment, Payment.kind == PaymentKind.RENEWAL) == 0


async def test_several_runners_at_once_charge_one_renewal(
    session: AsyncSession,
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    backend: str,
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: this race needs row locks")
    membership = await _bought(session, client)
    await move_term_end(session, membership, 0, timezone=settings.programme_timezone)
    now = utcnow()
    reports = await asyncio.gather(
        *(jobs.run_once(app.state.sessionmaker, settings=settings, now=now) for _ in range(4))
    )
    assert sum(report.renewals_charged for report in reports) == 1
    assert await _count(session, MembershipTerm) == 2
    assert await _count(session, OutboxEmail, OutboxEmail.template == "renewed") == 1


def test_the_demo_runner_renews_as_of_a_later_day(settings: Settings, tmp_path: Any) -> None:
    """`membership jobs run --as-of DAY` shows a renewal in a demo without waiting a year."""

    async def bought() -> date:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        try:
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
                app.state.sessionmaker() as session,
            ):
                membership = await _bought(session, client)
                paid_until = await session.scalar(
                    select(MembershipTerm.ends_on).where(
                        MembershipTerm.membership_id == membership.id
                    )
                )
                await session.commit()
        finally:
            await app.state.engine.dispose()
        assert paid_until is not None
        return paid_until

    paid_until = asyncio.run(bought())
    env = {
        "MEMBERSHIP_DATABASE_URL": settings.database_url,
        "MEMBERSHIP_KEY_DIR": str(tmp_path / "keys"),
        "MEMBERSHIP_SMTP_PORT": "9",
    }
    day = paid_until.isoformat()
    before = CliRunner().invoke(
        cli, ["jobs", "run", "--as-of", (paid_until - timedelta(days=1)).isoformat()], env=env
    )
    assert before.exit_code == 0, before.output
    assert "renewals charged 0" in before.output
    renewed = CliRunner().invoke(cli, ["jobs", "run", "--as-of", day], env=env)
    assert renewed.exit_code == 0, renewed.output
    assert "events 1," in renewed.output
    assert "renewals charged 1" in renewed.output

    refused = CliRunner().invoke(
        cli, ["jobs", "run", "--as-of", day], env={**env, "MEMBERSHIP_PAYMENT_PROVIDER": "stripe"}
    )
    assert refused.exit_code == 2
    assert "only with the local payment provider" in refused.output

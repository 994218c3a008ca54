"""Given-up work never vanishes: logged at error level, listed for the operator, retryable.

A webhook event gives up after 20 attempts and an e-mail after 8; from then on no runner
tries them again, so the operator must see them (`GET /v1/admin/failed-work`, the job
runner's pass report) and be able to put one back in line once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from api.cli import app as cli
from membership import jobs, outbox
from membership.clock import utcnow
from membership.db import create_engine, create_sessionmaker
from membership.models import AuditEntry, OutboxEmail, StaffRole, WebhookEvent
from membership.payments import events
from membership.settings import Settings
from tests.factories import auth_headers, create_institution, create_member, create_staff_user
from tests.payments import stripe_events as se
from tests.payments.conftest import Inbox

URL = "/v1/admin/failed-work"


async def _event_that_never_fits(session: AsyncSession, *, attempts: int) -> int:
    """A checkout event for a payment that does not exist: it waits, and waits."""
    stored = await events.store(
        session, provider="stripe", event=se.checkout_completed("cs_nobody"), now=utcnow()
    )
    assert stored.event_id is not None
    await session.execute(
        update(WebhookEvent).where(WebhookEvent.id == stored.event_id).values(attempts=attempts)
    )
    await session.commit()
    return stored.event_id


async def _operator(session: AsyncSession) -> dict[str, str]:
    operator = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    headers = await auth_headers(session, staff_user=operator)
    await session.commit()
    return headers


async def _row(session: AsyncSession, model: Any, row_id: int) -> Any:
    row = await session.scalar(
        select(model).where(model.id == row_id).execution_options(populate_existing=True)
    )
    await session.commit()
    return row


async def test_an_event_that_uses_its_last_attempt_is_logged_listed_and_retried(
    session: AsyncSession,
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    event_id = await _event_that_never_fits(session, attempts=events.MAX_ATTEMPTS - 2)
    headers = await _operator(session)
    sessionmaker = app.state.sessionmaker
    with caplog.at_level(logging.INFO, logger="membership.payments.events"):
        await events.process(sessionmaker, event_id=event_id, settings=settings, now=utcnow())
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert (await client.get(URL, headers=headers)).json()["events"]["count"] == 0
        await events.process(sessionmaker, event_id=event_id, settings=settings, now=utcnow())
    gave_up = [r for r in caplog.records if r.message == "webhook.process.gave_up"]
    assert [(r.levelno, getattr(r, "event_id", None)) for r in gave_up] == [
        (logging.ERROR, event_id)
    ]

    listed = await client.get(URL, headers=headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["events"]["count"] == 1
    [item] = body["events"]["items"]
    assert (item["id"], item["type"], item["attempts"]) == (
        event_id,
        "checkout.session.completed",
        events.MAX_ATTEMPTS,
    )
    assert item["last_error"].startswith("not-ready")
    # No runner takes it any more, however late.
    later = utcnow().replace(year=utcnow().year + 1)
    assert await events.process_due(sessionmaker, settings=settings, now=later) == 0

    retried = await client.post(f"{URL}/events/{event_id}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    assert retried.json()["attempts"] == 0
    assert (await client.get(URL, headers=headers)).json()["events"]["count"] == 0
    assert await events.process_due(sessionmaker, settings=settings, now=utcnow()) == 1
    audited = await session.scalar(
        select(AuditEntry.action).where(AuditEntry.entity_id == str(event_id))
    )
    await session.commit()
    assert audited == "webhook_event.retry"

    again = await client.post(f"{URL}/events/{event_id}/retry", headers=headers)
    assert again.status_code == 404
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["type"].endswith("not-given-up")


async def test_a_mail_that_gave_up_is_listed_and_sent_once_after_a_retry(
    session: AsyncSession,
    client: httpx.AsyncClient,
    engine: Any,
    mail_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    smtp_port: int,
) -> None:
    member = await create_member(session, language="en")
    await outbox.enqueue(
        session,
        dedup_key="magic_link:failed-work-test",
        member=member,
        template="magic_link",
        context={"link": "http://testserver/members/sign-in?token=abc"},
        now=utcnow(),
    )
    await session.execute(update(OutboxEmail).values(attempts=outbox.MAX_ATTEMPTS - 1))
    await session.commit()
    headers = await _operator(session)
    sessionmaker = create_sessionmaker(engine)
    with caplog.at_level(logging.WARNING, logger="membership.outbox"):
        # Nothing listens on the SMTP port: the last attempt fails.
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=utcnow()) == 0
    [gave_up] = [r for r in caplog.records if r.message == "outbox.send.gave_up"]
    assert gave_up.levelno == logging.ERROR
    mail_id = getattr(gave_up, "mail_id", None)
    assert isinstance(mail_id, int)

    body = (await client.get(URL, headers=headers)).json()
    assert body["mails"]["count"] == 1
    assert body["mails"]["items"][0]["template"] == "magic_link"
    report = await jobs.run_once(sessionmaker, settings=mail_settings, now=utcnow())
    assert (report.failed_mails, report.failed_mail_ids) == (1, (mail_id,))
    assert "GIVEN UP" in report.summary()

    retried = await client.post(f"{URL}/mails/{mail_id}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=utcnow()) == 1
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=utcnow()) == 0
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    sent = await _row(session, OutboxEmail, mail_id)
    assert sent.sent_at is not None
    assert (await client.post(f"{URL}/mails/{mail_id}/retry", headers=headers)).status_code == 404


async def test_only_the_operator_sees_or_retries_failed_work(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    event_id = await _event_that_never_fits(session, attempts=events.MAX_ATTEMPTS)
    institution = await create_institution(session)
    manager = await create_staff_user(
        session, role=StaffRole.INSTITUTION_MANAGER, institution=institution
    )
    headers = await auth_headers(session, staff_user=manager)
    await session.commit()
    assert (await client.get(URL)).status_code == 401
    assert (await client.get(URL, headers=headers)).status_code == 403
    refused = await client.post(f"{URL}/events/{event_id}/retry", headers=headers)
    assert refused.status_code == 403
    row = await _row(session, WebhookEvent, event_id)
    assert row.attempts == events.MAX_ATTEMPTS


def test_the_cli_pass_report_names_given_up_work(database_url: str, tmp_path: Any) -> None:
    async def given_up_event() -> int:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await _event_that_never_fits(session, attempts=events.MAX_ATTEMPTS)
        finally:
            await engine.dispose()

    event_id = asyncio.run(given_up_event())
    env = {
        "MEMBERSHIP_DATABASE_URL": database_url,
        "MEMBERSHIP_KEY_DIR": str(tmp_path / "keys"),
        "MEMBERSHIP_SMTP_PORT": "9",
    }
    result = CliRunner().invoke(cli, ["jobs", "run", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert f"webhook events 1 [{event_id}]" in result.output
    assert "e-mails 0 []" in result.output

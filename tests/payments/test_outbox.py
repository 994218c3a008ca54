"""The outbox over a real SMTP server (aiosmtpd): sent once, retried while SMTP is down."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership import mail, outbox
from membership.clock import utcnow
from membership.db import create_sessionmaker
from membership.models import OutboxEmail
from membership.settings import Settings
from tests.factories import create_member
from tests.payments.conftest import Inbox, paid_membership


async def _mails(session: AsyncSession) -> list[OutboxEmail]:
    rows = list(
        await session.scalars(
            select(OutboxEmail).order_by(OutboxEmail.id).execution_options(populate_existing=True)
        )
    )
    await session.commit()
    return rows


class TestEnqueue:
    async def test_the_same_cause_is_written_once(self, session: AsyncSession) -> None:
        member = await create_member(session)
        now = utcnow()
        context = {"first_name": "Anna", "product": "Card", "ends_on": "2027-01-01", "days": 7}
        for _ in range(3):
            await outbox.enqueue(
                session,
                dedup_key="reminder:x",
                member=member,
                template="reminder",
                context=context,
                now=now,
            )
        await session.commit()
        assert await session.scalar(select(func.count()).select_from(OutboxEmail)) == 1


class TestSend:
    async def test_welcome_mail_arrives_once_in_the_members_language_with_the_card(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings, inbox: Inbox
    ) -> None:
        now = utcnow()
        await paid_membership(session, mail_settings, now=now, language="en")
        sessionmaker = create_sessionmaker(engine)
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=now) == 1
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=now) == 0
        assert len(inbox.messages) == 1
        message = inbox.messages[0]
        expected_subject, _ = mail.render(
            "welcome", language="en", context=(await _mails(session))[0].context
        )
        assert message["Subject"] == expected_subject
        attachments = [part for part in message.walk() if part.get_filename()]
        assert len(attachments) == 1
        assert attachments[0].get_content_type() == "image/png"
        sent = await _mails(session)
        assert sent[0].sent_at is not None
        assert sent[0].attempts == 1

    async def test_smtp_down_retries_with_backoff_then_sends_exactly_once(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings, smtp_port: int
    ) -> None:
        now = utcnow()
        await paid_membership(session, mail_settings, now=now)
        sessionmaker = create_sessionmaker(engine)
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=now) == 0
        assert await outbox.send_due(sessionmaker, settings=mail_settings, now=now) == 0
        waiting = (await _mails(session))[0]
        assert (waiting.attempts, waiting.sent_at) == (1, None)
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at >= now + outbox.backoff(1)
        assert waiting.last_error is not None

        handler = Inbox()
        controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        try:
            later = now + timedelta(minutes=1)
            assert await outbox.send_due(sessionmaker, settings=mail_settings, now=later) == 1
            assert await outbox.send_due(sessionmaker, settings=mail_settings, now=later) == 0
            much_later = later + timedelta(days=1)
            assert await outbox.send_due(sessionmaker, settings=mail_settings, now=much_later) == 0
        finally:
            controller.stop()
        assert len(handler.messages) == 1
        assert (await _mails(session))[0].attempts == 2

    async def test_two_runners_at_once_send_each_mail_once(
        self,
        session: AsyncSession,
        engine: AsyncEngine,
        mail_settings: Settings,
        inbox: Inbox,
        backend: str,
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        now = utcnow()
        await paid_membership(session, mail_settings, now=now, holders=1)
        await paid_membership(session, mail_settings, now=now, holders=1)
        await paid_membership(session, mail_settings, now=now, holders=1)
        sessionmaker = create_sessionmaker(engine)
        counts = await asyncio.gather(
            *(outbox.send_due(sessionmaker, settings=mail_settings, now=now) for _ in range(4))
        )
        assert sum(counts) == 3
        assert len(inbox.messages) == 3


class TestBackoff:
    def test_grows_and_is_capped(self) -> None:
        delays = [outbox.backoff(n) for n in range(1, 20)]
        assert delays == sorted(delays)
        assert delays[0] == timedelta(seconds=30)
        assert delays[-1] == timedelta(hours=6)

"""The job runner: standing moves active → in_grace → expired, reminders, several runners."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typer.testing import CliRunner

from api.cli import app as cli
from membership import jobs
from membership.clock import utcnow
from membership.db import create_sessionmaker
from membership.models import (
    Card,
    CardRevocation,
    CardStatus,
    Membership,
    MembershipStatus,
    OutboxEmail,
)
from membership.settings import Settings
from tests.factories import move_term_end
from tests.payments.conftest import paid_membership


async def _count(session: AsyncSession, model: Any, *where: Any) -> int:
    found = await session.scalar(select(func.count()).select_from(model).where(*where))
    await session.commit()
    return int(found or 0)


async def _status(session: AsyncSession, membership: Membership) -> MembershipStatus:
    status = await session.scalar(select(Membership.status).where(Membership.id == membership.id))
    await session.commit()
    assert status is not None
    return status


class TestStanding:
    async def test_moves_memberships_by_their_paid_until_date(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings
    ) -> None:
        now = utcnow()
        active, _ = await paid_membership(session, mail_settings, now=now)
        grace, _ = await paid_membership(session, mail_settings, now=now, grace_days=14)
        gone, _ = await paid_membership(session, mail_settings, now=now, grace_days=14)
        await move_term_end(session, grace, -3, timezone=mail_settings.programme_timezone)
        await move_term_end(session, gone, -20, timezone=mail_settings.programme_timezone)
        sessionmaker = create_sessionmaker(engine)
        report = await jobs.run_once(sessionmaker, settings=mail_settings, now=now)
        assert (report.in_grace, report.expired) == (1, 1)
        assert await _status(session, active) == MembershipStatus.ACTIVE
        assert await _status(session, grace) == MembershipStatus.IN_GRACE
        assert await _status(session, gone) == MembershipStatus.EXPIRED
        assert await _count(session, Card, Card.status == CardStatus.EXPIRED) == 1
        assert await _count(session, CardRevocation, CardRevocation.reason == "expired") == 1
        assert await _count(session, OutboxEmail, OutboxEmail.template == "expired") == 1
        again = await jobs.run_once(sessionmaker, settings=mail_settings, now=now)
        assert (again.in_grace, again.expired) == (0, 0)
        assert await _count(session, OutboxEmail, OutboxEmail.template == "expired") == 1

    async def test_a_desk_card_past_its_31_days_stops_being_live(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings
    ) -> None:
        now = utcnow()
        membership, _ = await paid_membership(session, mail_settings, now=now)
        card = await session.scalar(select(Card).where(Card.membership_id == membership.id))
        assert card is not None
        card.status = CardStatus.TEMPORARY
        card.expires_at = now - timedelta(minutes=1)
        await session.commit()
        await jobs.run_once(create_sessionmaker(engine), settings=mail_settings, now=now)
        assert await _count(session, Card, Card.status == CardStatus.EXPIRED) == 1
        assert await _count(session, CardRevocation, CardRevocation.reason == "expired") == 1

    async def test_a_renewal_paid_in_grace_makes_it_active_again(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings
    ) -> None:
        now = utcnow()
        membership, _ = await paid_membership(session, mail_settings, now=now)
        await move_term_end(session, membership, -3, timezone=mail_settings.programme_timezone)
        sessionmaker = create_sessionmaker(engine)
        await jobs.run_once(sessionmaker, settings=mail_settings, now=now)
        assert await _status(session, membership) == MembershipStatus.IN_GRACE
        await move_term_end(session, membership, 300, timezone=mail_settings.programme_timezone)
        await jobs.run_once(sessionmaker, settings=mail_settings, now=now)
        assert await _status(session, membership) == MembershipStatus.ACTIVE

    async def test_several_runners_at_once_expire_and_mail_once(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings, backend: str
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        now = utcnow()
        gone, _ = await paid_membership(session, mail_settings, now=now, holders=2)
        await move_term_end(session, gone, -30, timezone=mail_settings.programme_timezone)
        sessionmaker = create_sessionmaker(engine)
        reports = await asyncio.gather(
            *(jobs.update_standing(sessionmaker, settings=mail_settings, now=now) for _ in range(4))
        )
        assert sum(expired for _grace, expired in reports) == 1
        assert await _count(session, OutboxEmail, OutboxEmail.template == "expired") == 2
        assert await _count(session, CardRevocation, CardRevocation.reason == "expired") == 2


class TestReminders:
    async def test_members_renewing_by_hand_are_reminded_once_per_threshold(
        self, session: AsyncSession, engine: AsyncEngine, mail_settings: Settings
    ) -> None:
        now = utcnow()
        manual, _ = await paid_membership(session, mail_settings, now=now)
        automatic, _ = await paid_membership(session, mail_settings, now=now, auto_renew=True)
        await move_term_end(session, manual, 20, timezone=mail_settings.programme_timezone)
        await move_term_end(session, automatic, 20, timezone=mail_settings.programme_timezone)
        sessionmaker = create_sessionmaker(engine)
        assert await jobs.send_reminders(sessionmaker, settings=mail_settings, now=now) == 1
        assert await jobs.send_reminders(sessionmaker, settings=mail_settings, now=now) == 0
        await move_term_end(session, manual, 5, timezone=mail_settings.programme_timezone)
        assert await jobs.send_reminders(sessionmaker, settings=mail_settings, now=now) == 1
        reminders = list(
            await session.scalars(
                select(OutboxEmail.context).where(OutboxEmail.template == "reminder")
            )
        )
        await session.commit()
        assert sorted(context["days"] for context in reminders) == [7, 30]


def test_cli_runs_one_pass(database_url: str, tmp_path: Any) -> None:
    env = {
        "MEMBERSHIP_DATABASE_URL": database_url,
        "MEMBERSHIP_KEY_DIR": str(tmp_path / "keys"),
        "MEMBERSHIP_SMTP_PORT": "9",
    }
    result = CliRunner().invoke(cli, ["jobs", "run", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "events 0, mails sent 0" in result.output

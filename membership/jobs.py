"""The job runner: provider events, the e-mail outbox, membership standing, reminders and the
retention cut.

It is the only place outside HTTP requests that commits. Any number of runners may run at
once: events and mails are claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional
update on SQLite) and every status change is a conditional update that one runner wins, with
the side effects (cards expired, e-mails written) in the winner's transaction only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership import cards, memberships, outbox, renewals, retention
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.models import Membership, MembershipStatus, Product
from membership.payments import events, provider_from_settings
from membership.payments.provider import PaymentProvider
from membership.settings import Settings

log = logging.getLogger(__name__)

JOBS_ACTOR = Actor(label="jobs")
_STANDING = {
    renewals.Standing.ACTIVE: MembershipStatus.ACTIVE,
    renewals.Standing.IN_GRACE: MembershipStatus.IN_GRACE,
    renewals.Standing.EXPIRED: MembershipStatus.EXPIRED,
}


# How many ids of given-up work a pass report names; the counts are always complete.
REPORT_IDS = 10


@dataclass(frozen=True)
class PassReport:
    events: int
    mails_sent: int
    in_grace: int
    expired: int
    reminders: int
    renewals_charged: int = 0
    # Member links removed by the retention cut (rule 5): from check-ins and visitor rows.
    links_cut_checkins: int = 0
    links_cut_visitors: int = 0
    # Work that used all its attempts and waits for the operator (never silently dropped).
    failed_events: int = 0
    failed_mails: int = 0
    failed_event_ids: tuple[int, ...] = ()
    failed_mail_ids: tuple[int, ...] = ()

    def summary(self) -> str:
        """One line for the CLI; given-up work is named by id so it can be retried."""
        line = (
            f"events {self.events}, mails sent {self.mails_sent}, in grace {self.in_grace}, "
            f"expired {self.expired}, reminders {self.reminders}, "
            f"renewals charged {self.renewals_charged}, "
            f"links cut: check-ins {self.links_cut_checkins}, "
            f"visitor rows {self.links_cut_visitors}"
        )
        if self.failed_events or self.failed_mails:
            line += (
                f"\nGIVEN UP (see GET /v1/admin/failed-work): "
                f"webhook events {self.failed_events} {_ids(self.failed_event_ids)}, "
                f"e-mails {self.failed_mails} {_ids(self.failed_mail_ids)}"
            )
        return line


def _ids(ids: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(found) for found in ids) + "]"


@dataclass(frozen=True)
class _Live:
    membership_id: uuid.UUID
    status: MembershipStatus
    paid_until: date
    grace_days: int
    auto_renew: bool


async def _live(session: AsyncSession) -> list[_Live]:
    """Live memberships with the end of their last standing term."""
    rows = await session.execute(
        select(
            Membership.id,
            Membership.status,
            Membership.paid_until,
            Product.grace_days,
            Membership.auto_renew,
        )
        .join(Product, Product.id == Membership.product_id)
        .where(Membership.status.in_((MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)))
    )
    return [
        _Live(membership_id, status, until, grace_days, auto_renew)
        for membership_id, status, until, grace_days, auto_renew in rows
        if until is not None
    ]


async def _move(
    session: AsyncSession, *, membership_id: uuid.UUID, old: MembershipStatus, new: MembershipStatus
) -> bool:
    """One runner wins the change; the others see zero rows and do nothing."""
    won = await session.execute(
        update(Membership)
        .where(Membership.id == membership_id, Membership.status == old)
        .values(status=new)
        .returning(Membership.id)
    )
    return won.scalar_one_or_none() is not None


async def _mail_holders(
    session: AsyncSession,
    *,
    membership_id: uuid.UUID,
    template: str,
    key: str,
    extra: dict[str, object],
    now: datetime,
) -> int:
    membership = await memberships.load_membership(session, membership_id=membership_id)
    written = 0
    for holder in membership.holders:
        written += await outbox.enqueue(
            session,
            dedup_key=f"{template}:{membership_id}:{key}:{holder.id}",
            member=holder,
            template=template,
            context={"first_name": holder.first_name, "product": membership.product.name, **extra},
            now=now,
        )
    return written


async def update_standing(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, now: datetime
) -> tuple[int, int]:
    """active → in_grace → expired by the paid-until date; expiry ends the cards at once."""
    today = local_date(now, settings.programme_timezone)
    async with sessionmaker() as session:
        rows = await _live(session)
        await session.commit()
    moved_to_grace = expired = 0
    for row in rows:
        membership_id, status, paid_until = row.membership_id, row.status, row.paid_until
        target = _STANDING[
            renewals.standing(today=today, paid_until=paid_until, grace_days=row.grace_days)
        ]
        if target == status:
            continue
        async with sessionmaker() as session:
            if not await _move(session, membership_id=membership_id, old=status, new=target):
                await session.rollback()
                continue
            if target == MembershipStatus.EXPIRED:
                await cards.expire_with_membership(
                    session, membership_id=membership_id, now=now, actor=JOBS_ACTOR
                )
                await _mail_holders(
                    session,
                    membership_id=membership_id,
                    template="expired",
                    key=paid_until.isoformat(),
                    extra={"ends_on": paid_until.isoformat()},
                    now=now,
                )
                expired += 1
            elif target == MembershipStatus.IN_GRACE:
                moved_to_grace += 1
            await session.commit()
    return moved_to_grace, expired


async def send_reminders(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, now: datetime
) -> int:
    """30 and 7 days before the end, for members who renew by hand (auto-renew pays itself)."""
    today = local_date(now, settings.programme_timezone)
    written = 0
    async with sessionmaker() as session:
        for row in await _live(session):
            days = renewals.reminder_due(today=today, paid_until=row.paid_until)
            if row.status != MembershipStatus.ACTIVE or row.auto_renew or days is None:
                continue
            written += await _mail_holders(
                session,
                membership_id=row.membership_id,
                template="reminder",
                key=f"{row.paid_until.isoformat()}:{days}",
                extra={"ends_on": row.paid_until.isoformat(), "days": days},
                now=now,
            )
        await session.commit()
    return written


async def run_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    now: datetime,
    provider: PaymentProvider | None = None,
) -> PassReport:
    """One pass: renewals the provider leaves to us, then events (they may activate or extend
    memberships), then standing and cards (a paid term that starts after a refunded one
    unblocks them), then mail, then the retention cut (after the mail, so that a first cut of
    years of history delays nobody's e-mail); last, what has given up, for the report.

    Without a `provider` the pass makes the one the settings name, and closes it after.
    """
    if provider is None:
        async with _provider(settings, sessionmaker) as own:
            return await run_once(sessionmaker, settings=settings, now=now, provider=own)
    charged = await provider.charge_due_renewals(now=now)
    handled = await events.process_due(sessionmaker, settings=settings, now=now, provider=provider)
    in_grace, expired = await update_standing(sessionmaker, settings=settings, now=now)
    async with sessionmaker() as session:
        await cards.expire_temporary_cards(session, now=now)
        await memberships.end_refund_gaps(
            session,
            today=local_date(now, settings.programme_timezone),
            actor=JOBS_ACTOR,
            now=now,
        )
        await session.commit()
    reminders = await send_reminders(sessionmaker, settings=settings, now=now)
    sent = await outbox.send_due(sessionmaker, settings=settings, now=now)
    cut = await retention.cut_links(
        sessionmaker, settings=settings, now=now, max_batches=retention.BATCHES_PER_PASS
    )
    async with sessionmaker() as session:
        failed_events, event_rows = await events.given_up(session, limit=REPORT_IDS)
        failed_mails, mail_rows = await outbox.given_up(session, limit=REPORT_IDS)
        await session.commit()
    report = PassReport(
        events=handled,
        mails_sent=sent,
        in_grace=in_grace,
        expired=expired,
        reminders=reminders,
        renewals_charged=charged,
        links_cut_checkins=cut.checkins,
        links_cut_visitors=cut.visitors,
        failed_events=failed_events,
        failed_mails=failed_mails,
        failed_event_ids=tuple(row.id for row in event_rows),
        failed_mail_ids=tuple(row.id for row in mail_rows),
    )
    log.info("jobs.pass.done", extra={"report": report})
    return report


@asynccontextmanager
async def _provider(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[PaymentProvider]:
    provider = provider_from_settings(settings, sessionmaker)
    try:
        yield provider
    finally:
        await provider.aclose()


async def run_forever(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, interval: float
) -> None:
    async with _provider(settings, sessionmaker) as provider:
        while True:
            try:
                await run_once(sessionmaker, settings=settings, now=utcnow(), provider=provider)
            except Exception:  # one bad pass must not stop the runner; the next one retries
                log.exception("jobs.pass.failed")
            await asyncio.sleep(interval)

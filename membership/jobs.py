"""The job runner: provider events, the e-mail outbox, membership standing and reminders.

It is the only place outside HTTP requests that commits. Any number of runners may run at
once: events and mails are claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional
update on SQLite) and every status change is a conditional update that one runner wins, with
the side effects (cards expired, e-mails written) in the winner's transaction only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership import cards, memberships, outbox, renewals
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.models import Membership, MembershipStatus, MembershipTerm, Product, TermStatus
from membership.payments import events
from membership.settings import Settings

log = logging.getLogger(__name__)

JOBS_ACTOR = Actor(label="jobs")
_STANDING = {
    renewals.Standing.ACTIVE: MembershipStatus.ACTIVE,
    renewals.Standing.IN_GRACE: MembershipStatus.IN_GRACE,
    renewals.Standing.EXPIRED: MembershipStatus.EXPIRED,
}


@dataclass(frozen=True)
class PassReport:
    events: int
    mails_sent: int
    in_grace: int
    expired: int
    reminders: int


@dataclass(frozen=True)
class _Live:
    membership_id: uuid.UUID
    status: MembershipStatus
    paid_until: date
    grace_days: int
    auto_renew: bool


async def _live(session: AsyncSession) -> list[_Live]:
    """Live memberships with the end of their last standing term, computed in SQL."""
    ends = (
        select(MembershipTerm.membership_id, func.max(MembershipTerm.ends_on).label("ends_on"))
        .where(MembershipTerm.status == TermStatus.ACTIVE)
        .group_by(MembershipTerm.membership_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            Membership.id,
            Membership.status,
            ends.c.ends_on,
            Product.grace_days,
            Membership.auto_renew,
        )
        .join(ends, ends.c.membership_id == Membership.id)
        .join(Product, Product.id == Membership.product_id)
        .where(Membership.status.in_((MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)))
    )
    return [_Live(*row) for row in rows]


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
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, now: datetime
) -> PassReport:
    """One pass: events first (they may activate memberships), then standing, then mail."""
    handled = await events.process_due(sessionmaker, settings=settings, now=now)
    in_grace, expired = await update_standing(sessionmaker, settings=settings, now=now)
    async with sessionmaker() as session:
        await cards.expire_temporary_cards(session, now=now)
        await session.commit()
    reminders = await send_reminders(sessionmaker, settings=settings, now=now)
    sent = await outbox.send_due(sessionmaker, settings=settings, now=now)
    report = PassReport(handled, sent, in_grace, expired, reminders)
    log.info("jobs.pass.done", extra={"report": report})
    return report


async def run_forever(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, interval: float
) -> None:
    while True:
        try:
            await run_once(sessionmaker, settings=settings, now=utcnow())
        except Exception:  # one bad pass must not stop the runner; the next one retries
            log.exception("jobs.pass.failed")
        await asyncio.sleep(interval)

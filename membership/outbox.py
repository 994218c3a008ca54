"""The e-mail outbox: written in the transaction of the change that causes a mail, sent later.

A mail is never lost (it commits with its cause) and never written twice (its `dedup_key`
names the cause, and the insert ignores a second one); the sender in `jobs` claims each row
before it sends it, so two runners never send the same mail.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Member, OutboxEmail

MAX_ATTEMPTS = 8
_BACKOFF_BASE = timedelta(seconds=30)
_BACKOFF_MAX = timedelta(hours=6)
# A claimed mail is hidden from other runners this long; a runner that died mid-send frees it.
CLAIM_FOR = timedelta(minutes=5)


async def enqueue(
    session: AsyncSession,
    *,
    dedup_key: str,
    member: Member,
    template: str,
    context: dict[str, Any],
    now: datetime,
) -> bool:
    """Write the mail unless one for the same cause exists; True when this call wrote it."""
    if not member.email:
        return False
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(OutboxEmail)
        .values(
            dedup_key=dedup_key,
            member_id=member.id,
            to_address=member.email,
            language=member.language,
            template=template,
            context=context,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(OutboxEmail.id)
    )
    return (await session.scalar(statement)) is not None


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … capped at 6 h: a mail server that is down is not hammered."""
    delay: timedelta = _BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    return min(delay, _BACKOFF_MAX)


async def claim_due(session: AsyncSession, *, now: datetime, limit: int) -> list[OutboxEmail]:
    """Take up to `limit` due mails for this runner; another runner gets different ones.

    PostgreSQL skips rows another runner has locked; SQLite has no row locks, so each row is
    claimed by a conditional update that only one runner can win. Claiming pushes the next
    attempt into the future, so a crashed runner's mails come back after `CLAIM_FOR`.
    """
    due = (
        select(OutboxEmail.id)
        .where(
            OutboxEmail.sent_at.is_(None),
            OutboxEmail.next_attempt_at <= now,
            OutboxEmail.attempts < MAX_ATTEMPTS,
        )
        .order_by(OutboxEmail.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        ids = list(await session.scalars(due.with_for_update(skip_locked=True)))
    else:
        ids = []
        for candidate in list(await session.scalars(due)):
            claimed = await session.execute(
                update(OutboxEmail)
                .where(
                    OutboxEmail.id == candidate,
                    OutboxEmail.sent_at.is_(None),
                    OutboxEmail.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + CLAIM_FOR)
                .returning(OutboxEmail.id)
            )
            if claimed.scalar_one_or_none() is not None:
                ids.append(candidate)
    if not ids:
        return []
    await session.execute(
        update(OutboxEmail).where(OutboxEmail.id.in_(ids)).values(next_attempt_at=now + CLAIM_FOR)
    )
    rows = await session.scalars(
        select(OutboxEmail)
        .where(OutboxEmail.id.in_(ids))
        .order_by(OutboxEmail.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)

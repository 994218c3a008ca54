"""The e-mail outbox: written in the transaction of the change that causes a mail, sent later.

A mail is never lost (it commits with its cause) and never written twice (its `dedup_key`
names the cause, and the insert ignores a second one); the sender in `jobs` claims each row
before it sends it, so two runners never send the same mail.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership import cards, codes, images
from membership.errors import DomainError, NotFound
from membership.keys import KeyStore
from membership.mail import Attachment, Message, render, send
from membership.models import Member, OutboxEmail
from membership.settings import Settings

log = logging.getLogger(__name__)

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
        await session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id.in_(ids))
            .values(next_attempt_at=now + CLAIM_FOR)
        )
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
    rows = await session.scalars(
        select(OutboxEmail)
        .where(OutboxEmail.id.in_(ids))
        .order_by(OutboxEmail.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def _attachments(
    session: AsyncSession, *, mail: OutboxEmail, settings: Settings
) -> list[Attachment]:
    """The card's QR code, signed at send time so it carries the current key and validity."""
    card_id = mail.context.get("card_id")
    if not card_id:
        return []
    try:
        card = await cards.get_card(session, card_id=uuid.UUID(card_id))
        code = cards.code_for(card, programme=settings.programme_code)
    except DomainError:
        return []  # blocked or replaced since: the mail goes without a code that would fail
    _key_id, private_key = KeyStore.from_settings(settings).signing_key()
    text = codes.encode(code, private_key=private_key)
    return [Attachment(filename=f"card-{card.number}.png", content=images.qr_png(text))]


async def send_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    now: datetime,
    limit: int = 50,
) -> int:
    """Send the due mails this runner claims; returns how many were accepted by the server.

    A failure leaves the mail for a later attempt with a growing delay; `sent_at` is set only
    on a mail still unsent, so a slow duplicate claim can never mark or send it twice.
    """
    async with sessionmaker() as session:
        claimed = await claim_due(session, now=now, limit=limit)
        await session.commit()
    sent = 0
    for mail in claimed:
        try:
            async with sessionmaker() as session:
                attachments = await _attachments(session, mail=mail, settings=settings)
            subject, body = render(mail.template, language=mail.language, context=mail.context)
            await send(
                settings,
                Message(to=mail.to_address, subject=subject, body=body, attachments=attachments),
            )
        except Exception as exc:  # SMTP down, refused, or a template bug: retried later
            attempts = mail.attempts + 1
            values: dict[str, Any] = {
                "attempts": attempts,
                "next_attempt_at": now + backoff(attempts),
                "last_error": f"{exc.__class__.__name__}: {exc}"[:1000],
            }
            if attempts >= MAX_ATTEMPTS:
                log.error(
                    "outbox.send.gave_up",
                    extra={"mail_id": mail.id, "attempts": attempts, "error": values["last_error"]},
                )
            else:
                log.warning("outbox.send.retry", extra={"mail_id": mail.id, "attempts": attempts})
        else:
            values = {"attempts": mail.attempts + 1, "sent_at": now, "last_error": None}
            sent += 1
        async with sessionmaker() as session:
            await session.execute(
                update(OutboxEmail)
                .where(OutboxEmail.id == mail.id, OutboxEmail.sent_at.is_(None))
                .values(**values)
            )
            await session.commit()
    return sent


class NotGivenUp(NotFound):
    """Retrying is only for work that used all its attempts (mails here, webhook events)."""

    code = "not-given-up"
    title = "No given-up work has this id"


def _given_up() -> Any:
    return (OutboxEmail.sent_at.is_(None)) & (OutboxEmail.attempts >= MAX_ATTEMPTS)


async def given_up(session: AsyncSession, *, limit: int) -> tuple[int, list[OutboxEmail]]:
    """Mails no runner will try again (all attempts used): how many, and the oldest ones."""
    count = await session.scalar(select(func.count()).select_from(OutboxEmail).where(_given_up()))
    rows = await session.scalars(
        select(OutboxEmail).where(_given_up()).order_by(OutboxEmail.id).limit(limit)
    )
    return int(count or 0), list(rows)


async def retry(session: AsyncSession, *, mail_id: int, now: datetime) -> OutboxEmail:
    """Give a given-up mail a fresh set of attempts, due now; a sent mail is never resent."""
    row: OutboxEmail | None = await session.scalar(
        update(OutboxEmail)
        .where(OutboxEmail.id == mail_id, _given_up())
        .values(attempts=0, next_attempt_at=now)
        .returning(OutboxEmail)
    )
    if row is None:
        raise NotGivenUp("No given-up e-mail has this id.", mail_id=mail_id)
    return row

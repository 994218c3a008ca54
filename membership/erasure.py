"""Erasing a member on request (the right to be forgotten): DESIGN.md rule 5.

The person goes; the programme's records stay. The member row keeps its id, so memberships,
payments and receipts (bookkeeping: money records are kept) still add up, but holds no name,
address, birth date, photo or consent any more. Visit history stays too, because every report
counts it: each check-in keeps its pseudonymous visitor key, and what tied that key to the person
(the member's own copy of the key, the check-ins' member and card links, the visitor rows' member
link) is removed, so no figure changes and nobody can tell whose visits they were
(docs/privacy.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit, cards, memberships, photos, rollups
from membership.audit import Actor
from membership.errors import NotFound
from membership.models import (
    LIVE_CARD_STATUSES,
    Card,
    Checkin,
    Member,
    MemberSession,
    Membership,
    MemberSignInLink,
    OutboxEmail,
    membership_holders,
)
from membership.payments.provider import PaymentProvider

# Names are NOT NULL; an empty one shows as nothing on every page and list, where a word such
# as "erased" would read as somebody's name.
ERASED_NAME = ""
# The blocked cards' reason: support sees why a card stopped working.
CARD_REASON = "erased"


class MemberNotFound(NotFound):
    code = "member-not-found"
    title = "No member has this id"


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did; `erased_now` is False when the member had been erased before, in
    which case nothing changed and `erased_at` is the first erasure's time."""

    member_id: uuid.UUID
    erased_at: datetime
    erased_now: bool


async def erase_member(
    session: AsyncSession,
    *,
    member_id: uuid.UUID,
    actor: Actor,
    provider: PaymentProvider,
    photo_dir: Path,
    now: datetime,
) -> Erasure:
    """Remove a member's personal data and every link from their visits to them.

    Idempotent: a second erasure (a retried request) finds `erased_at` set and changes nothing.
    The member row is locked first, so two erasures of one member at once apply once.
    """
    # The row as locked, not a copy this session loaded before the lock was granted.
    member = await session.scalar(
        select(Member)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if member is None:
        raise MemberNotFound(member_id=str(member_id))
    if member.erased_at is not None:
        return Erasure(member_id=member.id, erased_at=member.erased_at, erased_now=False)
    blocked = await _block_cards(session, member_id=member.id, actor=actor, now=now)
    unlinked = await _unlink_visits(session, member_id=member.id)
    withdrawn = await _withdraw_mail(session, member_id=member.id)
    signed_out = await _end_sign_ins(session, email=member.email)
    photo = member.photo_path
    _blank(member, now=now)
    await session.flush()
    # After the flush, so the file goes only once the row no longer names it. Deleted before
    # commit, not after: a rolled-back erasure leaves a member whose photo renders as none and
    # who is erased again on retry, while a file left behind after commit could never be found
    # again (its random name is recorded nowhere else).
    _delete_photo(photo_dir, photo)
    # Last, as it may call the payment provider: nothing after it can fail the erasure.
    stopped = await _stop_auto_renew(session, member_id=member.id, actor=actor, provider=provider)
    await audit.record(
        session,
        actor=actor,
        action="member.erased",
        entity_type="member",
        entity_id=member.id,
        # Counts only: the audit trail must not keep what the erasure removed.
        changes={
            "cards_blocked": blocked,
            "checkins_unlinked": unlinked,
            "mails_withdrawn": withdrawn,
            "sign_ins_ended": signed_out,
            "auto_renew_stopped": stopped,
            "photo_deleted": photo is not None,
        },
    )
    return Erasure(member_id=member.id, erased_at=now, erased_now=True)


def _blank(member: Member, *, now: datetime) -> None:
    """Every personal field emptied; language stays (a choice among two, it identifies nobody,
    and the column is NOT NULL). The visitor key goes so that the key the check-ins keep can no
    longer be matched to this row."""
    member.first_name = ERASED_NAME
    member.last_name = ERASED_NAME
    member.email = None
    member.birth_date = None
    member.postal_code = None
    member.photo_path = None
    member.marketing_opt_in = False
    member.marketing_opt_in_at = None
    member.share_contact = False
    member.share_contact_at = None
    member.visitor_key = None
    member.erased_at = now


async def _block_cards(
    session: AsyncSession, *, member_id: uuid.UUID, actor: Actor, now: datetime
) -> int:
    """Through the card service, so every door learns it from the revocation feed (rule 4)
    and no new visit can be made with the member's cards."""
    live = list(
        await session.scalars(
            select(Card.id)
            .where(Card.member_id == member_id, Card.status.in_(LIVE_CARD_STATUSES))
            .order_by(Card.id)
        )
    )
    for card_id in live:
        await cards.block(session, card_id=card_id, reason=CARD_REASON, actor=actor, now=now)
    return len(live)


async def _unlink_visits(session: AsyncSession, *, member_id: uuid.UUID) -> int:
    """Remove the member and card links from the member's check-ins and visitor rows; returns
    how many check-ins were linked.

    The card link goes too: a card names its holder, so a check-in that kept it would still
    lead to the member row and, through its memberships and payments, to the person at the
    payment provider. No report reads it (reports count by visitor key).
    """
    linked = await session.execute(
        update(Checkin)
        .where(Checkin.card_id.in_(select(Card.id).where(Card.member_id == member_id)))
        .values(card_id=None)
    )
    await rollups.clear_member_links(session, [member_id])
    return _rowcount(linked)


async def _withdraw_mail(session: AsyncSession, *, member_id: uuid.UUID) -> int:
    """Every mail to the member: the unsent ones must not go out, and the sent ones hold the
    address and what was written to it."""
    result = await session.execute(delete(OutboxEmail).where(OutboxEmail.member_id == member_id))
    return _rowcount(result)


async def _end_sign_ins(session: AsyncSession, *, email: str | None) -> int:
    """Sign-in links and sessions are keyed by address: with the address gone none may stay."""
    if not email:
        return 0
    links = await session.execute(delete(MemberSignInLink).where(MemberSignInLink.email == email))
    sessions = await session.execute(delete(MemberSession).where(MemberSession.email == email))
    return _rowcount(links) + _rowcount(sessions)


def _delete_photo(photo_dir: Path, relative: str | None) -> None:
    path = photos.resolve(photo_dir, relative)
    if path is not None:
        path.unlink(missing_ok=True)


async def _stop_auto_renew(
    session: AsyncSession, *, member_id: uuid.UUID, actor: Actor, provider: PaymentProvider
) -> int:
    """Auto-renew off on every membership the member holds, through the path a member's own
    "stop auto-renew" takes (it cancels a Stripe subscription at the provider): nobody may be
    charged for a card that can no longer be used. The memberships and their terms stay."""
    renewing = list(
        await session.scalars(
            select(Membership)
            .join(membership_holders, membership_holders.c.membership_id == Membership.id)
            .where(membership_holders.c.member_id == member_id, Membership.auto_renew.is_(True))
            .order_by(Membership.id)
        )
    )
    for membership in renewing:
        await memberships.stop_auto_renew(
            session, provider=provider, membership=membership, actor=actor
        )
    return len(renewing)


def _rowcount(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0

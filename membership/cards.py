"""The life of a card: issue, block, unblock, lost and replaced, reissued, expired, temporary.

Every change that makes an earlier code stop working also appends to the revocation feed in
the same transaction, so a scanner that syncs learns it (rule 4); every staff change leaves an
audit row (DESIGN: audit every change to cards).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from membership import audit, card_numbers, codes
from membership.audit import Actor
from membership.errors import Conflict, NotFound, PermissionDenied
from membership.models import (
    LIVE_CARD_STATUSES,
    Card,
    CardRevocation,
    CardStatus,
    Member,
    Membership,
    MembershipStatus,
    TermStatus,
)

TEMPORARY_DAYS = 31
TEMPORARY_VISITS = 5
# A card is issued for these memberships only; in_grace still admits while a renewal is paid.
_ISSUABLE = (MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)
# Numbers are random; a collision with an existing one is retried, never silently reused.
_NUMBER_ATTEMPTS = 5


class CardNotFound(NotFound):
    code = "card-not-found"
    title = "No card has this id or number"


class CardStateConflict(Conflict):
    code = "card-state-conflict"
    title = "The card's status does not allow this"


class CardAlreadyIssued(Conflict):
    code = "card-already-issued"
    title = "The holder already has a live card for this membership"


class MembershipNotActive(Conflict):
    code = "membership-not-active"
    title = "Cards are issued only for active memberships"


class NotAHolder(Conflict):
    code = "not-a-holder"
    title = "This member does not hold this membership"


class HolderErased(Conflict):
    code = "holder-erased"
    title = "The holder has been erased; their cards stay blocked"


def _ensure_not_erased(holder: Member) -> None:
    """An erased member's cards were blocked for good: a card that admitted again would count
    visits for nobody (the member has no visitor key) and bring the person back."""
    if holder.erased_at is not None:
        raise HolderErased(member_id=str(holder.id))


class PhotoRequired(Conflict):
    code = "photo-required"
    title = "A permanent card needs the holder's photo"


@dataclass(frozen=True)
class FeedPage:
    entries: list[CardRevocation]
    cursor: int
    has_more: bool


def _load() -> tuple[Any, ...]:
    return (
        selectinload(Card.member),
        selectinload(Card.membership).selectinload(Membership.terms),
        selectinload(Card.membership).selectinload(Membership.product),
    )


async def get_card(session: AsyncSession, *, card_id: uuid.UUID) -> Card:
    """The card with its holder, membership, terms and product: all a card image shows."""
    card = await session.scalar(select(Card).where(Card.id == card_id).options(*_load()))
    if card is None:
        raise CardNotFound(card_id=str(card_id))
    return card


async def find_by_number(session: AsyncSession, *, number: str) -> Card:
    """Typed numbers ("4123 4567-8905") are normalised; a mistyped one fails before any query."""
    normalised = card_numbers.normalise(number)
    card = await session.scalar(select(Card).where(Card.number == normalised).options(*_load()))
    if card is None:
        raise CardNotFound()
    return card


async def list_cards(
    session: AsyncSession, *, member_id: uuid.UUID | None = None, membership_id: uuid.UUID | None
) -> list[Card]:
    query = select(Card).options(*_load()).order_by(Card.issued_at, Card.id)
    if member_id is not None:
        query = query.where(Card.member_id == member_id)
    if membership_id is not None:
        query = query.where(Card.membership_id == membership_id)
    return list(await session.scalars(query))


async def _membership_for_issue(
    session: AsyncSession, *, membership_id: uuid.UUID, member_id: uuid.UUID
) -> Membership:
    membership = await session.scalar(
        select(Membership)
        .where(Membership.id == membership_id)
        .options(selectinload(Membership.holders), selectinload(Membership.terms))
    )
    if membership is None:
        raise NotFound("No such membership.", membership_id=str(membership_id))
    if membership.status not in _ISSUABLE:
        raise MembershipNotActive(membership_status=membership.status.value)
    holder = next((holder for holder in membership.holders if holder.id == member_id), None)
    if holder is None:
        raise NotAHolder()
    _ensure_not_erased(holder)
    return membership


async def _live_card(
    session: AsyncSession, *, member_id: uuid.UUID, membership_id: uuid.UUID
) -> Card | None:
    return await session.scalar(
        select(Card).where(
            Card.member_id == member_id,
            Card.membership_id == membership_id,
            Card.status.in_(LIVE_CARD_STATUSES),
        )
    )


async def _insert_card(session: AsyncSession, card: Card) -> Card:
    """Insert with a fresh random number; the partial unique index backs the one-live-card rule.

    The explicit live-card check gives a clear error; the index catches the race where two
    desks issue at the same moment, and the savepoint keeps the caller's transaction usable.
    """
    for _attempt in range(_NUMBER_ATTEMPTS):
        card.number = card_numbers.generate()
        try:
            async with session.begin_nested():
                session.add(card)
                await session.flush()
        except IntegrityError as exc:
            if card.membership_id is not None and await _live_card(
                session, member_id=card.member_id, membership_id=card.membership_id
            ):
                raise CardAlreadyIssued() from exc
            continue
        return card
    raise Conflict("Could not draw an unused card number; try again.")


async def _append_feed(
    session: AsyncSession, *, card: Card, revoked: bool, reason: str, min_version: int | None = None
) -> None:
    """Append one feed entry whose id is greater than every entry committed before it.

    PostgreSQL hands out sequence values at insert, not at commit: without the lock a
    transaction holding id 41 could commit after a scanner had read 42 and moved its cursor
    past 41 for ever. The lock (which readers ignore) makes writers of the feed commit in id
    order. SQLite has one writer at a time anyway.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("LOCK TABLE card_revocations IN SHARE ROW EXCLUSIVE MODE"))
    session.add(
        CardRevocation(
            card_id=card.id,
            card_number=card.number,
            min_version=min_version if min_version is not None else card.version,
            revoked=revoked,
            reason=reason,
        )
    )
    await session.flush()


def _institution(card: Card) -> uuid.UUID | None:
    return card.issued_by_institution_id


async def issue(
    session: AsyncSession,
    *,
    membership_id: uuid.UUID,
    member_id: uuid.UUID,
    actor: Actor,
    now: datetime,
    institution_id: uuid.UUID | None = None,
) -> Card:
    """A permanent card for a holder of an active membership; one live card per holder."""
    membership = await _membership_for_issue(
        session, membership_id=membership_id, member_id=member_id
    )
    if await _live_card(session, member_id=member_id, membership_id=membership.id):
        raise CardAlreadyIssued()
    card = await _insert_card(
        session,
        Card(
            id=uuid.uuid4(),
            member_id=member_id,
            membership_id=membership.id,
            status=CardStatus.ACTIVE,
            version=1,
            issued_at=now,
            issued_by_institution_id=institution_id,
        ),
    )
    await audit.record(
        session,
        actor=actor,
        action="card.issue",
        entity_type="card",
        entity_id=card.id,
        institution_id=institution_id,
        changes={"number": card.number, "status": card.status.value},
    )
    return await get_card(session, card_id=card.id)


async def issue_temporary(
    session: AsyncSession,
    *,
    membership_id: uuid.UUID,
    member_id: uuid.UUID,
    institution_id: uuid.UUID,
    actor: Actor,
    now: datetime,
) -> Card:
    """A desk card for a visitor who has not registered fully (no photo yet).

    It admits for 31 days or 5 counted visits, whichever comes first; completing the
    registration replaces it with the permanent card.
    """
    membership = await _membership_for_issue(
        session, membership_id=membership_id, member_id=member_id
    )
    if await _live_card(session, member_id=member_id, membership_id=membership.id):
        raise CardAlreadyIssued()
    card = await _insert_card(
        session,
        Card(
            id=uuid.uuid4(),
            member_id=member_id,
            membership_id=membership.id,
            status=CardStatus.TEMPORARY,
            version=1,
            issued_at=now,
            expires_at=now + timedelta(days=TEMPORARY_DAYS),
            visit_limit=TEMPORARY_VISITS,
            issued_by_institution_id=institution_id,
        ),
    )
    await audit.record(
        session,
        actor=actor,
        action="card.issue_temporary",
        entity_type="card",
        entity_id=card.id,
        institution_id=institution_id,
        changes={"number": card.number, "expires_at": now.isoformat()},
    )
    return await get_card(session, card_id=card.id)


async def complete_registration(
    session: AsyncSession, *, card_id: uuid.UUID, actor: Actor, now: datetime
) -> Card:
    """Swap a temporary card for the permanent one once the holder's photo is on file.

    The temporary card is revoked in the same transaction as the permanent one is issued, so
    there is never a moment with two live cards or with none.
    """
    temporary = await get_card(session, card_id=card_id)
    if temporary.status != CardStatus.TEMPORARY:
        raise CardStateConflict(
            "Only a temporary card is completed.", card_status=temporary.status.value
        )
    if temporary.member.photo_path is None:
        raise PhotoRequired()
    if temporary.membership is None or temporary.membership.status not in _ISSUABLE:
        raise MembershipNotActive()
    permanent = await _replace(
        session,
        old=temporary,
        reason="registered",
        new_status=CardStatus.ACTIVE,
        now=now,
    )
    await audit.record(
        session,
        actor=actor,
        action="card.complete_registration",
        entity_type="card",
        entity_id=permanent.id,
        institution_id=_institution(temporary),
        changes={"replaces": str(temporary.id), "number": permanent.number},
    )
    return await get_card(session, card_id=permanent.id)


async def _replace(
    session: AsyncSession, *, old: Card, reason: str, new_status: CardStatus, now: datetime
) -> Card:
    new_id = uuid.uuid4()
    # The old card stops being live before the new one is inserted: the partial unique index
    # allows one live card per holder and membership at every moment.
    old.status = CardStatus.REPLACED
    old.status_reason = reason
    old.status_changed_at = now
    await session.flush()
    temporary = new_status == CardStatus.TEMPORARY
    new = await _insert_card(
        session,
        Card(
            id=new_id,
            member_id=old.member_id,
            membership_id=old.membership_id,
            status=new_status,
            version=old.version + 1,
            issued_at=now,
            expires_at=old.expires_at if temporary else None,
            visit_limit=old.visit_limit if temporary else None,
            issued_by_institution_id=old.issued_by_institution_id,
        ),
    )
    old.replaced_by_id = new.id
    await _append_feed(session, card=old, revoked=True, reason=reason)
    return new


async def block(
    session: AsyncSession, *, card_id: uuid.UUID, reason: str, actor: Actor, now: datetime
) -> Card:
    """Refuse the card at every door, offline scanners included once they sync."""
    card = await get_card(session, card_id=card_id)
    if card.status == CardStatus.BLOCKED:
        return card
    if not card.is_live:
        raise CardStateConflict("Only a live card can be blocked.", card_status=card.status.value)
    before = card.status
    card.status = CardStatus.BLOCKED
    card.status_reason = reason
    card.status_changed_at = now
    await _append_feed(session, card=card, revoked=True, reason="blocked")
    await audit.record(
        session,
        actor=actor,
        action="card.block",
        entity_type="card",
        entity_id=card.id,
        institution_id=_institution(card),
        changes={"status": [before.value, card.status.value], "reason": reason},
    )
    return card


async def unblock(
    session: AsyncSession, *, card_id: uuid.UUID, actor: Actor, now: datetime
) -> Card:
    card = await get_card(session, card_id=card_id)
    if card.status != CardStatus.BLOCKED:
        raise CardStateConflict(
            "Only a blocked card can be unblocked.", card_status=card.status.value
        )
    _ensure_not_erased(card.member)
    if card.membership is None or card.membership.status not in _ISSUABLE:
        raise MembershipNotActive()
    if card.membership_id is not None and await _live_card(
        session, member_id=card.member_id, membership_id=card.membership_id
    ):
        raise CardAlreadyIssued("A replacement was issued while this card was blocked.")
    # A desk card keeps its limits: unblocking must not turn it into a permanent one.
    card.status = CardStatus.TEMPORARY if card.visit_limit is not None else CardStatus.ACTIVE
    card.status_reason = None
    card.status_changed_at = now
    await session.flush()
    await _append_feed(session, card=card, revoked=False, reason="unblocked")
    await audit.record(
        session,
        actor=actor,
        action="card.unblock",
        entity_type="card",
        entity_id=card.id,
        institution_id=_institution(card),
        changes={"status": ["blocked", card.status.value]},
    )
    return card


async def report_lost(
    session: AsyncSession, *, card_id: uuid.UUID, actor: Actor, now: datetime
) -> Card:
    """Revoke the lost card at once and issue a replacement with a new number.

    A new number rather than a new version: whoever finds the card also has its printed number.
    A blocked card can be reported lost too (it was blocked while the holder searched for it).
    """
    card = await get_card(session, card_id=card_id)
    if not card.is_live and card.status != CardStatus.BLOCKED:
        raise CardStateConflict("This card is no longer in use.", card_status=card.status.value)
    _ensure_not_erased(card.member)
    if card.membership is None or card.membership.status not in _ISSUABLE:
        raise MembershipNotActive()
    new_status = CardStatus.TEMPORARY if card.visit_limit is not None else CardStatus.ACTIVE
    replacement = await _replace(session, old=card, reason="lost", new_status=new_status, now=now)
    await audit.record(
        session,
        actor=actor,
        action="card.report_lost",
        entity_type="card",
        entity_id=card.id,
        institution_id=_institution(card),
        changes={"replaced_by": str(replacement.id), "number": replacement.number},
    )
    return await get_card(session, card_id=replacement.id)


async def reissue(
    session: AsyncSession, *, card_id: uuid.UUID, actor: Actor, now: datetime
) -> Card:
    """Same number, next version: a new print or phone code; every older code is refused."""
    card = await get_card(session, card_id=card_id)
    if not card.is_live:
        raise CardStateConflict("Only a live card is reissued.", card_status=card.status.value)
    if card.version >= 0xFFFF:
        raise CardStateConflict("This card has been reissued too often; replace it.")
    card.version += 1
    card.status_changed_at = now
    await session.flush()
    await _append_feed(session, card=card, revoked=False, reason="reissued")
    await audit.record(
        session,
        actor=actor,
        action="card.reissue",
        entity_type="card",
        entity_id=card.id,
        institution_id=_institution(card),
        changes={"version": [card.version - 1, card.version]},
    )
    return card


async def expire_with_membership(
    session: AsyncSession, *, membership_id: uuid.UUID, now: datetime, actor: Actor = audit.SYSTEM
) -> list[Card]:
    """End every live or blocked card of a membership that ended (expired, refunded, cancelled).

    The feed entry matters when the membership ends before the date printed in the code.
    """
    cards = list(
        await session.scalars(
            select(Card).where(
                Card.membership_id == membership_id,
                Card.status.in_((*LIVE_CARD_STATUSES, CardStatus.BLOCKED)),
            )
        )
    )
    for card in cards:
        before = card.status
        card.status = CardStatus.EXPIRED
        card.status_reason = "membership ended"
        card.status_changed_at = now
        await _append_feed(session, card=card, revoked=True, reason="expired")
        await audit.record(
            session,
            actor=actor,
            action="card.expire",
            entity_type="card",
            entity_id=card.id,
            institution_id=_institution(card),
            changes={"status": [before.value, "expired"]},
        )
    return cards


async def expire_temporary_cards(session: AsyncSession, *, now: datetime) -> list[Card]:
    """The daily sweep: temporary cards past their 31 days stop being live (frees the holder)."""
    cards = list(
        await session.scalars(
            select(Card)
            .where(Card.status == CardStatus.TEMPORARY, Card.expires_at < now)
            # Two job runners never expire (and feed) the same card twice on PostgreSQL.
            .with_for_update(skip_locked=True)
        )
    )
    for card in cards:
        card.status = CardStatus.EXPIRED
        card.status_reason = "temporary card ran out"
        card.status_changed_at = now
        await _append_feed(session, card=card, revoked=True, reason="expired")
        await audit.record(
            session,
            actor=audit.SYSTEM,
            action="card.expire",
            entity_type="card",
            entity_id=card.id,
            institution_id=_institution(card),
            changes={"status": ["temporary", "expired"]},
        )
    return cards


def valid_until(card: Card) -> date:
    """The last day the card's code admits: the membership's paid terms, capped for desk cards.

    Terms run up to, not including, `ends_on`; a code carries the last included day.
    """
    membership = card.membership
    if membership is None:
        raise CardStateConflict("This card belongs to no membership; it has no code.")
    ends = [term.ends_on for term in membership.terms if term.status == TermStatus.ACTIVE]
    return last_valid_day(ends, card.expires_at)


def last_valid_day(term_ends: Sequence[date], expires_at: datetime | None) -> date:
    """`valid_until` from plain values: the paid terms' end dates and a desk card's expiry.

    The door reads these columns without loading the card's objects, and must show the same day.
    """
    if not term_ends:
        raise MembershipNotActive("The membership has no paid term.")
    last_day = max(term_ends) - timedelta(days=1)
    if expires_at is not None:
        last_day = min(last_day, expires_at.date())
    return last_day


def code_for(card: Card, *, programme: str) -> codes.CardCode:
    """The facts a live card's QR code carries; blocked or replaced cards get no code."""
    if not card.is_live:
        raise CardStateConflict("Only a live card has a code.", card_status=card.status.value)
    last_day = valid_until(card)
    assert card.membership is not None  # valid_until refuses a card without a membership
    return codes.CardCode(
        programme=programme,
        card_number=card.number,
        card_version=card.version,
        valid_until=last_day,
        product_code=card.membership.product.code,
        temporary=card.status == CardStatus.TEMPORARY,
    )


async def revocation_feed(session: AsyncSession, *, since: int, limit: int) -> FeedPage:
    """The entries after the scanner's cursor, oldest first; `has_more` asks it to call again."""
    rows = list(
        await session.scalars(
            select(CardRevocation)
            .where(CardRevocation.id > since)
            .order_by(CardRevocation.id)
            .limit(limit + 1)
        )
    )
    entries = rows[:limit]
    cursor = entries[-1].id if entries else since
    return FeedPage(entries=entries, cursor=cursor, has_more=len(rows) > limit)


async def ensure_issued_by(
    session: AsyncSession, *, member_id: uuid.UUID, institution_id: uuid.UUID | None
) -> None:
    """Institution staff may act on a holder only through a card their institution issued."""
    found = await session.scalar(
        select(Card.id)
        .where(Card.member_id == member_id, Card.issued_by_institution_id == institution_id)
        .limit(1)
    )
    if institution_id is None or found is None:
        raise PermissionDenied("This holder has no card from your institution.")

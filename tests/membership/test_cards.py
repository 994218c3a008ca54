"""Card lifecycle: one live card per holder, and every revocation reaches the scanners' feed."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership import card_numbers, cards, codes
from membership.audit import Actor
from membership.clock import utcnow
from membership.db import create_sessionmaker
from membership.models import (
    AuditEntry,
    Card,
    CardRevocation,
    CardStatus,
    Member,
    Membership,
    MembershipStatus,
)
from tests.factories import (
    create_institution,
    create_member,
    create_membership,
    create_product,
)

ACTOR = Actor(label="desk@example.org")
KEY = Ed25519PrivateKey.generate()
KEYS = {codes.key_id_for(KEY.public_key()): KEY.public_key()}


async def _holder(
    session: AsyncSession, *, status: MembershipStatus = MembershipStatus.ACTIVE
) -> tuple[Member, Membership]:
    product = await create_product(session)
    member = await create_member(session)
    membership = await create_membership(
        session,
        product=product,
        holders=[member],
        starts_on=date.today() - timedelta(days=10),
        ends_on=date.today() + timedelta(days=355),
        status=status,
    )
    return member, membership


async def _issue(session: AsyncSession) -> Card:
    member, membership = await _holder(session)
    return await cards.issue(
        session, membership_id=membership.id, member_id=member.id, actor=ACTOR, now=utcnow()
    )


async def _count(session: AsyncSession, model: type[object], *where: object) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _scanner_view(session: AsyncSession) -> dict[str, codes.RevocationStatus]:
    """What a scanner holds after syncing the whole feed: the latest entry per card number."""
    page = await cards.revocation_feed(session, since=0, limit=1000)
    return {
        entry.card_number: codes.RevocationStatus(
            min_version=entry.min_version, revoked=entry.revoked, reason=entry.reason
        )
        for entry in page.entries
    }


async def _scan(session: AsyncSession, text: str) -> codes.Reason | None:
    return codes.verify(
        text,
        keys=KEYS,
        programme="MK",
        today=date.today(),
        revocations=await _scanner_view(session),
    ).reason


def _code(card: Card) -> str:
    return codes.encode(cards.code_for(card, programme="MK"), private_key=KEY)


class TestIssue:
    async def test_issue_gives_an_active_card_with_a_valid_number_and_an_audit_row(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        assert card.status == CardStatus.ACTIVE
        assert card.version == 1
        assert card_numbers.is_valid(card.number)
        assert await _count(session, AuditEntry, AuditEntry.action == "card.issue") == 1
        assert await _scan(session, _code(card)) is None

    async def test_the_code_is_valid_until_the_day_before_the_term_ends(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        assert cards.valid_until(card) == date.today() + timedelta(days=354)

    async def test_a_second_live_card_is_refused(self, session: AsyncSession) -> None:
        card = await _issue(session)
        with pytest.raises(cards.CardAlreadyIssued):
            await cards.issue(
                session,
                membership_id=card.membership_id,  # type: ignore[arg-type]
                member_id=card.member_id,
                actor=ACTOR,
                now=utcnow(),
            )
        assert await _count(session, Card) == 1

    async def test_only_holders_of_active_memberships_get_cards(
        self, session: AsyncSession
    ) -> None:
        member, pending = await _holder(session, status=MembershipStatus.PENDING_PAYMENT)
        stranger = await create_member(session)
        _, active = await _holder(session)
        with pytest.raises(cards.MembershipNotActive):
            await cards.issue(
                session, membership_id=pending.id, member_id=member.id, actor=ACTOR, now=utcnow()
            )
        with pytest.raises(cards.NotAHolder):
            await cards.issue(
                session, membership_id=active.id, member_id=stranger.id, actor=ACTOR, now=utcnow()
            )
        assert await _count(session, Card) == 0
        assert await _count(session, AuditEntry) == 0

    async def test_two_desks_issuing_at_once_give_one_card(
        self, engine: AsyncEngine, session: AsyncSession
    ) -> None:
        member, membership = await _holder(session)
        await session.commit()
        sessionmaker = create_sessionmaker(engine)

        async def desk() -> str:
            async with sessionmaker() as own:
                try:
                    await cards.issue(
                        own,
                        membership_id=membership.id,
                        member_id=member.id,
                        actor=ACTOR,
                        now=utcnow(),
                    )
                    await own.commit()
                except cards.CardAlreadyIssued:
                    return "refused"
                return "issued"

        results = await asyncio.gather(*(desk() for _ in range(4)))
        assert sorted(results) == ["issued", "refused", "refused", "refused"]
        assert await _count(session, Card) == 1


class TestLookup:
    async def test_a_typed_number_with_spaces_and_dashes_is_found(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        typed = f"{card.number[:4]} {card.number[4:8]}-{card.number[8:]}"
        assert (await cards.find_by_number(session, number=typed)).id == card.id

    async def test_a_mistyped_number_is_refused_before_any_lookup(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        wrong = card.number[:-1] + str((int(card.number[-1]) + 1) % 10)
        with pytest.raises(card_numbers.InvalidCardNumber):
            await cards.find_by_number(session, number=wrong)

    async def test_an_unknown_valid_number_is_not_found(self, session: AsyncSession) -> None:
        with pytest.raises(cards.CardNotFound):
            await cards.find_by_number(session, number="412345678905")


class TestBlock:
    async def test_block_revokes_at_once_and_unblock_restores(self, session: AsyncSession) -> None:
        card = await _issue(session)
        text = _code(card)
        blocked = await cards.block(
            session, card_id=card.id, reason="shared with a friend", actor=ACTOR, now=utcnow()
        )
        assert blocked.status == CardStatus.BLOCKED
        assert blocked.status_reason == "shared with a friend"
        assert await _scan(session, text) == codes.Reason.REVOKED
        await cards.unblock(session, card_id=card.id, actor=ACTOR, now=utcnow())
        assert await _scan(session, text) is None
        actions = await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))
        assert list(actions) == ["card.issue", "card.block", "card.unblock"]

    async def test_blocking_twice_adds_nothing(self, session: AsyncSession) -> None:
        card = await _issue(session)
        for _ in range(2):
            await cards.block(session, card_id=card.id, reason="x", actor=ACTOR, now=utcnow())
        assert await _count(session, CardRevocation) == 1

    async def test_a_card_that_is_not_blocked_cannot_be_unblocked(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        with pytest.raises(cards.CardStateConflict):
            await cards.unblock(session, card_id=card.id, actor=ACTOR, now=utcnow())
        assert await _count(session, CardRevocation) == 0

    async def test_a_blocked_card_has_no_code(self, session: AsyncSession) -> None:
        card = await _issue(session)
        await cards.block(session, card_id=card.id, reason="x", actor=ACTOR, now=utcnow())
        with pytest.raises(cards.CardStateConflict):
            cards.code_for(card, programme="MK")


class TestLostAndReissued:
    async def test_a_lost_card_is_replaced_by_a_new_number_and_revoked_at_once(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        old_code = _code(card)
        replacement = await cards.report_lost(session, card_id=card.id, actor=ACTOR, now=utcnow())
        old = await cards.get_card(session, card_id=card.id)
        assert old.status == CardStatus.REPLACED
        assert old.replaced_by_id == replacement.id
        assert replacement.status == CardStatus.ACTIVE
        assert replacement.number != card.number
        assert replacement.version == 2
        assert await _scan(session, old_code) == codes.Reason.REVOKED
        assert await _scan(session, _code(replacement)) is None

    async def test_a_replaced_card_cannot_be_reported_lost_again(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        await cards.report_lost(session, card_id=card.id, actor=ACTOR, now=utcnow())
        with pytest.raises(cards.CardStateConflict):
            await cards.report_lost(session, card_id=card.id, actor=ACTOR, now=utcnow())
        assert await _count(session, Card) == 2

    async def test_reissue_keeps_the_number_and_refuses_the_old_version(
        self, session: AsyncSession
    ) -> None:
        card = await _issue(session)
        old_code = _code(card)
        reissued = await cards.reissue(session, card_id=card.id, actor=ACTOR, now=utcnow())
        assert reissued.number == card.number
        assert reissued.version == 2
        assert await _scan(session, old_code) == codes.Reason.OLD_VERSION
        assert await _scan(session, _code(reissued)) is None


class TestTemporaryCards:
    async def _temporary(self, session: AsyncSession) -> Card:
        member, membership = await _holder(session)
        institution = await create_institution(session)
        return await cards.issue_temporary(
            session,
            membership_id=membership.id,
            member_id=member.id,
            institution_id=institution.id,
            actor=ACTOR,
            now=utcnow(),
        )

    async def test_a_desk_card_runs_31_days_or_5_visits(self, session: AsyncSession) -> None:
        card = await self._temporary(session)
        assert card.status == CardStatus.TEMPORARY
        assert card.visit_limit == 5
        assert cards.valid_until(card) == (utcnow() + timedelta(days=31)).date()
        assert cards.code_for(card, programme="MK").temporary

    async def test_registration_without_a_photo_changes_nothing(
        self, session: AsyncSession
    ) -> None:
        card = await self._temporary(session)
        with pytest.raises(cards.PhotoRequired):
            await cards.complete_registration(session, card_id=card.id, actor=ACTOR, now=utcnow())
        assert (await cards.get_card(session, card_id=card.id)).status == CardStatus.TEMPORARY
        assert await _count(session, Card) == 1

    async def test_registration_with_a_photo_swaps_in_the_permanent_card(
        self, session: AsyncSession
    ) -> None:
        card = await self._temporary(session)
        temporary_code = _code(card)
        card.member.photo_path = "ab/cd.jpg"
        permanent = await cards.complete_registration(
            session, card_id=card.id, actor=ACTOR, now=utcnow()
        )
        assert permanent.status == CardStatus.ACTIVE
        assert permanent.visit_limit is None
        assert permanent.expires_at is None
        assert (await cards.get_card(session, card_id=card.id)).status == CardStatus.REPLACED
        assert await _scan(session, temporary_code) == codes.Reason.REVOKED
        assert cards.valid_until(permanent) == date.today() + timedelta(days=354)

    async def test_the_daily_sweep_expires_desk_cards_past_31_days(
        self, session: AsyncSession
    ) -> None:
        card = await self._temporary(session)
        assert await cards.expire_temporary_cards(session, now=utcnow()) == []
        expired = await cards.expire_temporary_cards(session, now=utcnow() + timedelta(days=32))
        assert [c.id for c in expired] == [card.id]
        assert card.status == CardStatus.EXPIRED


class TestExpiry:
    async def test_cards_end_with_their_membership(self, session: AsyncSession) -> None:
        card = await _issue(session)
        text = _code(card)
        assert card.membership_id is not None
        ended = await cards.expire_with_membership(
            session, membership_id=card.membership_id, now=utcnow()
        )
        assert [c.id for c in ended] == [card.id]
        assert card.status == CardStatus.EXPIRED
        assert await _scan(session, text) == codes.Reason.REVOKED


class TestFeed:
    async def test_the_feed_pages_by_cursor(self, session: AsyncSession) -> None:
        numbers = []
        for _ in range(3):
            card = await _issue(session)
            await cards.block(session, card_id=card.id, reason="x", actor=ACTOR, now=utcnow())
            numbers.append(card.number)
        first = await cards.revocation_feed(session, since=0, limit=2)
        assert [e.card_number for e in first.entries] == numbers[:2]
        assert first.has_more
        second = await cards.revocation_feed(session, since=first.cursor, limit=2)
        assert [e.card_number for e in second.entries] == numbers[2:]
        assert not second.has_more
        empty = await cards.revocation_feed(session, since=second.cursor, limit=2)
        assert empty.entries == []
        assert empty.cursor == second.cursor

    async def test_a_second_writer_waits_so_feed_ids_commit_in_order(
        self, engine: AsyncEngine, session: AsyncSession
    ) -> None:
        """A scanner that read id N+1 must never later miss an id N committed after it."""
        first, second = await _issue(session), await _issue(session)
        await session.commit()
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as one, sessionmaker() as two:
            await cards.block(one, card_id=first.id, reason="x", actor=ACTOR, now=utcnow())
            waiting = asyncio.create_task(
                cards.block(two, card_id=second.id, reason="x", actor=ACTOR, now=utcnow())
            )
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await one.commit()
            await waiting
            await two.commit()
        page = await cards.revocation_feed(session, since=0, limit=10)
        assert [entry.card_number for entry in page.entries] == [first.number, second.number]

"""Erasing a member: the person's data goes, their cards stop, the books and the visits stay."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership import cards, erasure, members, memberships, outbox, photos
from membership.audit import Actor
from membership.clock import utcnow
from membership.db import create_sessionmaker
from membership.models import (
    AuditEntry,
    Card,
    CardRevocation,
    CardStatus,
    Checkin,
    Member,
    MemberSession,
    Membership,
    MembershipTerm,
    MemberSignInLink,
    OutboxEmail,
    Payment,
    PaymentKind,
    PaymentStatus,
    Venue,
)
from membership.payments import provider_from_settings
from membership.payments.provider import PaymentProvider
from membership.settings import Settings
from tests.factories import (
    create_card,
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_pending_purchase,
    create_product,
    create_venue,
)
from tests.visitor_rows import brute_visitor_rows, visitor_rows

OPERATOR = Actor(label="operator@example.org", staff_user_id=None)
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)
# Everything that identifies the person in `World`; none of it may survive the erasure.
PERSONAL = ("Joke", "Zwart-Erasmus", "joke.zwart@example.org", "1979-04-02", "2511 CV")


@dataclass
class World:
    member: Member
    partner: Member
    own: Membership
    shared: Membership
    own_card: Card
    desk_card: Card
    partner_card: Card
    photo: Path
    venue: Venue


@pytest.fixture
async def provider(engine: AsyncEngine, settings: Settings) -> PaymentProvider:
    return provider_from_settings(settings, create_sessionmaker(engine))


async def _world(session: AsyncSession, settings: Settings) -> World:
    """A member with a photo, an auto-renewing card of their own and a duo card shared with a
    partner, visits with both cards, a live sign-in and mail both sent and waiting."""
    member = await create_member(
        session,
        first_name="Joke",
        last_name="Zwart-Erasmus",
        email="joke.zwart@example.org",
        birth_date=date(1979, 4, 2),
        postal_code="2511 CV",
        share_contact=True,
        marketing_opt_in=True,
    )
    partner = await create_member(session, email="partner@example.org")
    member.photo_path = photos.store(settings.photo_dir, b"\xff\xd8 a passport photo")
    product = await create_product(session)
    duo = await create_product(session, max_holders=2)
    own = await create_membership(session, product=product, holders=[member], auto_renew=True)
    own.provider_subscription_id = "sub_own"
    shared = await create_membership(session, product=duo, holders=[member, partner])
    own_card = await create_card(session, member=member, membership=own)
    desk_card = await create_card(
        session, member=member, membership=shared, status=CardStatus.TEMPORARY
    )
    partner_card = await create_card(session, member=partner, membership=shared)
    institution = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    for day, card in enumerate([own_card, desk_card, own_card]):
        await create_checkin(
            session,
            venue=venue,
            member=member,
            card=card,
            scanned_at=datetime(2026, 10, 1 + day, 11, tzinfo=UTC),
        )
    await create_checkin(
        session,
        venue=venue,
        member=partner,
        card=partner_card,
        scanned_at=datetime(2026, 10, 1, 11, tzinfo=UTC),
    )
    for person in (member, partner):
        await members.request_sign_in(
            session, email=person.email or "", base_url="http://testserver", now=NOW
        )
    await members.redeem_sign_in(
        session,
        token=await _sign_in_link(session, member),
        ttl=timedelta(hours=12),
        now=NOW,
    )
    sent = await session.scalar(select(OutboxEmail).where(OutboxEmail.member_id == member.id))
    assert sent is not None
    sent.sent_at = NOW
    await outbox.enqueue(
        session,
        dedup_key=f"reminder:{member.id}",
        member=member,
        template="reminder",
        context={"first_name": member.first_name},
        now=NOW,
    )
    await session.commit()
    return World(
        member=member,
        partner=partner,
        own=own,
        shared=shared,
        own_card=own_card,
        desk_card=desk_card,
        partner_card=partner_card,
        photo=settings.photo_dir / (member.photo_path or ""),
        venue=venue,
    )


async def _sign_in_link(session: AsyncSession, member: Member) -> str:
    """A second sign-in link, whose raw token the test knows (the mailed one is hashed)."""
    token = f"test-token-{uuid.uuid4().hex}"
    session.add(
        MemberSignInLink(
            email=member.email,
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            expires_at=NOW + timedelta(minutes=15),
        )
    )
    await session.flush()
    return token


async def _erase(
    session: AsyncSession,
    world: World,
    provider: PaymentProvider,
    settings: Settings,
) -> erasure.Erasure:
    done = await _erase_member(session, provider, settings, member_id=world.member.id)
    await session.commit()
    return done


async def _erase_member(
    session: AsyncSession,
    provider: PaymentProvider,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    now: datetime = NOW,
) -> erasure.Erasure:
    return await erasure.erase_member(
        session,
        member_id=member_id,
        actor=OPERATOR,
        provider=provider,
        photo_dir=settings.photo_dir,
        now=now,
    )


async def _count(session: AsyncSession, model: Any, *where: Any) -> int:
    found = await session.scalar(select(func.count()).select_from(model).where(*where))
    return int(found or 0)


class TestPersonalData:
    async def test_the_member_row_keeps_nothing_of_the_person(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        assert world.photo.is_file()

        done = await _erase(session, world, provider, settings)

        assert done == erasure.Erasure(member_id=world.member.id, erased_at=NOW, erased_now=True)
        row = (
            await session.execute(
                select(Member)
                .where(Member.id == world.member.id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        assert (row.first_name, row.last_name, row.email) == ("", "", None)
        assert (row.birth_date, row.postal_code, row.photo_path) == (None, None, None)
        assert (row.marketing_opt_in, row.marketing_opt_in_at) == (False, None)
        assert (row.share_contact, row.share_contact_at) == (False, None)
        assert row.visitor_key is None
        assert row.erased_at == NOW
        assert not world.photo.exists()

    async def test_sign_ins_and_mail_to_the_member_are_gone_and_the_partners_stay(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        assert await _count(session, OutboxEmail, OutboxEmail.member_id == world.member.id) == 2
        assert await _count(session, MemberSession, MemberSession.email == world.member.email) == 1

        await _erase(session, world, provider, settings)

        assert await _count(session, OutboxEmail, OutboxEmail.member_id == world.member.id) == 0
        assert await _count(session, OutboxEmail, OutboxEmail.to_address.contains("joke")) == 0
        assert await _count(session, MemberSignInLink, MemberSignInLink.email == PERSONAL[2]) == 0
        assert await _count(session, MemberSession, MemberSession.email == PERSONAL[2]) == 0
        partner = world.partner.email
        assert await _count(session, OutboxEmail, OutboxEmail.member_id == world.partner.id) == 1
        assert await _count(session, MemberSignInLink, MemberSignInLink.email == partner) == 1
        assert await members.language_of(session, email=PERSONAL[2]) is None

    async def test_the_audit_row_counts_and_names_nobody(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        before = await _count(session, AuditEntry)

        await _erase(session, world, provider, settings)

        entry = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "member.erased"))
        ).scalar_one()
        assert (entry.actor, entry.entity_type, entry.entity_id) == (
            OPERATOR.label,
            "member",
            str(world.member.id),
        )
        assert entry.changes == {
            "cards_blocked": 2,
            "checkins_unlinked": 3,
            "mails_withdrawn": 2,
            "sign_ins_ended": 3,
            "auto_renew_stopped": 1,
            "photo_deleted": True,
        }
        written = (
            await session.scalars(select(AuditEntry).order_by(AuditEntry.id).offset(before))
        ).all()
        # Two card blocks, auto-renew off, and the erasure itself.
        assert [e.action for e in written] == [
            "card.block",
            "card.block",
            "membership.auto_renew_off",
            "member.erased",
        ]
        text = json.dumps([(e.actor, e.entity_id, e.changes) for e in written])
        assert not [value for value in PERSONAL if value in text]


class TestCardsAndMoney:
    async def test_live_cards_are_blocked_and_fed_to_the_scanners(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)

        await _erase(session, world, provider, settings)

        rows = (
            await session.execute(
                select(Card.id, Card.status, Card.status_reason).order_by(Card.number)
            )
        ).all()
        status = {card_id: (state, reason) for card_id, state, reason in rows}
        assert status[world.own_card.id] == (CardStatus.BLOCKED, "erased")
        assert status[world.desk_card.id] == (CardStatus.BLOCKED, "erased")
        assert status[world.partner_card.id] == (CardStatus.ACTIVE, None)
        feed = (await cards.revocation_feed(session, since=0, limit=10)).entries
        assert sorted((e.card_number, e.revoked) for e in feed) == sorted(
            [(world.own_card.number, True), (world.desk_card.number, True)]
        )

    async def test_memberships_and_payments_stay_and_auto_renew_is_off(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        terms = await _count(session, MembershipTerm)

        await _erase(session, world, provider, settings)

        rows = dict(
            (
                await session.execute(
                    select(Membership.id, Membership.auto_renew).execution_options(
                        populate_existing=True
                    )
                )
            ).all()
        )
        assert rows == {world.own.id: False, world.shared.id: False}
        assert await _count(session, MembershipTerm) == terms
        off = await session.scalar(
            select(AuditEntry.actor).where(AuditEntry.action == "membership.auto_renew_off")
        )
        assert off == OPERATOR.label

    async def test_an_erased_holder_gets_no_card_back(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        await _erase(session, world, provider, settings)

        with pytest.raises(cards.HolderErased):
            await cards.unblock(session, card_id=world.own_card.id, actor=OPERATOR, now=NOW)
        # A blocked card may be reported lost, which issues a live replacement.
        with pytest.raises(cards.HolderErased):
            await cards.report_lost(session, card_id=world.desk_card.id, actor=OPERATOR, now=NOW)
        with pytest.raises(cards.HolderErased):
            await cards.issue(
                session,
                membership_id=world.own.id,
                member_id=world.member.id,
                actor=OPERATOR,
                now=NOW,
            )
        await session.commit()
        assert await _count(session, Card, Card.member_id == world.member.id) == 2
        assert await _count(session, CardRevocation) == 2

    async def test_a_renewal_paid_for_a_shared_card_issues_none_to_the_erased_holder(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        product = await create_product(session, max_holders=2)
        people = [await create_member(session), await create_member(session)]
        purchase = await create_pending_purchase(session, product=product, holders=people)
        await session.commit()
        await memberships.apply_payment(
            session,
            payment_id=purchase.id,
            provider_payment_id="pi_purchase",
            subscription_id=None,
            settings=settings,
            now=utcnow(),
        )
        await session.commit()
        await _erase_member(session, provider, settings, member_id=people[0].id, now=utcnow())
        renewal = Payment(
            reference="MK-RENEWAL1",
            membership_id=purchase.membership_id,
            kind=PaymentKind.RENEWAL,
            status=PaymentStatus.PENDING,
            provider="local",
            amount_minor=product.price_minor,
            currency="EUR",
        )
        session.add(renewal)
        await session.commit()

        await memberships.apply_payment(
            session,
            payment_id=renewal.id,
            provider_payment_id="pi_renewal",
            subscription_id=None,
            settings=settings,
            now=utcnow(),
        )
        await session.commit()

        live = (
            await session.execute(
                select(Card.member_id, Card.status).where(Card.status == CardStatus.ACTIVE)
            )
        ).all()
        assert live == [(people[1].id, CardStatus.ACTIVE)]
        renewed_mail = await session.scalars(
            select(OutboxEmail.member_id).where(OutboxEmail.template == "renewed")
        )
        assert list(renewed_mail) == [people[1].id]


class TestVisits:
    async def test_visits_keep_their_key_and_lose_every_link(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        key = world.member.visitor_key
        before = (
            await session.execute(
                select(Checkin.id, Checkin.visitor_key, Checkin.local_date, Checkin.counted)
                .where(Checkin.visitor_key == key)
                .order_by(Checkin.id)
            )
        ).all()
        assert len(before) == 3

        await _erase(session, world, provider, settings)

        rows = (
            await session.execute(
                select(
                    Checkin.id,
                    Checkin.visitor_key,
                    Checkin.local_date,
                    Checkin.counted,
                    Checkin.member_id,
                    Checkin.card_id,
                )
                .where(Checkin.visitor_key == key)
                .order_by(Checkin.id)
            )
        ).all()
        assert [tuple(row[:4]) for row in rows] == [tuple(row) for row in before]
        assert {(row.member_id, row.card_id) for row in rows} == {(None, None)}
        partner = await session.scalar(
            select(Checkin.card_id).where(Checkin.member_id == world.partner.id)
        )
        assert partner == world.partner_card.id
        assert await visitor_rows(session) == await brute_visitor_rows(session)
        linked = {row[5] for row in (await visitor_rows(session)).values()}
        assert linked == {None, world.partner.id}


class TestIdempotence:
    async def test_erasing_again_changes_nothing_and_says_so(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        world = await _world(session, settings)
        await _erase(session, world, provider, settings)
        tables = (AuditEntry, CardRevocation, Checkin, OutboxEmail, MemberSession)
        counts = [await _count(session, model) for model in tables]

        again = await _erase_member(
            session, provider, settings, member_id=world.member.id, now=NOW + timedelta(days=1)
        )
        await session.commit()

        assert again == erasure.Erasure(member_id=world.member.id, erased_at=NOW, erased_now=False)
        assert [await _count(session, model) for model in tables] == counts

    async def test_an_unknown_member_is_not_found(
        self, session: AsyncSession, settings: Settings, provider: PaymentProvider
    ) -> None:
        with pytest.raises(erasure.MemberNotFound):
            await _erase_member(session, provider, settings, member_id=uuid.uuid4())

    async def test_two_erasures_at_once_apply_once(
        self, engine: AsyncEngine, settings: Settings, provider: PaymentProvider, backend: str
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: there is no race to lose")
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            world = await _world(session, settings)

        async def erase() -> bool:
            async with sessionmaker() as session:
                done = await _erase_member(
                    session, provider, settings, member_id=world.member.id, now=utcnow()
                )
                await session.commit()
                return done.erased_now

        results = await asyncio.gather(*(erase() for _ in range(4)))

        assert sorted(results) == [False, False, False, True]
        async with sessionmaker() as session:
            assert await _count(session, AuditEntry, AuditEntry.action == "member.erased") == 1
            assert await _count(session, CardRevocation) == 2

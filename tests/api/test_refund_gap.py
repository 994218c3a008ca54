"""A refunded current term with a later paid term ahead: nobody paid for the days in between.

From the refund on the cards are refused at the door, online and (through the revocation feed)
offline, until the later term starts; then the job pass admits them again without anyone
acting. A refunded later term leaves the current one alone (DESIGN.md rule 3).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership import jobs, memberships
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.db import create_sessionmaker
from membership.models import (
    Card,
    CardStatus,
    Membership,
    MembershipStatus,
    OutboxEmail,
    Payment,
    PaymentKind,
    PaymentStatus,
    TermStatus,
)
from membership.settings import Settings
from tests.api.conftest import Door
from tests.payments.conftest import paid_membership

OPERATOR = Actor(label="operator@example.org")


async def _renew(
    session: AsyncSession, settings: Settings, membership: Membership, *, now: datetime
) -> Payment:
    """A renewal paid at `now`, applied as the webhook would apply it."""
    paid_for = await session.get_one(Payment, membership.terms[0].payment_id)
    payment = Payment(
        id=uuid.uuid4(),
        reference=memberships.new_reference(settings.programme_code),
        membership_id=membership.id,
        kind=PaymentKind.RENEWAL,
        status=PaymentStatus.PENDING,
        provider=paid_for.provider,
        amount_minor=paid_for.amount_minor,
        currency=paid_for.currency,
        vat_rate_bp=paid_for.vat_rate_bp,
    )
    session.add(payment)
    await session.commit()
    applied = await memberships.apply_payment(
        session,
        payment_id=payment.id,
        provider_payment_id="pi_" + payment.reference,
        subscription_id=None,
        settings=settings,
        now=now,
    )
    await session.commit()
    return applied.payment


async def _refund_in_full(
    session: AsyncSession, settings: Settings, payment: Payment, *, now: datetime
) -> None:
    """What both the operator's refund and a dashboard `charge.refunded` book."""
    await memberships.record_refund(
        session,
        payment_id=payment.id,
        refunded_total_minor=payment.amount_minor,
        provider_refund_id="re_" + payment.reference,
        reason="withdrawn",
        actor=OPERATOR,
        timezone=settings.programme_timezone,
        now=now,
    )
    await session.commit()


async def _card(session: AsyncSession, membership: Membership) -> Card:
    card = await session.scalar(
        select(Card)
        .where(Card.membership_id == membership.id)
        .execution_options(populate_existing=True)
    )
    assert card is not None
    await session.commit()
    return card


async def _fed(door: Door, card: Card) -> tuple[bool, str]:
    """The scanners' latest word on the card: what an offline scanner decides with."""
    feed = await door.client.get("/v1/scanner/revocations?since=0", headers=door.device)
    assert feed.status_code == 200, feed.text
    entries = [e for e in feed.json()["entries"] if e["card_number"] == card.number]
    return entries[-1]["revoked"], entries[-1]["reason"]


async def test_refunded_current_term_refuses_the_card_until_the_paid_later_term_starts(
    door: Door, engine: AsyncEngine
) -> None:
    session, settings, now = door.session, door.settings, utcnow()
    # A one-month card bought 40 days ago and renewed early 35 days ago: the renewal runs
    # from about 10 days ago. The purchase is refunded 30 days ago, in the middle of its term.
    membership, purchase = await paid_membership(
        session, settings, now=now - timedelta(days=40), validity_months=1
    )
    await _renew(session, settings, membership, now=now - timedelta(days=35))
    refunded_at = now - timedelta(days=30)
    await _refund_in_full(session, settings, purchase, now=refunded_at)

    membership = await memberships.load_membership(session, membership_id=membership.id)
    await session.commit()
    assert membership.status == MembershipStatus.ACTIVE
    assert [term.status for term in membership.terms] == [TermStatus.REFUNDED, TermStatus.ACTIVE]
    renewal_starts = membership.terms[1].starts_on
    assert local_date(refunded_at, settings.programme_timezone) < renewal_starts
    card = await _card(session, membership)
    assert (card.status, card.status_reason) == (CardStatus.BLOCKED, memberships.REFUND_GAP)
    assert await _fed(door, card) == (True, "blocked")
    gap = await door.scan(card.number, at=refunded_at + timedelta(hours=1))
    assert (gap["result"], gap["reason"], gap["counted"]) == ("refused", "blocked", False)

    # A job pass during the gap changes nothing; the first one in the paid term unblocks.
    sessionmaker = create_sessionmaker(engine)
    await jobs.run_once(sessionmaker, settings=settings, now=refunded_at + timedelta(days=1))
    assert (await _card(session, membership)).status == CardStatus.BLOCKED
    await jobs.run_once(sessionmaker, settings=settings, now=now)
    card = await _card(session, membership)
    assert (card.status, card.status_reason) == (CardStatus.ACTIVE, None)
    assert await _fed(door, card) == (False, "unblocked")
    today = await door.scan(card.number)
    assert (today["result"], today["reason"], today["counted"]) == ("admitted", "ok", True)
    # A scan from a gap day uploaded late is still refused: no paid term covers that day.
    late = await door.scan(card.number, at=refunded_at + timedelta(days=2))
    assert (late["result"], late["reason"]) == ("refused", "not_yet_valid")


async def test_refunding_the_later_term_too_ends_the_membership_for_good(
    door: Door, engine: AsyncEngine
) -> None:
    session, settings, now = door.session, door.settings, utcnow()
    membership, purchase = await paid_membership(
        session, settings, now=now - timedelta(days=40), validity_months=1
    )
    renewal = await _renew(session, settings, membership, now=now - timedelta(days=35))
    await _refund_in_full(session, settings, purchase, now=now - timedelta(days=30))
    await _refund_in_full(session, settings, renewal, now=now - timedelta(days=29))

    membership = await memberships.load_membership(session, membership_id=membership.id)
    await session.commit()
    assert membership.status == MembershipStatus.REFUNDED
    await jobs.run_once(create_sessionmaker(engine), settings=settings, now=now)
    card = await _card(session, membership)
    assert card.status == CardStatus.BLOCKED
    answer = await door.scan(card.number)
    assert (answer["result"], answer["reason"]) == ("refused", "blocked")


async def test_refunded_later_term_leaves_the_current_term_admitting(door: Door) -> None:
    session, settings, now = door.session, door.settings, utcnow()
    membership, _purchase = await paid_membership(
        session, settings, now=now - timedelta(days=10), validity_months=1
    )
    renewal = await _renew(session, settings, membership, now=now - timedelta(days=5))
    await _refund_in_full(session, settings, renewal, now=now)

    membership = await memberships.load_membership(session, membership_id=membership.id)
    await session.commit()
    assert membership.status == MembershipStatus.ACTIVE
    assert [term.status for term in membership.terms] == [TermStatus.ACTIVE, TermStatus.REFUNDED]
    card = await _card(session, membership)
    assert card.status == CardStatus.ACTIVE
    answer = await door.scan(card.number)
    assert (answer["result"], answer["reason"], answer["counted"]) == ("admitted", "ok", True)


async def test_refunded_renewal_under_way_is_refused_within_the_grace_of_the_term_before(
    door: Door,
) -> None:
    """Days just after the first term would be in its grace days: the refund must still win."""
    session, settings, now = door.session, door.settings, utcnow()
    membership, _purchase = await paid_membership(
        session, settings, now=now - timedelta(days=40), validity_months=1, grace_days=14
    )
    under_way = await _renew(session, settings, membership, now=now - timedelta(days=35))
    await _renew(session, settings, membership, now=now - timedelta(days=34))
    await _refund_in_full(session, settings, under_way, now=now)

    membership = await memberships.load_membership(session, membership_id=membership.id)
    await session.commit()
    first_ends = membership.terms[0].ends_on
    assert local_date(now, settings.programme_timezone) < first_ends + timedelta(days=14)
    assert [term.status for term in membership.terms] == [
        TermStatus.ACTIVE,
        TermStatus.REFUNDED,
        TermStatus.ACTIVE,
    ]
    card = await _card(session, membership)
    answer = await door.scan(card.number)
    assert (answer["result"], answer["reason"]) == ("refused", "blocked")

    # The member sees the gap: the refunded term, the blocked card, the day it admits again.
    again_on = membership.terms[2].starts_on
    email = membership.holders[0].email
    token = await _sign_in_token(door, email)
    browser = await door.client.post(
        "/members/sign-in",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert browser.status_code == 303
    page = await door.client.get("/members/me")
    door.client.cookies.clear()
    assert "weer geldig vanaf " + again_on.strftime("%d-%m-%Y") in page.text
    assert "geblokkeerd" in page.text
    opened = await door.client.post(
        "/v1/members/sessions", json={"token": await _sign_in_token(door, email)}
    )
    bearer = {"Authorization": "Bearer " + opened.json()["access_token"]}
    mine = (await door.client.get("/v1/me/memberships", headers=bearer)).json()
    assert [(t["starts_on"], t["status"]) for t in mine[0]["terms"]][1:] == [
        (membership.terms[1].starts_on.isoformat(), "refunded"),
        (again_on.isoformat(), "active"),
    ]
    cards_seen = (await door.client.get("/v1/me/cards", headers=bearer)).json()
    assert [(c["status"], c["status_reason"]) for c in cards_seen] == [
        ("blocked", memberships.REFUND_GAP)
    ]


async def _sign_in_token(door: Door, email: str) -> str:
    asked = await door.client.post("/v1/members/sign-in", json={"email": email})
    assert asked.status_code == 202
    context = await door.session.scalar(
        select(OutboxEmail.context)
        .where(OutboxEmail.template == "magic_link")
        .order_by(OutboxEmail.id.desc())
    )
    await door.session.commit()
    assert context is not None
    return str(parse_qs(urlsplit(context["link"]).query)["token"][0])

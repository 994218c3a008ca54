"""The demo programme: the promised shape, believable traffic, and a second run adding nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from typer.testing import CliRunner

from api.cli import app as cli
from membership import card_numbers, demo
from membership.audit import Actor
from membership.db import create_engine, create_sessionmaker
from membership.door import Reason
from membership.models import (
    Base,
    Card,
    Checkin,
    CheckinResult,
    ClearingPolicy,
    Device,
    Institution,
    InstitutionTariff,
    Member,
    Membership,
    MembershipStatus,
    MembershipTerm,
    Product,
    ProductKind,
    StaffRole,
    StaffUser,
    Venue,
    membership_holders,
)
from membership.staff import create_staff_user

TODAY = date(2026, 6, 15)
SMALL = 0.1


async def _count(session: AsyncSession, entity: type[Base]) -> int:
    return await session.scalar(select(func.count()).select_from(entity)) or 0


async def _table_counts(session: AsyncSession) -> dict[str, int]:
    counts = {}
    for table in Base.metadata.sorted_tables:
        counts[table.name] = await session.scalar(select(func.count()).select_from(table)) or 0
    return counts


async def _assert_programme(session: AsyncSession) -> None:
    """What every scale promises: institutions, products, cards and the visit rules."""
    institutions = (
        await session.scalars(select(Institution).options(selectinload(Institution.venues)))
    ).all()
    assert sorted(i.code for i in institutions) == sorted(demo.DEMO_INSTITUTION_CODES)
    assert {i.timezone for i in institutions} == {"Europe/Amsterdam"}
    assert len({i.city for i in institutions}) >= 4
    assert all(1 <= len(i.venues) <= 3 for i in institutions)
    assert await _count(session, Device) == await _count(session, Venue)
    tariffed = await session.scalar(
        select(func.count(func.distinct(InstitutionTariff.institution_id)))
    )
    assert tariffed == 12
    assert await _count(session, ClearingPolicy) == 1

    products = (
        await session.scalars(select(Product).options(selectinload(Product.accepted_at)))
    ).all()
    by_kind = {p.kind: p for p in products}
    assert set(by_kind) == {
        ProductKind.ANNUAL,
        ProductKind.YOUTH,
        ProductKind.DUO,
        ProductKind.CLUB,
    }
    assert (
        by_kind[ProductKind.ANNUAL].price_minor,
        by_kind[ProductKind.ANNUAL].validity_months,
    ) == (
        7500,
        12,
    )
    assert (by_kind[ProductKind.YOUTH].price_minor, by_kind[ProductKind.YOUTH].max_age) == (
        3750,
        17,
    )
    assert by_kind[ProductKind.DUO].max_holders == 2
    club = by_kind[ProductKind.CLUB]
    assert not club.accepted_everywhere
    assert [i.code for i in club.accepted_at] == [demo.CONCERT_HALL]
    assert {(p.currency, p.vat_rate_bp) for p in products} == {("EUR", 900)}

    # Every member holds one card of one membership; numbers are valid and unique.
    cards = (await session.execute(select(Card.number, Card.member_id, Card.status))).all()
    assert len(cards) == await _count(session, Member)
    assert len({c.member_id for c in cards}) == len(cards)
    assert len({c.number for c in cards}) == len(cards)
    assert all(card_numbers.is_valid(c.number) for c in cards)

    holders = Counter(
        (
            await session.execute(
                select(Product.kind)
                .join(Membership, Membership.product_id == Product.id)
                .join(membership_holders, membership_holders.c.membership_id == Membership.id)
            )
        ).scalars()
    )
    memberships = Counter(
        (
            await session.execute(
                select(Product.kind).join(Membership, Membership.product_id == Product.id)
            )
        ).scalars()
    )
    assert holders[ProductKind.DUO] == 2 * memberships[ProductKind.DUO]
    assert await _count(session, MembershipTerm) == await _count(session, Membership)

    youth = (
        await session.execute(
            select(Member.birth_date, MembershipTerm.starts_on)
            .join(membership_holders, membership_holders.c.member_id == Member.id)
            .join(Membership, Membership.id == membership_holders.c.membership_id)
            .join(MembershipTerm, MembershipTerm.membership_id == Membership.id)
            .join(Product, Product.id == Membership.product_id)
            .where(Product.kind == ProductKind.YOUTH)
        )
    ).all()
    assert youth
    assert all(
        row.birth_date is not None and demo.age_on(row.birth_date, row.starts_on) <= 17
        for row in youth
    )

    doubly_counted = await session.scalar(
        select(func.count()).select_from(
            select(Checkin.visitor_key)
            .where(Checkin.counted)
            .group_by(Checkin.visitor_key, Checkin.institution_id, Checkin.local_date)
            .having(func.count() > 1)
            .subquery()
        )
    )
    assert doubly_counted == 0
    club_places = (
        await session.scalars(
            select(func.distinct(Institution.code))
            .join(Checkin, Checkin.institution_id == Institution.id)
            .join(Product, Product.id == Checkin.product_id)
            .where(Product.kind == ProductKind.CLUB)
        )
    ).all()
    assert club_places == [demo.CONCERT_HALL]

    checkins = (
        await session.execute(
            select(
                Checkin.scanned_at,
                Checkin.received_at,
                Checkin.local_date,
                Checkin.visitor_key,
                Member.visitor_key.label("member_key"),
                Checkin.device_id,
            ).join(Member, Member.id == Checkin.member_id)
        )
    ).all()
    assert checkins
    amsterdam = ZoneInfo("Europe/Amsterdam")
    for row in checkins:
        assert row.scanned_at.astimezone(amsterdam).date() == row.local_date
        assert row.received_at >= row.scanned_at
        assert row.visitor_key == row.member_key
        assert row.device_id is not None
    assert TODAY - timedelta(days=365) <= min(r.local_date for r in checkins)
    assert max(r.local_date for r in checkins) < TODAY

    logins = dict((await session.execute(select(StaffUser.email, StaffUser.role))).all())
    assert logins == {login.email: login.role for login in demo.DEMO_LOGINS}
    assert Counter(logins.values())[StaffRole.OPERATOR_ADMIN] == 1


# The full-size demo is checked once, on the embedded database; smaller ones run on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_default_programme_is_believable(session: AsyncSession) -> None:
    summary = await demo.seed_demo(session, today=TODAY)
    await session.commit()
    assert summary.created
    await _assert_programme(session)

    assert 300 <= await _count(session, Member) <= 500
    statuses = set((await session.scalars(select(Membership.status))).all())
    assert statuses == {
        MembershipStatus.ACTIVE,
        MembershipStatus.IN_GRACE,
        MembershipStatus.EXPIRED,
        MembershipStatus.CANCELLED,
    }
    languages = Counter((await session.scalars(select(Member.language))).all())
    assert languages["nl"] > 5 * languages["en"] > 0

    rows = (
        await session.execute(
            select(Checkin.local_date, Checkin.result, Checkin.reason, Checkin.counted)
        )
    ).all()
    assert len(rows) > 1000
    assert max(r.local_date for r in rows) - min(r.local_date for r in rows) > timedelta(days=330)
    outcomes = Counter((r.result, r.reason, r.counted) for r in rows)
    assert outcomes[(CheckinResult.REENTRY, Reason.REENTRY, False)] > 0
    assert outcomes[(CheckinResult.REFUSED, Reason.ALREADY_USED, False)] > 0
    assert outcomes[(CheckinResult.REFUSED, Reason.EXPIRED, False)] > 0
    assert outcomes[(CheckinResult.ADMITTED, Reason.OK, True)] > 0.85 * len(rows)

    # Weekends are busier than midweek days, per day.
    per_weekday = Counter(r.local_date.weekday() for r in rows if r.counted)
    assert (per_weekday[5] + per_weekday[6]) / 2 > 1.5 * (per_weekday[1] + per_weekday[2]) / 2


async def test_members_mostly_visit_their_own_city(session: AsyncSession) -> None:
    await demo.seed_demo(session, today=TODAY, scale=SMALL * 3)
    await session.commit()
    rows = (
        await session.execute(
            select(Member.postal_code, Institution.city)
            .join(Checkin, Checkin.member_id == Member.id)
            .join(Institution, Institution.id == Checkin.institution_id)
            .where(Checkin.counted)
        )
    ).all()

    def city_of(postal_code: str | None) -> str:
        digits = int((postal_code or "0")[:4])
        return next(c for c, (_s, low, high) in demo.CITIES.items() if low <= digits <= high)

    at_home = sum(city_of(r.postal_code) == r.city for r in rows)
    assert 0.5 * len(rows) < at_home < len(rows)


async def test_a_small_programme_keeps_every_rule(session: AsyncSession) -> None:
    summary = await demo.seed_demo(session, today=TODAY, scale=SMALL)
    await session.commit()
    assert summary.members == await _count(session, Member) > 0
    assert summary.checkins == await _count(session, Checkin)
    await _assert_programme(session)


async def test_seeding_twice_changes_nothing(session: AsyncSession) -> None:
    assert (await demo.seed_demo(session, today=TODAY, scale=SMALL)).created
    await session.commit()
    before = await _table_counts(session)
    again = await demo.seed_demo(session, today=TODAY + timedelta(days=3), scale=SMALL)
    await session.commit()
    assert not again.created
    assert await _table_counts(session) == before


async def test_seeding_keeps_a_staff_account_made_before(session: AsyncSession) -> None:
    admin = demo.DEMO_LOGINS[0]
    await create_staff_user(
        session,
        email=admin.email,
        name="Own admin",
        password="a-password-of-my-own",
        role=StaffRole.OPERATOR_ADMIN,
        institution_id=None,
        actor=Actor(label="test"),
    )
    await session.commit()
    await demo.seed_demo(session, today=TODAY, scale=SMALL)
    await session.commit()
    names = dict((await session.execute(select(StaffUser.email, StaffUser.name))).all())
    assert names[admin.email] == "Own admin"
    assert len(names) == len(demo.DEMO_LOGINS)


def test_seed_command_runs_once(database_url: str) -> None:
    runner = CliRunner()
    env = {"MEMBERSHIP_DATABASE_URL": database_url}
    first = runner.invoke(cli, ["seed", "--demo"], env=env)
    assert first.exit_code == 0, first.output
    counts = asyncio.run(_counts_at(database_url))
    second = runner.invoke(cli, ["seed", "--demo"], env=env)
    assert second.exit_code == 0, second.output
    assert asyncio.run(_counts_at(database_url)) == counts
    assert counts["institutions"] == 12
    assert counts["staff_users"] == len(demo.DEMO_LOGINS)


def test_seed_command_needs_the_demo_flag(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["seed"], env={"MEMBERSHIP_DATABASE_URL": database_url})
    assert result.exit_code == 2
    assert asyncio.run(_counts_at(database_url))["institutions"] == 0


async def _counts_at(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await _table_counts(session)
    finally:
        await engine.dispose()

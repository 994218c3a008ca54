"""The database itself keeps the rules that must hold whatever the code does."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import utcnow
from membership.models import CardStatus, Checkin, CheckinResult, Product, ProductKind
from tests.factories import (
    create_card,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)


async def test_card_numbers_are_unique(session: AsyncSession) -> None:
    member = await create_member(session)
    product = await create_product(session)
    membership = await create_membership(session, product=product, holders=[member])
    card = await create_card(session, member=member, membership=membership)
    await session.commit()
    other = await create_member(session)
    with pytest.raises(IntegrityError):
        await create_card(session, member=other, membership=None, number=card.number)


async def test_one_live_card_per_holder_and_membership(session: AsyncSession) -> None:
    member = await create_member(session)
    product = await create_product(session)
    membership = await create_membership(session, product=product, holders=[member])
    await create_card(session, member=member, membership=membership)
    await create_card(session, member=member, membership=membership, status=CardStatus.REPLACED)
    await session.commit()
    with pytest.raises(IntegrityError):
        await create_card(session, member=member, membership=membership)


async def test_money_cannot_be_negative(session: AsyncSession) -> None:
    session.add(
        Product(code="NEG", name="Bad", kind=ProductKind.ANNUAL, price_minor=-1, currency="EUR")
    )
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_one_counted_visit_per_visitor_institution_and_day(session: AsyncSession) -> None:
    institution = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    member = await create_member(session)
    await session.commit()

    def checkin(scan_id: str, *, counted: bool) -> Checkin:
        now = utcnow()
        return Checkin(
            client_scan_id=scan_id,
            institution_id=institution.id,
            venue_id=venue.id,
            member_id=member.id,
            visitor_key=member.visitor_key,
            scanned_at=now,
            received_at=now,
            local_date=date(2026, 3, 1),
            result=CheckinResult.ADMITTED if counted else CheckinResult.REENTRY,
            reason="ok",
            counted=counted,
        )

    session.add_all([checkin("a", counted=True), checkin("b", counted=False)])
    await session.commit()
    session.add(checkin("c", counted=True))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(Checkin)) == 2


async def test_status_columns_refuse_unknown_values(session: AsyncSession) -> None:
    member = await create_member(session)
    await create_card(session, member=member, membership=None)
    await session.commit()
    with pytest.raises(IntegrityError):
        await session.execute(text("UPDATE cards SET status = 'lost-in-space'"))

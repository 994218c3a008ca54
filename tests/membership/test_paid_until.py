"""`memberships.paid_until` is the end of the last active term, whichever way the terms change.

Every database test also checks this of its own data when it ends (tests/conftest.py); these
tests walk the changes one at a time and check the loaded objects too.
"""

from __future__ import annotations

import asyncio
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import migrations
from membership.models import Membership, MembershipTerm, TermKind, TermStatus
from tests.factories import create_member, create_membership, create_product


async def _stored(session: AsyncSession, membership: Membership) -> date | None:
    return await session.scalar(
        select(Membership.paid_until)
        .where(Membership.id == membership.id)
        .execution_options(populate_existing=False)
    )


async def test_every_change_of_the_terms_moves_it(session: AsyncSession) -> None:
    product = await create_product(session)
    membership = await create_membership(
        session,
        product=product,
        holders=[await create_member(session)],
        starts_on=date(2026, 1, 1),
        ends_on=date(2027, 1, 1),
    )
    assert membership.paid_until == date(2027, 1, 1)
    renewal = MembershipTerm(
        membership_id=membership.id,
        starts_on=date(2027, 1, 1),
        ends_on=date(2028, 1, 1),
        kind=TermKind.RENEWAL,
    )
    session.add(renewal)
    await session.flush()
    assert membership.paid_until == date(2028, 1, 1)
    renewal.status = TermStatus.REFUNDED
    await session.flush()
    assert membership.paid_until == date(2027, 1, 1)
    renewal.status = TermStatus.ACTIVE
    renewal.ends_on = date(2027, 7, 1)
    await session.flush()
    assert membership.paid_until == date(2027, 7, 1)
    await session.delete(renewal)
    await session.flush()
    assert membership.paid_until == date(2027, 1, 1)
    first = await session.scalar(
        select(MembershipTerm).where(MembershipTerm.membership_id == membership.id)
    )
    assert first is not None
    first.status = TermStatus.CANCELLED
    await session.commit()
    assert membership.paid_until is None
    assert await _stored(session, membership) is None


async def test_the_migration_fills_it_from_the_terms(
    session: AsyncSession, database_url: str
) -> None:
    product = await create_product(session)
    holders = [await create_member(session) for _ in range(3)]
    plain, renewed, refunded = [
        await create_membership(
            session,
            product=product,
            holders=[holder],
            starts_on=date(2026, 1, 1),
            ends_on=date(2027, 1, 1),
        )
        for holder in holders
    ]
    session.add_all(
        [
            MembershipTerm(
                membership_id=renewed.id,
                starts_on=date(2027, 1, 1),
                ends_on=date(2028, 1, 1),
                kind=TermKind.RENEWAL,
            ),
            MembershipTerm(
                membership_id=refunded.id,
                starts_on=date(2027, 1, 1),
                ends_on=date(2028, 1, 1),
                kind=TermKind.RENEWAL,
                status=TermStatus.REFUNDED,
            ),
        ]
    )
    await session.commit()
    await session.close()
    await asyncio.to_thread(migrations.downgrade, database_url, "0008")
    await asyncio.to_thread(migrations.upgrade, database_url)
    found = dict((await session.execute(select(Membership.id, Membership.paid_until))).all())
    assert found == {
        plain.id: date(2027, 1, 1),
        renewed.id: date(2028, 1, 1),
        refunded.id: date(2027, 1, 1),
    }

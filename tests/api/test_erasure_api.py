"""`POST /v1/admin/members/{id}/erasure`: operator admins only, idempotent, clear problems."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Card, CardStatus, Member
from tests.factories import create_card, create_member, create_membership, create_product
from tests.helpers import StaffWorld, assert_problem, create_staff_world, table_counts


async def _holder(session: AsyncSession) -> tuple[Member, Card]:
    member = await create_member(session, first_name="Joke", email="joke@example.org")
    product = await create_product(session)
    membership = await create_membership(session, product=product, holders=[member])
    card = await create_card(session, member=member, membership=membership)
    await session.commit()
    return member, card


def _path(member_id: uuid.UUID) -> str:
    return f"/v1/admin/members/{member_id}/erasure"


async def test_the_operator_erases_and_a_retry_says_it_was_done(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    world = await create_staff_world(session)
    member, card = await _holder(session)

    first = await client.post(_path(member.id), headers=world.headers["operator"])
    again = await client.post(_path(member.id), headers=world.headers["operator"])

    assert first.status_code == 200, first.text
    assert first.json()["member_id"] == str(member.id)
    assert first.json()["erased_now"] is True
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "erased_now": False}
    row = await session.scalar(
        select(Member).where(Member.id == member.id).execution_options(populate_existing=True)
    )
    status = await session.scalar(select(Card.status).where(Card.id == card.id))
    await session.commit()
    assert row is not None
    assert (row.first_name, row.email, row.erased_at is not None) == ("", None, True)
    assert status == CardStatus.BLOCKED


async def test_an_unknown_member_is_a_404_problem(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    world = await create_staff_world(session)

    response = await client.post(_path(uuid.uuid4()), headers=world.headers["operator"])

    assert_problem(response, 404, "member-not-found")


async def test_a_malformed_id_is_a_422_problem(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    world = await create_staff_world(session)

    response = await client.post(
        "/v1/admin/members/not-an-id/erasure", headers=world.headers["operator"]
    )

    assert_problem(response, 422, "validation-error")


@pytest.mark.parametrize(
    ("role", "status", "slug"),
    [
        ("manager_a", 403, "forbidden"),
        ("staff_a", 403, "forbidden"),
        ("anonymous", 401, "invalid-token"),
    ],
)
async def test_only_operator_admins_may_erase_and_a_refusal_changes_nothing(
    session: AsyncSession, client: httpx.AsyncClient, role: str, status: int, slug: str
) -> None:
    world: StaffWorld = await create_staff_world(session)
    member, _card = await _holder(session)
    before = await table_counts(session)

    response = await client.post(_path(member.id), headers=world.headers.get(role, {}))

    assert_problem(response, status, slug)
    assert await table_counts(session) == before
    erased_at = await session.scalar(select(Member.erased_at).where(Member.id == member.id))
    await session.commit()
    assert erased_at is None

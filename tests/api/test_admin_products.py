"""Products through the admin API: programme cards, club cards, prices and audit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import AuditEntry, ProductKind
from tests import factories
from tests.helpers import StaffWorld, assert_problem, create_staff_world, table_counts

ANNUAL = {
    "code": "ANNUAL",
    "name": "Museum Card",
    "kind": "annual",
    "price_minor": 7500,
    "currency": "EUR",
    "vat_rate_bp": 900,
}


@pytest.fixture
async def world(session: AsyncSession) -> StaffWorld:
    return await create_staff_world(session)


async def audit_changes(session: AsyncSession, action: str) -> list[dict[str, Any]]:
    entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
    await session.commit()
    return [entry.changes for entry in entries]


class TestProducts:
    async def test_create_with_defaults(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        response = await client.post("/v1/products", json=ANNUAL, headers=world.headers["operator"])

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["validity_months"] == 12
        assert body["accepted_everywhere"] is True
        assert body["accepted_institution_ids"] == []
        assert body["min_holders"] == body["max_holders"] == 1
        [changes] = await audit_changes(session, "product.create")
        assert changes["price_minor"] == 7500
        assert changes["kind"] == "annual"

    async def test_a_club_card_is_accepted_only_where_listed(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        club = {
            **ANNUAL,
            "code": "CLUB-RIJKS",
            "kind": "club",
            "accepted_everywhere": False,
            "accepted_institution_ids": [str(world.institution_a.id)],
        }

        response = await client.post("/v1/products", json=club, headers=world.headers["operator"])

        assert response.status_code == 201, response.text
        assert response.json()["accepted_institution_ids"] == [str(world.institution_a.id)]

    async def test_duo_and_youth_cards(self, client: httpx.AsyncClient, world: StaffWorld) -> None:
        duo = {**ANNUAL, "code": "DUO", "kind": "duo", "min_holders": 2, "max_holders": 2}
        youth = {**ANNUAL, "code": "YOUTH", "kind": "youth", "price_minor": 3750, "max_age": 18}

        for body in (duo, youth):
            response = await client.post(
                "/v1/products", json=body, headers=world.headers["operator"]
            )
            assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        "change",
        [
            {"accepted_everywhere": False},
            {"accepted_institution_ids": ["{a}"]},
            {"min_holders": 3, "max_holders": 2},
            {"min_age": 18, "max_age": 12},
            {"accepted_everywhere": False, "accepted_institution_ids": ["{unknown}"]},
        ],
    )
    async def test_inconsistent_products_are_refused(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        world: StaffWorld,
        change: dict[str, Any],
    ) -> None:
        ids = {"a": str(world.institution_a.id), "unknown": "00000000-0000-4000-8000-000000000000"}
        for key, value in change.items():
            if isinstance(value, list):
                change[key] = [item.format(**ids) for item in value]
        before = await table_counts(session)

        response = await client.post(
            "/v1/products", json={**ANNUAL, **change}, headers=world.headers["operator"]
        )

        assert_problem(response, 422, "invalid-value")
        assert await table_counts(session) == before

    async def test_update_audits_the_diff(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        product = await factories.create_product(session, code="ANNUAL")
        await session.commit()

        response = await client.patch(
            f"/v1/products/{product.id}",
            json={
                "price_minor": 8000,
                "accepted_everywhere": False,
                "accepted_institution_ids": [str(world.institution_b.id)],
            },
            headers=world.headers["operator"],
        )

        assert response.status_code == 200, response.text
        assert response.json()["price_minor"] == 8000
        [changes] = await audit_changes(session, "product.update")
        assert changes == {
            "price_minor": [7500, 8000],
            "accepted_everywhere": [True, False],
            "accepted_institution_ids": [[], [str(world.institution_b.id)]],
        }

    async def test_a_partial_update_is_checked_against_the_stored_values(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        product = await factories.create_product(session, min_age=None, max_age=18)
        await session.commit()
        before = await table_counts(session)

        response = await client.patch(
            f"/v1/products/{product.id}", json={"min_age": 19}, headers=world.headers["operator"]
        )

        assert_problem(response, 422, "invalid-value")
        assert await table_counts(session) == before

    async def test_deactivate(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        product = await factories.create_product(session)
        await session.commit()

        response = await client.post(
            f"/v1/products/{product.id}/deactivate", headers=world.headers["operator"]
        )

        assert response.json()["active"] is False
        assert await audit_changes(session, "product.deactivate") == [{"active": [True, False]}]


class TestProductList:
    @pytest.fixture
    async def catalogue(self, session: AsyncSession, world: StaffWorld) -> StaffWorld:
        await factories.create_product(session, code="ANNUAL")
        await factories.create_product(session, code="YOUTH", kind=ProductKind.YOUTH)
        await factories.create_product(session, code="DUO", kind=ProductKind.DUO, max_holders=2)
        await factories.create_product(
            session, code="CLUB-A", kind=ProductKind.CLUB, accepted_at=[world.institution_a]
        )
        club_b = await factories.create_product(
            session, code="CLUB-B", kind=ProductKind.CLUB, accepted_at=[world.institution_b]
        )
        club_b.active = False
        await session.commit()
        return world

    @pytest.mark.parametrize(
        ("params", "codes"),
        [
            ({}, ["ANNUAL", "CLUB-A", "CLUB-B", "DUO", "YOUTH"]),
            ({"limit": 2, "offset": 2}, ["CLUB-B", "DUO"]),
            ({"kind": "club"}, ["CLUB-A", "CLUB-B"]),
            ({"active": "true", "kind": "club"}, ["CLUB-A"]),
            ({"institution_id": "{b}"}, ["ANNUAL", "CLUB-B", "DUO", "YOUTH"]),
        ],
    )
    async def test_filters_and_pages(
        self,
        client: httpx.AsyncClient,
        catalogue: StaffWorld,
        params: dict[str, Any],
        codes: list[str],
    ) -> None:
        if params.get("institution_id") == "{b}":
            params = {"institution_id": str(catalogue.institution_b.id)}

        response = await client.get(
            "/v1/products", params=params, headers=catalogue.headers["staff_a"]
        )

        assert response.status_code == 200, response.text
        assert [item["code"] for item in response.json()["items"]] == codes
        expected_total = 5 if set(params) <= {"limit", "offset"} else len(codes)
        assert response.json()["total"] == expected_total

"""Institutions, tariff periods and venues through the admin API."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import AuditEntry
from tests import factories
from tests.helpers import StaffWorld, assert_problem, create_staff_world, table_counts

NEW_INSTITUTION = {
    "code": "CENTRAAL",
    "name": "Centraal Museum",
    "city": "Utrecht",
    "timezone": "Europe/Amsterdam",
    "anti_passback_minutes": 20,
    "joined_on": "2024-03-01",
    "visit_tariff_minor": 900,
    "admission_price_minor": 1650,
    "currency": "EUR",
}


@pytest.fixture
async def world(session: AsyncSession) -> StaffWorld:
    return await create_staff_world(session)


async def audit_entries(session: AsyncSession, action: str) -> list[AuditEntry]:
    entries = list(
        (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
    )
    await session.commit()
    return entries


class TestInstitutions:
    async def test_create_returns_the_first_tariff_and_audits(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        response = await client.post(
            "/v1/institutions", json=NEW_INSTITUTION, headers=world.headers["operator"]
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["code"] == "CENTRAAL"
        assert body["anti_passback_minutes"] == 20
        assert body["active"] is True
        assert body["current_tariff"]["visit_tariff_minor"] == 900
        assert [t["valid_from"] for t in body["tariffs"]] == ["2024-03-01"]
        [entry] = await audit_entries(session, "institution.create")
        assert entry.entity_id == body["id"]
        assert entry.actor_staff_id == world.operator.id
        assert entry.changes["code"] == "CENTRAAL"
        assert entry.changes["currency"] == "EUR"

    async def test_anti_passback_defaults_to_fifteen_minutes(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        body = {k: v for k, v in NEW_INSTITUTION.items() if k != "anti_passback_minutes"}

        response = await client.post(
            "/v1/institutions", json=body, headers=world.headers["operator"]
        )

        assert response.json()["anti_passback_minutes"] == 15

    async def test_read(self, client: httpx.AsyncClient, world: StaffWorld) -> None:
        response = await client.get(
            f"/v1/institutions/{world.institution_a.id}", headers=world.headers["staff_a"]
        )

        assert response.status_code == 200
        assert response.json()["code"] == "RIJKS"

    async def test_unknown_institution_is_404(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        response = await client.get(
            "/v1/institutions/00000000-0000-4000-8000-000000000000",
            headers=world.headers["operator"],
        )

        assert_problem(response, 404, "not-found")

    async def test_update_audits_old_and_new_values(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        response = await client.patch(
            f"/v1/institutions/{world.institution_a.id}",
            json={"name": "Rijksmuseum", "anti_passback_minutes": 30, "city": "Amsterdam"},
            headers=world.headers["manager_a"],
        )

        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Rijksmuseum"
        assert response.json()["anti_passback_minutes"] == 30
        [entry] = await audit_entries(session, "institution.update")
        # The city did not change, so it is not in the diff.
        assert entry.changes == {
            "name": [world.institution_a.name, "Rijksmuseum"],
            "anti_passback_minutes": [15, 30],
        }
        assert entry.actor_staff_id == world.manager_a.id

    async def test_an_update_that_changes_nothing_is_not_audited(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        response = await client.patch(
            f"/v1/institutions/{world.institution_a.id}",
            json={"city": "Amsterdam"},
            headers=world.headers["operator"],
        )

        assert response.status_code == 200
        assert await audit_entries(session, "institution.update") == []

    async def test_the_operator_may_record_leaving(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        response = await client.patch(
            f"/v1/institutions/{world.institution_a.id}",
            json={"left_on": "2026-12-31"},
            headers=world.headers["operator"],
        )

        assert response.json()["left_on"] == "2026-12-31"

    async def test_leaving_before_joining_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        before = await table_counts(session)

        response = await client.patch(
            f"/v1/institutions/{world.institution_a.id}",
            json={"left_on": "2019-12-31"},
            headers=world.headers["operator"],
        )

        assert_problem(response, 422, "invalid-value")
        assert await table_counts(session) == before

    async def test_deactivate(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        path = f"/v1/institutions/{world.institution_a.id}/deactivate"

        first = await client.post(path, headers=world.headers["operator"])
        again = await client.post(path, headers=world.headers["operator"])

        assert first.json()["active"] is False
        assert again.status_code == 200
        assert len(await audit_entries(session, "institution.deactivate")) == 1


class TestTariffs:
    async def test_a_started_period_becomes_current_and_old_ones_stay(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        started = (date.today() - timedelta(days=1)).isoformat()

        response = await client.post(
            f"/v1/institutions/{world.institution_a.id}/tariffs",
            json={
                "valid_from": started,
                "visit_tariff_minor": 990,
                "admission_price_minor": 2000,
                "currency": "EUR",
            },
            headers=world.headers["operator"],
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert [t["valid_from"] for t in body["tariffs"]] == ["2020-01-01", started]
        assert body["current_tariff"]["visit_tariff_minor"] == 990
        assert len(await audit_entries(session, "institution.add_tariff")) == 1

    async def test_a_future_period_is_not_current_yet(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        response = await client.post(
            f"/v1/institutions/{world.institution_a.id}/tariffs",
            json={
                "valid_from": (date.today() + timedelta(days=30)).isoformat(),
                "visit_tariff_minor": 990,
                "admission_price_minor": 2000,
                "currency": "EUR",
            },
            headers=world.headers["operator"],
        )

        assert response.json()["current_tariff"]["visit_tariff_minor"] == 850
        assert len(response.json()["tariffs"]) == 2

    @pytest.mark.parametrize(
        ("valid_from", "status", "slug"),
        [("2020-01-01", 409, "duplicate-tariff-period"), ("2019-06-01", 422, "invalid-value")],
    )
    async def test_refused_periods_write_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        world: StaffWorld,
        valid_from: str,
        status: int,
        slug: str,
    ) -> None:
        before = await table_counts(session)

        response = await client.post(
            f"/v1/institutions/{world.institution_a.id}/tariffs",
            json={
                "valid_from": valid_from,
                "visit_tariff_minor": 990,
                "admission_price_minor": 2000,
                "currency": "EUR",
            },
            headers=world.headers["operator"],
        )

        assert_problem(response, status, slug)
        assert await table_counts(session) == before


class TestInstitutionList:
    @pytest.fixture
    async def many(self, session: AsyncSession, world: StaffWorld) -> StaffWorld:
        """Seven institutions in all: RIJKS, BOIJMANS and five more."""
        await factories.create_institution(session, code="STEDELIJK", name="Stedelijk Museum")
        await factories.create_institution(
            session, code="KUNSTHAL", name="Kunsthal", city="Rotterdam"
        )
        await factories.create_institution(
            session, code="MAURITS", name="Mauritshuis", city="Den Haag"
        )
        await factories.create_institution(
            session, code="VANGOGH", name="Van Gogh Museum", city="Amsterdam"
        )
        closed = await factories.create_institution(
            session, code="CLOSED", name="Closed Museum", city="Utrecht"
        )
        closed.active = False
        await session.commit()
        return world

    async def test_pages_cover_everything_once(
        self, client: httpx.AsyncClient, many: StaffWorld
    ) -> None:
        codes: list[str] = []
        for offset in (0, 3, 6):
            response = await client.get(
                "/v1/institutions",
                params={"limit": 3, "offset": offset},
                headers=many.headers["operator"],
            )
            body = response.json()
            assert body["total"] == 7
            assert body["limit"] == 3
            assert body["offset"] == offset
            codes += [item["code"] for item in body["items"]]

        assert len(codes) == 7
        assert len(set(codes)) == 7

    @pytest.mark.parametrize(
        ("params", "total"),
        [
            ({"city": "rotterdam"}, 2),
            ({"q": "museum"}, 5),
            ({"q": "MUSEUM", "city": "Amsterdam"}, 3),
            ({"active": "false"}, 1),
            ({"active": "true"}, 6),
            ({"q": "%"}, 0),
        ],
    )
    async def test_filters(
        self,
        client: httpx.AsyncClient,
        many: StaffWorld,
        params: dict[str, str],
        total: int,
    ) -> None:
        response = await client.get(
            "/v1/institutions", params=params, headers=many.headers["operator"]
        )

        assert response.status_code == 200, response.text
        assert response.json()["total"] == total
        assert len(response.json()["items"]) == total

    async def test_institution_staff_see_only_their_own(
        self, client: httpx.AsyncClient, many: StaffWorld
    ) -> None:
        response = await client.get("/v1/institutions", headers=many.headers["staff_a"])

        assert response.json()["total"] == 1
        assert [item["code"] for item in response.json()["items"]] == ["RIJKS"]


class TestVenues:
    async def test_create_read_update_deactivate(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        base = f"/v1/institutions/{world.institution_a.id}/venues"
        headers = world.headers["manager_a"]

        created = await client.post(
            base, json={"code": "MAIN", "name": "Main entrance"}, headers=headers
        )
        venue_id = created.json()["id"]
        updated = await client.patch(
            f"{base}/{venue_id}", json={"address": "Museumstraat 1"}, headers=headers
        )
        deactivated = await client.post(f"{base}/{venue_id}/deactivate", headers=headers)
        read = await client.get(f"{base}/{venue_id}", headers=world.headers["staff_a"])

        assert created.status_code == 201, created.text
        assert updated.json()["address"] == "Museumstraat 1"
        assert deactivated.json()["active"] is False
        assert read.json() == deactivated.json()
        for action in ("venue.create", "venue.update", "venue.deactivate"):
            [entry] = await audit_entries(session, action)
            assert entry.institution_id == world.institution_a.id
            assert entry.entity_id == venue_id

    async def test_the_same_code_may_be_used_by_another_institution(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        for institution in (world.institution_a, world.institution_b):
            response = await client.post(
                f"/v1/institutions/{institution.id}/venues",
                json={"code": "MAIN", "name": "Main entrance"},
                headers=world.headers["operator"],
            )
            assert response.status_code == 201

    async def test_a_venue_is_not_found_under_another_institution(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        venue_b = await factories.create_venue(session, institution=world.institution_b)
        await session.commit()

        response = await client.get(
            f"/v1/institutions/{world.institution_a.id}/venues/{venue_b.id}",
            headers=world.headers["manager_a"],
        )

        assert_problem(response, 404, "not-found")

    async def test_list_filters_and_pages(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        for code in ("NORTH", "SOUTH", "EAST", "WEST"):
            await factories.create_venue(session, institution=world.institution_a, code=code)
        await factories.create_venue(session, institution=world.institution_b, code="OTHER")
        venue = await factories.create_venue(session, institution=world.institution_a, code="OLD")
        venue.active = False
        await session.commit()
        base = f"/v1/institutions/{world.institution_a.id}/venues"

        page = await client.get(
            base, params={"limit": 2, "offset": 1}, headers=world.headers["staff_a"]
        )
        active = await client.get(base, params={"active": True}, headers=world.headers["staff_a"])

        assert page.json()["total"] == 5
        assert [v["code"] for v in page.json()["items"]] == ["NORTH", "OLD"]
        assert active.json()["total"] == 4

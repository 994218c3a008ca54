"""Staff accounts through the admin API: scoped to the manager's institution, audited, revocable."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import AuditEntry, StaffToken
from tests import factories
from tests.helpers import StaffWorld, assert_problem, create_staff_world, table_counts

PASSWORD = "a long enough password"


@pytest.fixture
async def world(session: AsyncSession) -> StaffWorld:
    return await create_staff_world(session)


def new_staff(world: StaffWorld, **overrides: object) -> dict[str, object]:
    return {
        "email": "Jan.Balie@Example.org",
        "name": "Jan Balie",
        "password": PASSWORD,
        "role": "institution_staff",
        "institution_id": str(world.institution_a.id),
        **overrides,
    }


class TestStaffUsers:
    async def test_a_manager_adds_staff_who_can_then_log_in(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        response = await client.post(
            "/v1/staff-users", json=new_staff(world), headers=world.headers["manager_a"]
        )

        assert response.status_code == 201, response.text
        assert response.json()["email"] == "jan.balie@example.org"
        assert "password" not in response.json()
        assert "password_hash" not in response.json()
        login = await client.post(
            "/v1/auth/login", json={"email": "jan.balie@example.org", "password": PASSWORD}
        )
        assert login.status_code == 200
        [entry] = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "staff_user.create")
            )
        ).all()
        assert entry.actor_staff_id == world.manager_a.id
        assert entry.institution_id == world.institution_a.id
        assert PASSWORD not in str(entry.changes)
        assert "password_hash" not in entry.changes

    async def test_a_duplicate_email_in_other_case_is_a_conflict(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        await client.post(
            "/v1/staff-users", json=new_staff(world), headers=world.headers["operator"]
        )
        before = await table_counts(session)

        response = await client.post(
            "/v1/staff-users",
            json=new_staff(world, email="JAN.BALIE@example.org"),
            headers=world.headers["operator"],
        )

        assert_problem(response, 409, "duplicate-email")
        assert await table_counts(session) == before

    @pytest.mark.parametrize(
        "overrides",
        [
            {"role": "operator_admin"},
            {"role": "institution_staff", "institution_id": None},
            {"institution_id": "00000000-0000-4000-8000-000000000000"},
        ],
    )
    async def test_role_and_institution_must_fit(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        world: StaffWorld,
        overrides: dict[str, object],
    ) -> None:
        before = await table_counts(session)

        response = await client.post(
            "/v1/staff-users",
            json=new_staff(world, **overrides),
            headers=world.headers["operator"],
        )

        assert_problem(response, 422, "invalid-value")
        assert await table_counts(session) == before

    async def test_a_password_change_works_and_is_audited_without_the_hash(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        response = await client.patch(
            f"/v1/staff-users/{world.staff_a.id}",
            json={"password": "a brand new password", "name": "Renamed"},
            headers=world.headers["manager_a"],
        )

        assert response.status_code == 200, response.text
        login = await client.post(
            "/v1/auth/login",
            json={"email": world.staff_a.email, "password": "a brand new password"},
        )
        assert login.status_code == 200
        [entry] = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "staff_user.update")
            )
        ).all()
        assert entry.changes == {
            "name": [world.staff_a.name, "Renamed"],
            "password_changed": True,
        }

    async def test_a_manager_may_promote_staff_to_manager(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        response = await client.patch(
            f"/v1/staff-users/{world.staff_a.id}",
            json={"role": "institution_manager"},
            headers=world.headers["manager_a"],
        )

        assert response.json()["role"] == "institution_manager"

    async def test_the_operator_may_promote_to_operator(
        self, client: httpx.AsyncClient, world: StaffWorld
    ) -> None:
        response = await client.patch(
            f"/v1/staff-users/{world.staff_a.id}",
            json={"role": "operator_admin", "institution_id": None},
            headers=world.headers["operator"],
        )

        assert response.status_code == 200, response.text
        assert response.json()["institution_id"] is None

    async def test_deactivation_revokes_every_token_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        second = await factories.auth_headers(session, staff_user=world.staff_a)
        await session.commit()

        response = await client.post(
            f"/v1/staff-users/{world.staff_a.id}/deactivate", headers=world.headers["manager_a"]
        )

        assert response.json()["active"] is False
        for headers in (world.headers["staff_a"], second):
            assert_problem(await client.get("/v1/auth/me", headers=headers), 401, "invalid-token")
        tokens = (
            await session.scalars(
                select(StaffToken).where(StaffToken.staff_user_id == world.staff_a.id)
            )
        ).all()
        assert len(tokens) == 2
        assert all(token.revoked_at is not None for token in tokens)

    async def test_nobody_deactivates_themselves(
        self, client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
    ) -> None:
        before = await table_counts(session)

        response = await client.post(
            f"/v1/staff-users/{world.operator.id}/deactivate", headers=world.headers["operator"]
        )

        assert_problem(response, 409, "cannot-deactivate-self")
        assert await table_counts(session) == before


class TestStaffList:
    @pytest.fixture
    async def crowd(self, session: AsyncSession, world: StaffWorld) -> StaffWorld:
        for name in ("Anna Kassa", "Bram Kassa", "Cor Garderobe"):
            await factories.create_staff_user(session, institution=world.institution_a, name=name)
        await factories.create_staff_user(
            session, institution=world.institution_a, name="Dirk Oud", active=False
        )
        await session.commit()
        return world

    async def test_a_manager_sees_only_their_own_institution(
        self, client: httpx.AsyncClient, crowd: StaffWorld
    ) -> None:
        response = await client.get("/v1/staff-users", headers=crowd.headers["manager_a"])

        # manager A, staff A and the four above; not the operator nor manager B.
        assert response.json()["total"] == 6
        institutions = {item["institution_id"] for item in response.json()["items"]}
        assert institutions == {str(crowd.institution_a.id)}

    @pytest.mark.parametrize(
        ("params", "total", "items"),
        [
            ({}, 8, 8),
            ({"q": "kassa"}, 2, 2),
            ({"role": "institution_manager"}, 2, 2),
            ({"role": "operator_admin"}, 1, 1),
            ({"active": "false"}, 1, 1),
            ({"institution_id": "{b}"}, 1, 1),
            ({"limit": 3, "offset": 6}, 8, 2),
        ],
    )
    async def test_filters_as_operator(
        self,
        client: httpx.AsyncClient,
        crowd: StaffWorld,
        params: dict[str, object],
        total: int,
        items: int,
    ) -> None:
        if params.get("institution_id") == "{b}":
            params = {"institution_id": str(crowd.institution_b.id)}

        response = await client.get(
            "/v1/staff-users", params=params, headers=crowd.headers["operator"]
        )

        assert response.status_code == 200, response.text
        assert response.json()["total"] == total
        assert len(response.json()["items"]) == items


async def test_an_unknown_role_filter_is_refused(
    client: httpx.AsyncClient, world: StaffWorld
) -> None:
    response = await client.get(
        "/v1/staff-users", params={"role": "superuser"}, headers=world.headers["operator"]
    )

    assert_problem(response, 422, "validation-error")

"""Staff sign-in: tokens are issued once, stored hashed, expire, and can be revoked."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import utcnow
from membership.models import StaffRole, StaffToken, StaffUser
from membership.staff import hash_token
from tests import factories
from tests.factories import STAFF_PASSWORD
from tests.helpers import assert_problem, table_counts


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


@pytest.fixture
async def manager(session: AsyncSession) -> StaffUser:
    institution = await factories.create_institution(session)
    user = await factories.create_staff_user(
        session,
        role=StaffRole.INSTITUTION_MANAGER,
        institution=institution,
        email="manager@example.org",
    )
    await session.commit()
    return user


class TestLogin:
    async def test_login_returns_a_token_that_works(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        response = await login(client, "manager@example.org", STAFF_PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["user"]["id"] == str(manager.id)
        assert body["user"]["role"] == "institution_manager"
        assert "password_hash" not in body["user"]
        me = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
        assert me.status_code == 200
        assert me.json()["email"] == "manager@example.org"

    async def test_only_the_token_hash_is_stored(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        token = (await login(client, "manager@example.org", STAFF_PASSWORD)).json()["token"]

        stored = (await session.scalars(select(StaffToken))).all()
        assert [row.token_hash for row in stored] == [hash_token(token)]
        assert token not in stored[0].token_hash

    async def test_expiry_follows_the_configured_lifetime(
        self, client: httpx.AsyncClient, manager: StaffUser
    ) -> None:
        before = utcnow()
        body = (await login(client, "manager@example.org", STAFF_PASSWORD)).json()

        lifetime = datetime.fromisoformat(body["expires_at"]) - before
        assert timedelta(hours=11, minutes=59) < lifetime <= timedelta(hours=12, minutes=1)

    async def test_email_is_matched_case_insensitively(
        self, client: httpx.AsyncClient, manager: StaffUser
    ) -> None:
        response = await login(client, "  Manager@Example.ORG", STAFF_PASSWORD)

        assert response.status_code == 200

    @pytest.mark.parametrize(
        ("email", "password"),
        [
            ("manager@example.org", "wrong password entirely"),
            ("nobody@example.org", STAFF_PASSWORD),
            ("manager@example.org", ""),
        ],
    )
    async def test_wrong_password_and_unknown_email_look_the_same(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        manager: StaffUser,
        email: str,
        password: str,
    ) -> None:
        before = await table_counts(session)

        response = await login(client, email, password)

        body = assert_problem(response, 401, "invalid-credentials")
        assert response.headers["www-authenticate"] == "Bearer"
        assert body["detail"] == "E-mail address or password is wrong"
        assert await table_counts(session) == before

    async def test_a_deactivated_user_cannot_log_in(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        manager.active = False
        await session.commit()

        assert_problem(
            await login(client, "manager@example.org", STAFF_PASSWORD), 401, "invalid-credentials"
        )

    async def test_unknown_fields_are_refused(
        self, client: httpx.AsyncClient, manager: StaffUser
    ) -> None:
        response = await client.post(
            "/v1/auth/login",
            json={"email": "manager@example.org", "password": STAFF_PASSWORD, "remember": True},
        )

        assert_problem(response, 422, "validation-error")

    async def test_login_records_the_time(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        await login(client, "manager@example.org", STAFF_PASSWORD)

        await session.refresh(manager)
        assert manager.last_login_at is not None


class TestTokens:
    async def test_logout_revokes_the_token(
        self, client: httpx.AsyncClient, manager: StaffUser
    ) -> None:
        token = (await login(client, "manager@example.org", STAFF_PASSWORD)).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}

        assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204

        assert_problem(await client.get("/v1/auth/me", headers=headers), 401, "invalid-token")

    async def test_logout_leaves_other_tokens_alone(
        self, client: httpx.AsyncClient, manager: StaffUser
    ) -> None:
        first = (await login(client, "manager@example.org", STAFF_PASSWORD)).json()["token"]
        second = (await login(client, "manager@example.org", STAFF_PASSWORD)).json()["token"]

        await client.post("/v1/auth/logout", headers={"Authorization": f"Bearer {first}"})

        me = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {second}"})
        assert me.status_code == 200

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": "Basic bWFuYWdlcjpzZWNyZXQ="},
            {"Authorization": "Bearer"},
        ],
    )
    async def test_missing_or_unknown_token(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await client.get("/v1/auth/me", headers=headers)

        assert_problem(response, 401, "invalid-token")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_expired_token(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        headers = await factories.auth_headers(
            session, staff_user=manager, expires_at=utcnow() - timedelta(seconds=1)
        )
        await session.commit()

        assert_problem(await client.get("/v1/auth/me", headers=headers), 401, "invalid-token")

    async def test_revoked_token(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        headers = await factories.auth_headers(
            session, staff_user=manager, revoked_at=utcnow() - timedelta(minutes=5)
        )
        await session.commit()

        assert_problem(await client.get("/v1/auth/me", headers=headers), 401, "invalid-token")

    async def test_a_deactivated_users_token_stops_working(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        headers = await factories.auth_headers(session, staff_user=manager)
        await session.commit()
        assert (await client.get("/v1/auth/me", headers=headers)).status_code == 200

        manager.active = False
        await session.commit()

        assert_problem(await client.get("/v1/auth/me", headers=headers), 401, "invalid-token")

    async def test_use_is_recorded(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        headers = await factories.auth_headers(session, staff_user=manager)
        await session.commit()

        await client.get("/v1/auth/me", headers=headers)

        token = await session.scalar(select(StaffToken))
        assert token is not None
        assert token.last_used_at is not None

"""Staff sign-in: tokens are issued once, stored hashed, expire, and can be revoked."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

import migrations
from api import cli
from api.app import create_app
from membership.clock import utcnow
from membership.models import Institution, StaffRole, StaffToken, StaffUser
from membership.settings import Settings
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

    async def test_staff_of_a_deactivated_institution_are_signed_out(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        headers = await factories.auth_headers(session, staff_user=manager)
        institution = await session.get_one(Institution, manager.institution_id)
        institution.active = False
        await session.commit()

        assert_problem(await client.get("/v1/auth/me", headers=headers), 401, "invalid-token")
        assert_problem(
            await login(client, "manager@example.org", STAFF_PASSWORD), 401, "invalid-credentials"
        )

    async def test_use_is_recorded(
        self, client: httpx.AsyncClient, session: AsyncSession, manager: StaffUser
    ) -> None:
        headers = await factories.auth_headers(session, staff_user=manager)
        await session.commit()

        await client.get("/v1/auth/me", headers=headers)

        token = await session.scalar(select(StaffToken))
        assert token is not None
        assert token.last_used_at is not None


class TestCreateAdminCommand:
    """`membership users create-admin` against a migrated SQLite file, as on a fresh install."""

    @pytest.fixture
    def database_file_url(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
        migrations.upgrade(url)
        monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
        monkeypatch.setenv("MEMBERSHIP_DATABASE_URL", url)
        monkeypatch.delenv("MEMBERSHIP_ADMIN_PASSWORD", raising=False)
        return url

    @staticmethod
    def create_admin(*args: str, input: str | None = None) -> Result:
        command = ["users", "create-admin", "--email", "Ada@Example.org", "--name", "Ada Admin"]
        return CliRunner().invoke(cli.app, [*command, *args], input=input)

    @staticmethod
    def login_status(url: str, password: str) -> int:
        async def attempt() -> int:
            app = create_app(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
            transport = httpx.ASGITransport(app=app)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    response = await login(client, "ada@example.org", password)
                    return response.status_code
            finally:
                await app.state.engine.dispose()

        return asyncio.run(attempt())

    def test_prompted_password_then_login(self, database_file_url: str) -> None:
        password = "a long admin password"

        result = self.create_admin(input=f"{password}\n{password}\n")

        assert result.exit_code == 0, result.output
        assert self.login_status(database_file_url, password) == 200

    def test_password_from_the_environment(
        self, database_file_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MEMBERSHIP_ADMIN_PASSWORD", "from the environment")

        result = self.create_admin()

        assert result.exit_code == 0, result.output
        assert self.login_status(database_file_url, "from the environment") == 200

    def test_password_option_and_a_duplicate(self, database_file_url: str) -> None:
        assert self.create_admin("--password", "first password here").exit_code == 0

        again = self.create_admin("--password", "second password here")

        assert again.exit_code == 1
        assert self.login_status(database_file_url, "second password here") == 401

    def test_a_short_password_creates_nothing(self, database_file_url: str) -> None:
        result = self.create_admin("--password", "short")

        assert result.exit_code == 1
        # The address is still free: the refused attempt left no account behind.
        assert self.create_admin("--password", "long enough now").exit_code == 0
        assert self.login_status(database_file_url, "long enough now") == 200

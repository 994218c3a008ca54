"""Staff accounts at the service level: principals, passwords, tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import staff
from membership.audit import Actor
from membership.clock import utcnow
from membership.errors import InvalidValue, PermissionDenied
from membership.models import AuditEntry, StaffRole, StaffToken, StaffUser
from membership.staff import DuplicateEmail, InvalidCredentials, InvalidToken, Principal
from tests import factories

INSTITUTION_A = uuid.uuid4()
INSTITUTION_B = uuid.uuid4()
CLI = Actor(label="cli")


def principal(role: StaffRole, institution_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        staff_user_id=uuid.uuid4(), email="x@example.org", role=role, institution_id=institution_id
    )


class TestPrincipal:
    def test_the_operator_reaches_every_institution(self) -> None:
        operator = principal(StaffRole.OPERATOR_ADMIN)

        operator.ensure_institution(INSTITUTION_A)
        operator.ensure_institution(INSTITUTION_B)
        assert operator.is_operator

    @pytest.mark.parametrize("role", [StaffRole.INSTITUTION_MANAGER, StaffRole.INSTITUTION_STAFF])
    def test_institution_staff_reach_only_their_own(self, role: StaffRole) -> None:
        member = principal(role, INSTITUTION_A)

        member.ensure_institution(INSTITUTION_A)
        with pytest.raises(PermissionDenied):
            member.ensure_institution(INSTITUTION_B)
        with pytest.raises(PermissionDenied):
            member.ensure_institution(None)
        assert not member.is_operator

    def test_ensure_role(self) -> None:
        manager = principal(StaffRole.INSTITUTION_MANAGER, INSTITUTION_A)

        manager.ensure_role(StaffRole.OPERATOR_ADMIN, StaffRole.INSTITUTION_MANAGER)
        with pytest.raises(PermissionDenied):
            manager.ensure_role(StaffRole.OPERATOR_ADMIN)

    def test_actor_names_the_person(self) -> None:
        manager = principal(StaffRole.INSTITUTION_MANAGER, INSTITUTION_A)

        assert manager.actor == Actor(label="x@example.org", staff_user_id=manager.staff_user_id)


def test_passwords_are_hashed_with_argon2_and_salted() -> None:
    first = staff.hash_password("correct horse battery staple")
    second = staff.hash_password("correct horse battery staple")

    assert first.startswith("$argon2id$")
    assert first != second


class TestCreateStaffUser:
    async def test_creates_an_audited_lower_case_account(self, session: AsyncSession) -> None:
        user = await staff.create_staff_user(
            session,
            email="  Ada@Example.ORG ",
            name="Ada",
            password="a long enough password",
            role=StaffRole.OPERATOR_ADMIN,
            institution_id=None,
            actor=CLI,
        )

        assert user.email == "ada@example.org"
        entry = await session.scalar(select(AuditEntry))
        assert entry is not None
        assert entry.actor == "cli"
        assert entry.changes == {
            "email": "ada@example.org",
            "name": "Ada",
            "role": "operator_admin",
        }

    @pytest.mark.parametrize(
        ("role", "with_institution", "password"),
        [
            (StaffRole.OPERATOR_ADMIN, True, "a long enough password"),
            (StaffRole.INSTITUTION_STAFF, False, "a long enough password"),
            (StaffRole.OPERATOR_ADMIN, False, "too short"),
        ],
    )
    async def test_refuses_what_does_not_fit(
        self, session: AsyncSession, role: StaffRole, with_institution: bool, password: str
    ) -> None:
        institution = await factories.create_institution(session)

        with pytest.raises(InvalidValue):
            await staff.create_staff_user(
                session,
                email="ada@example.org",
                name="Ada",
                password=password,
                role=role,
                institution_id=institution.id if with_institution else None,
                actor=CLI,
            )
        assert await session.scalar(select(func.count()).select_from(StaffUser)) == 0

    async def test_a_duplicate_email_is_a_conflict(self, session: AsyncSession) -> None:
        await factories.create_staff_user(
            session, role=StaffRole.OPERATOR_ADMIN, email="ada@example.org"
        )

        with pytest.raises(DuplicateEmail):
            await staff.create_staff_user(
                session,
                email="ADA@example.org",
                name="Ada",
                password="a long enough password",
                role=StaffRole.OPERATOR_ADMIN,
                institution_id=None,
                actor=CLI,
            )


class TestTokens:
    @pytest.fixture
    async def operator(self, session: AsyncSession) -> StaffUser:
        return await factories.create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)

    async def test_login_then_authenticate(
        self, session: AsyncSession, operator: StaffUser
    ) -> None:
        issued = await staff.login(
            session,
            email=operator.email,
            password=factories.STAFF_PASSWORD,
            ttl=timedelta(hours=1),
        )

        current = await staff.authenticate(session, token=issued.token)

        assert current == Principal.of(operator)
        assert len(issued.token) >= 43  # 32 random bytes, URL-safe base64

    async def test_a_token_is_only_good_until_it_expires(
        self, session: AsyncSession, operator: StaffUser
    ) -> None:
        issued = await staff.login(
            session, email=operator.email, password=factories.STAFF_PASSWORD, ttl=timedelta(hours=1)
        )

        with pytest.raises(InvalidToken):
            await staff.authenticate(
                session, token=issued.token, now=issued.expires_at + timedelta(seconds=1)
            )

    async def test_logout_revokes(self, session: AsyncSession, operator: StaffUser) -> None:
        issued = await staff.login(
            session, email=operator.email, password=factories.STAFF_PASSWORD, ttl=timedelta(hours=1)
        )

        await staff.logout(session, token=issued.token)

        with pytest.raises(InvalidToken):
            await staff.authenticate(session, token=issued.token)

    async def test_wrong_password_issues_nothing(
        self, session: AsyncSession, operator: StaffUser
    ) -> None:
        with pytest.raises(InvalidCredentials):
            await staff.login(
                session, email=operator.email, password="not the password", ttl=timedelta(hours=1)
            )

        assert await session.scalar(select(func.count()).select_from(StaffToken)) == 0

    async def test_last_use_is_written_at_most_once_a_minute(
        self, session: AsyncSession, operator: StaffUser
    ) -> None:
        headers = await factories.auth_headers(session, staff_user=operator)
        token = headers["Authorization"].removeprefix("Bearer ")
        start = utcnow()

        await staff.authenticate(session, token=token, now=start)
        await staff.authenticate(session, token=token, now=start + timedelta(seconds=30))
        stored = await session.scalar(select(StaffToken))
        assert stored is not None
        assert stored.last_used_at == start

        await staff.authenticate(session, token=token, now=start + timedelta(minutes=2))
        assert stored.last_used_at == start + timedelta(minutes=2)

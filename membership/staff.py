"""Staff accounts: passwords, bearer tokens, and who may act for which institution."""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit
from membership.audit import Actor
from membership.clock import utcnow
from membership.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidValue,
    NotFound,
    PermissionDenied,
)
from membership.models import Institution, StaffRole, StaffToken, StaffUser
from membership.pagination import PageResult, changed_fields, flush_unique, like_pattern, paginate

MIN_PASSWORD_LENGTH = 12
# A token is used for many requests; writing last_used_at on each would turn every read into a
# write (and serialise SQLite), so it is refreshed at most once a minute.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so a login takes as long whether or not the
    account exists and timing does not reveal which addresses have one."""
    return _hasher.hash(secrets.token_urlsafe(16))


class DuplicateEmail(Conflict):
    code = "duplicate-email"
    title = "A staff user with this e-mail address exists"


class InvalidCredentials(AuthenticationRequired):
    code = "invalid-credentials"
    title = "E-mail address or password is wrong"


class InvalidToken(AuthenticationRequired):
    code = "invalid-token"
    title = "The bearer token is missing, expired or revoked"


class CannotDeactivateSelf(Conflict):
    code = "cannot-deactivate-self"
    title = "You cannot deactivate your own account"


@dataclass(frozen=True)
class Principal:
    """The signed-in staff member as every service sees them: identity, role and scope."""

    staff_user_id: uuid.UUID
    email: str
    role: StaffRole
    institution_id: uuid.UUID | None

    @classmethod
    def of(cls, user: StaffUser) -> Principal:
        return cls(
            staff_user_id=user.id,
            email=user.email,
            role=user.role,
            institution_id=user.institution_id,
        )

    @property
    def actor(self) -> Actor:
        return Actor(label=self.email, staff_user_id=self.staff_user_id)

    @property
    def is_operator(self) -> bool:
        return self.role is StaffRole.OPERATOR_ADMIN

    def ensure_institution(self, institution_id: uuid.UUID | None) -> None:
        """Institution staff act only for their own institution (rule 5); the operator for all."""
        if not self.is_operator and institution_id != self.institution_id:
            raise PermissionDenied("This belongs to another institution.")

    def ensure_role(self, *roles: StaffRole) -> None:
        if self.role not in roles:
            raise PermissionDenied(f"This needs the role {' or '.join(roles)}.")


@dataclass(frozen=True)
class IssuedToken:
    """A new bearer token: `token` is shown once; only its hash is stored."""

    token: str
    expires_at: datetime
    staff_user: StaffUser


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_email(email: str) -> str:
    """E-mail addresses are compared lower-case, so one person cannot hold two accounts."""
    return email.strip().lower()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidValue(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _check_scope(
    session: AsyncSession, *, role: StaffRole, institution_id: uuid.UUID | None
) -> None:
    """The operator belongs to no institution; every other role to one that exists."""
    if role is StaffRole.OPERATOR_ADMIN:
        if institution_id is not None:
            raise InvalidValue("An operator admin belongs to no institution.")
        return
    if institution_id is None:
        raise InvalidValue(f"A {role} belongs to an institution: give institution_id.")
    if await session.get(Institution, institution_id) is None:
        raise InvalidValue("No such institution.", field="institution_id")


async def _ensure_email_free(session: AsyncSession, email: str) -> None:
    if await session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise DuplicateEmail(f"{email} already has an account.")


async def create_staff_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    password: str,
    role: StaffRole,
    institution_id: uuid.UUID | None,
    actor: Actor,
) -> StaffUser:
    """Create an account; the audit row names the creator and never holds the password hash."""
    email = normalise_email(email)
    _check_password(password)
    await _check_scope(session, role=role, institution_id=institution_id)
    await _ensure_email_free(session, email)
    user = StaffUser(
        email=email,
        name=name,
        password_hash=hash_password(password),
        role=role,
        institution_id=institution_id,
        active=True,
    )
    session.add(user)
    await flush_unique(session, conflict=DuplicateEmail(f"{email} already has an account."))
    await audit.record(
        session,
        actor=actor,
        action="staff_user.create",
        entity_type="staff_user",
        entity_id=user.id,
        institution_id=institution_id,
        changes={"email": email, "name": name, "role": str(role)},
    )
    return user


def _may_sign_in(user: StaffUser, institution_active: bool | None) -> bool:
    """An account works while it is active and so is its institution (the operator has none)."""
    return user.active and institution_active is not False


async def login(
    session: AsyncSession, *, email: str, password: str, ttl: timedelta, now: datetime | None = None
) -> IssuedToken:
    """Exchange e-mail and password for a bearer token.

    Unknown address, wrong password and deactivated account give the same error after the same
    work, so the answer does not tell an attacker which accounts exist.
    """
    now = now or utcnow()
    row = (
        await session.execute(
            select(StaffUser, Institution.active)
            .outerjoin(Institution, Institution.id == StaffUser.institution_id)
            .where(StaffUser.email == normalise_email(email))
        )
    ).one_or_none()
    if row is None:
        _verify(_dummy_hash(), password)
        raise InvalidCredentials()
    user, institution_active = row
    if not _verify(user.password_hash, password) or not _may_sign_in(user, institution_active):
        raise InvalidCredentials()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    token = secrets.token_urlsafe(32)
    expires_at = now + ttl
    session.add(
        StaffToken(staff_user_id=user.id, token_hash=hash_token(token), expires_at=expires_at)
    )
    await session.flush()
    return IssuedToken(token=token, expires_at=expires_at, staff_user=user)


async def authenticate(
    session: AsyncSession, *, token: str, now: datetime | None = None
) -> Principal:
    """Resolve a bearer token; expired, revoked and deactivated-user tokens all fail alike."""
    now = now or utcnow()
    row = (
        await session.execute(
            select(StaffToken, StaffUser, Institution.active)
            .join(StaffUser, StaffUser.id == StaffToken.staff_user_id)
            .outerjoin(Institution, Institution.id == StaffUser.institution_id)
            .where(StaffToken.token_hash == hash_token(token))
        )
    ).one_or_none()
    if row is None:
        raise InvalidToken()
    staff_token, user, institution_active = row
    if (
        staff_token.revoked_at is not None
        or staff_token.expires_at <= now
        or not _may_sign_in(user, institution_active)
    ):
        raise InvalidToken()
    if staff_token.last_used_at is None or now - staff_token.last_used_at >= LAST_USED_RESOLUTION:
        staff_token.last_used_at = now
        await session.flush()
    return Principal.of(user)


async def logout(session: AsyncSession, *, token: str, now: datetime | None = None) -> None:
    """Revoke one token; the row stays so a leaked copy cannot be used either."""
    await session.execute(
        update(StaffToken)
        .where(StaffToken.token_hash == hash_token(token), StaffToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


async def get_staff_user(
    session: AsyncSession, *, staff_user_id: uuid.UUID, principal: Principal
) -> StaffUser:
    """A manager sees the staff of their own institution only; others are forbidden."""
    user = await session.get(StaffUser, staff_user_id)
    if user is None:
        raise NotFound("No such staff user.")
    principal.ensure_institution(user.institution_id)
    return user


async def list_staff_users(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    offset: int,
    role: StaffRole | None = None,
    institution_id: uuid.UUID | None = None,
    active: bool | None = None,
    q: str | None = None,
) -> PageResult[StaffUser]:
    statement: Select[StaffUser] = select(StaffUser).order_by(StaffUser.email, StaffUser.id)
    if not principal.is_operator:
        statement = statement.where(StaffUser.institution_id == principal.institution_id)
    if role is not None:
        statement = statement.where(StaffUser.role == role)
    if institution_id is not None:
        statement = statement.where(StaffUser.institution_id == institution_id)
    if active is not None:
        statement = statement.where(StaffUser.active == active)
    if q:
        pattern = like_pattern(q)
        statement = statement.where(
            or_(
                func.lower(StaffUser.name).like(pattern, escape="\\"),
                StaffUser.email.like(pattern, escape="\\"),
            )
        )
    return await paginate(session, statement, limit=limit, offset=offset)


def _ensure_may_assign(
    principal: Principal, role: StaffRole, institution_id: uuid.UUID | None
) -> None:
    """A manager hands out institution roles for their own institution, never operator rights."""
    if principal.is_operator:
        return
    if role is StaffRole.OPERATOR_ADMIN:
        raise PermissionDenied("Only an operator admin can create operator admins.")
    principal.ensure_institution(institution_id)


async def create_staff_user_as(
    session: AsyncSession,
    *,
    principal: Principal,
    email: str,
    name: str,
    password: str,
    role: StaffRole,
    institution_id: uuid.UUID | None,
) -> StaffUser:
    """`create_staff_user` on behalf of a signed-in principal, within what they may grant."""
    _ensure_may_assign(principal, role, institution_id)
    return await create_staff_user(
        session,
        email=email,
        name=name,
        password=password,
        role=role,
        institution_id=institution_id,
        actor=principal.actor,
    )


async def update_staff_user(
    session: AsyncSession,
    *,
    staff_user_id: uuid.UUID,
    principal: Principal,
    values: dict[str, Any],
) -> StaffUser:
    """Change name, e-mail, role, institution or password; the audit row never holds a hash."""
    user = await get_staff_user(session, staff_user_id=staff_user_id, principal=principal)
    values = dict(values)
    password = values.pop("password", None)
    if "email" in values:
        values["email"] = normalise_email(values["email"])
        if values["email"] != user.email:
            await _ensure_email_free(session, values["email"])
    role = values.get("role", user.role)
    institution_id = values.get("institution_id", user.institution_id)
    if "role" in values or "institution_id" in values:
        _ensure_may_assign(principal, role, institution_id)
        await _check_scope(session, role=role, institution_id=institution_id)
    changes: dict[str, Any] = changed_fields(user, values)
    if password is not None:
        _check_password(password)
        user.password_hash = hash_password(password)
        changes["password_changed"] = True
    if not changes:
        return user
    await flush_unique(session, conflict=DuplicateEmail(f"{user.email} already has an account."))
    await audit.record(
        session,
        actor=principal.actor,
        action="staff_user.update",
        entity_type="staff_user",
        entity_id=user.id,
        institution_id=user.institution_id,
        changes=changes,
    )
    return user


async def deactivate_staff_user(
    session: AsyncSession, *, staff_user_id: uuid.UUID, principal: Principal
) -> StaffUser:
    """Deactivate an account and revoke its tokens at once: a leaver's session must end now."""
    user = await get_staff_user(session, staff_user_id=staff_user_id, principal=principal)
    if user.id == principal.staff_user_id:
        raise CannotDeactivateSelf()
    if not user.active:
        return user
    now = utcnow()
    user.active = False
    await session.execute(
        update(StaffToken)
        .where(StaffToken.staff_user_id == user.id, StaffToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.flush()
    await audit.record(
        session,
        actor=principal.actor,
        action="staff_user.deactivate",
        entity_type="staff_user",
        entity_id=user.id,
        institution_id=user.institution_id,
        changes={"active": [True, False]},
    )
    return user

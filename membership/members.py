"""Members: created at purchase with their consents' timestamps; self-service sign-in by e-mail."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit, outbox
from membership.audit import Actor
from membership.errors import AuthenticationRequired, NotFound
from membership.models import Member, MemberSession, MemberSignInLink


@dataclass(frozen=True)
class HolderDetails:
    first_name: str
    last_name: str
    email: str
    birth_date: date
    postal_code: str
    language: str


def age_on(birth_date: date, day: date) -> int:
    """Completed years on `day`; someone born on 29 February turns a year older on 1 March."""
    years = day.year - birth_date.year
    return years - 1 if (day.month, day.day) < (birth_date.month, birth_date.day) else years


async def create_member(
    session: AsyncSession,
    *,
    details: HolderDetails,
    marketing_opt_in: bool,
    share_contact: bool,
    now: datetime,
) -> Member:
    """A new member; a consent given carries the moment it was given (proof for rule 5)."""
    member = Member(
        first_name=details.first_name,
        last_name=details.last_name,
        email=details.email.lower(),
        birth_date=details.birth_date,
        postal_code=details.postal_code,
        language=details.language,
        marketing_opt_in=marketing_opt_in,
        marketing_opt_in_at=now if marketing_opt_in else None,
        share_contact=share_contact,
        share_contact_at=now if share_contact else None,
    )
    session.add(member)
    await session.flush()
    return member


SIGN_IN_LINK_TTL = timedelta(minutes=15)


class InvalidSignInLink(AuthenticationRequired):
    code = "invalid-sign-in-link"
    title = "This sign-in link is unknown, used or expired"


class InvalidMemberToken(AuthenticationRequired):
    code = "invalid-member-token"
    title = "A valid member session token is required"


@dataclass(frozen=True)
class MemberSessionToken:
    token: str
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def request_sign_in(
    session: AsyncSession, *, email: str, base_url: str, now: datetime
) -> None:
    """Mail a single-use link to a known address; an unknown one gets nothing.

    The caller answers the same either way, so the endpoint cannot be used to find out who is
    a member.
    """
    email = email.lower()
    holder = await session.scalar(
        select(Member).where(Member.email == email, Member.erased_at.is_(None)).limit(1)
    )
    if holder is None:
        return
    token = secrets.token_urlsafe(32)
    link = MemberSignInLink(email=email, token_hash=_hash(token), expires_at=now + SIGN_IN_LINK_TTL)
    session.add(link)
    await session.flush()
    await outbox.enqueue(
        session,
        dedup_key=f"magic_link:{link.id}",
        member=holder,
        template="magic_link",
        context={"link": f"{base_url}/members/sign-in?token={token}"},
        now=now,
    )


async def redeem_sign_in(
    session: AsyncSession, *, token: str, ttl: timedelta, now: datetime
) -> MemberSessionToken:
    """Use the link (once: a conditional update that only one request wins) for a session."""
    used = await session.execute(
        update(MemberSignInLink)
        .where(
            MemberSignInLink.token_hash == _hash(token),
            MemberSignInLink.used_at.is_(None),
            MemberSignInLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(MemberSignInLink.email)
    )
    email = used.scalar_one_or_none()
    if email is None:
        raise InvalidSignInLink()
    raw = secrets.token_urlsafe(32)
    expires_at = now + ttl
    session.add(MemberSession(email=email, token_hash=_hash(raw), expires_at=expires_at))
    await session.flush()
    return MemberSessionToken(token=raw, expires_at=expires_at)


async def authenticate(session: AsyncSession, *, token: str, now: datetime) -> str:
    """The e-mail address a live member session belongs to."""
    email = await session.scalar(
        select(MemberSession.email).where(
            MemberSession.token_hash == _hash(token),
            MemberSession.revoked_at.is_(None),
            MemberSession.expires_at > now,
        )
    )
    if email is None:
        raise InvalidMemberToken()
    return email


async def get_own_member(session: AsyncSession, *, email: str, member_id: uuid.UUID) -> Member:
    member = await session.get(Member, member_id)
    if member is None or member.email != email:
        raise NotFound("No such member.")
    return member


async def update_details(
    session: AsyncSession,
    *,
    member: Member,
    values: dict[str, Any],
    now: datetime,
) -> Member:
    """Change details; a consent that changes gets the moment of the change (rule 5)."""
    before: dict[str, Any] = {}
    for name, value in values.items():
        if getattr(member, name) == value:
            continue
        before[name] = getattr(member, name)
        setattr(member, name, value)
        if name == "marketing_opt_in":
            member.marketing_opt_in_at = now
        elif name == "share_contact":
            member.share_contact_at = now
    await session.flush()
    if before:
        await audit.record(
            session,
            actor=Actor(label="member"),
            action="member.update",
            entity_type="member",
            entity_id=member.id,
            changes={name: [str(old), str(values[name])] for name, old in before.items()},
        )
    return member


async def pending_sign_in(session: AsyncSession, *, token: str, now: datetime) -> str | None:
    """The address a live link is for, without using it up.

    The landing page shows this before the visitor presses "sign in": mail scanners fetch
    links to check them, and a fetch must not spend the member's single use.
    """
    email: str | None = await session.scalar(
        select(MemberSignInLink.email).where(
            MemberSignInLink.token_hash == _hash(token),
            MemberSignInLink.used_at.is_(None),
            MemberSignInLink.expires_at > now,
        )
    )
    return email


async def language_of(session: AsyncSession, *, email: str) -> str | None:
    """The language a person chose as a holder (their newest choice if they hold several)."""
    language: str | None = await session.scalar(
        select(Member.language)
        .where(Member.email == email.lower(), Member.erased_at.is_(None))
        .order_by(Member.created_at.desc())
        .limit(1)
    )
    return language


async def sign_out(session: AsyncSession, *, token: str, now: datetime) -> None:
    """End a member session at once (a shared computer), not when it would expire."""
    await session.execute(
        update(MemberSession)
        .where(MemberSession.token_hash == _hash(token), MemberSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def link_language(session: AsyncSession, *, token: str) -> str | None:
    """The language of whoever a link was sent to, used or not: a stale link's page is still
    shown in their language."""
    email = await session.scalar(
        select(MemberSignInLink.email).where(MemberSignInLink.token_hash == _hash(token))
    )
    return await language_of(session, email=email) if email else None

"""Member self-service sign-in: single-use e-mailed links, and the sessions they open."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import UUIDPK, Base, CreatedAt


class MemberSignInLink(UUIDPK, CreatedAt, Base):
    """Only the token's hash is kept: a copy of the database signs nobody in."""

    __tablename__ = "member_sign_in_links"

    email: Mapped[str] = mapped_column(String(254), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class MemberSession(UUIDPK, CreatedAt, Base):
    """Keyed by e-mail address: a person sees every membership they hold under it."""

    __tablename__ = "member_sessions"

    email: Mapped[str] = mapped_column(String(254), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

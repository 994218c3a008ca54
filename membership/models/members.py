"""The people who hold cards, their consents, and the pseudonym their visits carry."""

from __future__ import annotations

import secrets
from datetime import date, datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import UUIDPK, Base, Timestamps


def new_visitor_key() -> str:
    """A random pseudonym: check-ins keep it after the link to the person is erased (rule 5)."""
    return secrets.token_hex(16)


class Member(UUIDPK, Timestamps, Base):
    __tablename__ = "members"
    __table_args__ = (CheckConstraint("language IN ('en', 'nl')", name="language"),)

    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    birth_date: Mapped[date | None]
    postal_code: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2), default="nl")
    photo_path: Mapped[str | None] = mapped_column(String(255))
    visitor_key: Mapped[str | None] = mapped_column(
        String(32), unique=True, default=new_visitor_key
    )
    marketing_opt_in: Mapped[bool] = mapped_column(default=False)
    marketing_opt_in_at: Mapped[datetime | None]
    share_contact: Mapped[bool] = mapped_column(default=False)
    share_contact_at: Mapped[datetime | None]
    imported: Mapped[bool] = mapped_column(default=False)
    erased_at: Mapped[datetime | None]

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

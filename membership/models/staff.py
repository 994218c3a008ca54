"""Operator and institution staff, and the revocable bearer tokens they sign in with."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, CreatedAt, Timestamps, str_enum
from membership.models.institutions import Institution


class StaffRole(enum.StrEnum):
    OPERATOR_ADMIN = "operator_admin"
    INSTITUTION_MANAGER = "institution_manager"
    INSTITUTION_STAFF = "institution_staff"


class StaffUser(UUIDPK, Timestamps, Base):
    __tablename__ = "staff_users"
    __table_args__ = (
        # The operator works across institutions; everyone else belongs to exactly one.
        CheckConstraint(
            "(role = 'operator_admin' AND institution_id IS NULL)"
            " OR (role <> 'operator_admin' AND institution_id IS NOT NULL)",
            name="institution_scope",
        ),
    )

    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole, "staff_role"))
    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("institutions.id", ondelete="RESTRICT"), index=True
    )
    active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[datetime | None]

    institution: Mapped[Institution | None] = relationship(lazy="raise")


class StaffToken(UUIDPK, CreatedAt, Base):
    __tablename__ = "staff_tokens"

    staff_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of a 256-bit random token: fast to look up, useless if the table leaks.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    staff_user: Mapped[StaffUser] = relationship(lazy="raise")

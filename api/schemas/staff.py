"""Staff accounts and sign-in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from api.schemas.common import Name, PageQuery, PatchModel, RequestModel
from membership.models import StaffRole
from membership.staff import MIN_PASSWORD_LENGTH

Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]


class LoginRequest(RequestModel):
    email: EmailStr
    # No minimum here: a short wrong password must get the same 401 as any wrong password.
    password: Annotated[str, Field(max_length=1024)]


class StaffUserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: StaffRole
    institution_id: uuid.UUID | None
    active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LoginResponse(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`; shown only once.")
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: StaffUserRead


class StaffUserCreate(RequestModel):
    email: EmailStr
    name: Name
    password: Password
    role: StaffRole
    institution_id: uuid.UUID | None = Field(
        default=None, description="Required for institution roles; empty for operator admins."
    )


class StaffUserUpdate(PatchModel):
    nullable: ClassVar[frozenset[str]] = frozenset({"institution_id"})

    email: EmailStr | None = None
    name: Name | None = None
    password: Password | None = None
    role: StaffRole | None = None
    institution_id: uuid.UUID | None = None


class StaffUserQuery(PageQuery):
    role: StaffRole | None = None
    institution_id: uuid.UUID | None = None
    active: bool | None = None
    q: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="Part of the name or e-mail address."
    )

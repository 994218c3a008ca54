"""Staff sign-in: exchange e-mail and password for a revocable bearer token."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status

from api import problems
from api.auth import BearerToken, CurrentStaff
from api.deps import SessionDep, SettingsDep
from api.schemas.staff import LoginRequest, LoginResponse, StaffUserRead
from membership import staff

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/login", response_model=LoginResponse, responses=problems.responses(401))
async def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> LoginResponse:
    issued = await staff.login(
        session,
        email=body.email,
        password=body.password,
        ttl=timedelta(hours=settings.token_ttl_hours),
    )
    return LoginResponse(
        token=issued.token,
        expires_at=issued.expires_at,
        user=StaffUserRead.model_validate(issued.staff_user),
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problems.responses(401))
async def logout(session: SessionDep, principal: CurrentStaff, token: BearerToken) -> None:
    """Revoke the token this request was made with."""
    await staff.logout(session, token=token)


@router.get("/me", response_model=StaffUserRead, responses=problems.responses(401))
async def me(session: SessionDep, principal: CurrentStaff) -> StaffUserRead:
    user = await staff.get_staff_user(
        session, staff_user_id=principal.staff_user_id, principal=principal
    )
    return StaffUserRead.model_validate(user)

"""Staff accounts: the operator manages all; a manager the staff of their own institution."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api import problems
from api.auth import Manager
from api.deps import SessionDep
from api.schemas.common import Page
from api.schemas.staff import StaffUserCreate, StaffUserQuery, StaffUserRead, StaffUserUpdate
from membership import staff

router = APIRouter(prefix="/v1/staff-users", tags=["staff users"])


@router.get("", response_model=Page[StaffUserRead], responses=problems.responses(401, 403))
async def list_staff_users(
    session: SessionDep, principal: Manager, query: Annotated[StaffUserQuery, Query()]
) -> Page[StaffUserRead]:
    """A manager sees the staff of their own institution only."""
    result = await staff.list_staff_users(session, principal=principal, **query.model_dump())
    return Page[StaffUserRead].of(result, StaffUserRead.model_validate)


@router.post(
    "",
    response_model=StaffUserRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 409),
)
async def create_staff_user(
    body: StaffUserCreate, session: SessionDep, principal: Manager
) -> StaffUserRead:
    """A manager creates staff and managers for their own institution, never operator admins."""
    user = await staff.create_staff_user_as(session, principal=principal, **body.model_dump())
    return StaffUserRead.model_validate(user)


@router.get(
    "/{staff_user_id}", response_model=StaffUserRead, responses=problems.responses(401, 403, 404)
)
async def get_staff_user(
    staff_user_id: uuid.UUID, session: SessionDep, principal: Manager
) -> StaffUserRead:
    user = await staff.get_staff_user(session, staff_user_id=staff_user_id, principal=principal)
    return StaffUserRead.model_validate(user)


@router.patch(
    "/{staff_user_id}",
    response_model=StaffUserRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def update_staff_user(
    staff_user_id: uuid.UUID, body: StaffUserUpdate, session: SessionDep, principal: Manager
) -> StaffUserRead:
    user = await staff.update_staff_user(
        session, staff_user_id=staff_user_id, principal=principal, values=body.values()
    )
    return StaffUserRead.model_validate(user)


@router.post(
    "/{staff_user_id}/deactivate",
    response_model=StaffUserRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def deactivate_staff_user(
    staff_user_id: uuid.UUID, session: SessionDep, principal: Manager
) -> StaffUserRead:
    """Also revokes every token of the account at once."""
    user = await staff.deactivate_staff_user(
        session, staff_user_id=staff_user_id, principal=principal
    )
    return StaffUserRead.model_validate(user)

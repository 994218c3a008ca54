"""Who is calling: one dependency resolves the bearer token and enforces role and scope.

Handlers declare `CurrentStaff`, `Manager` or `OperatorAdmin` and never check roles
themselves; a route with an `{institution_id}` path parameter is scoped here as well, so
institution staff cannot reach another institution's data by changing the URL (rule 5).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep
from membership import staff
from membership.models import StaffRole
from membership.staff import InvalidToken, Principal

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="StaffToken",
    description="A token from `POST /v1/auth/login`.",
)


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The raw token; missing or not a Bearer header is the same 401 as a wrong token."""
    if credentials is None or not credentials.credentials:
        raise InvalidToken()
    return credentials.credentials


BearerToken = Annotated[str, Depends(bearer_token)]


def require(*roles: StaffRole) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting active staff with one of `roles`, within their institution."""

    async def principal(request: Request, session: SessionDep, token: BearerToken) -> Principal:
        current = await staff.authenticate(session, token=token)
        current.ensure_role(*roles)
        raw_institution_id = request.path_params.get("institution_id")
        if raw_institution_id is not None:
            try:
                institution_id = uuid.UUID(str(raw_institution_id))
            except ValueError:
                # Not an id at all: path validation answers with a 422 of its own.
                return current
            current.ensure_institution(institution_id)
        return current

    return principal


CurrentStaff = Annotated[Principal, Depends(require(*StaffRole))]
Manager = Annotated[
    Principal, Depends(require(StaffRole.OPERATOR_ADMIN, StaffRole.INSTITUTION_MANAGER))
]
OperatorAdmin = Annotated[Principal, Depends(require(StaffRole.OPERATOR_ADMIN))]

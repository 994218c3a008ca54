"""Members as the operator handles them: erasure on request (docs/privacy.md).

Operator admins only. Institution staff never reach a member as such (rule 5): the desk acts on
holders only through the cards its institution issued (api/routers/cards.py).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api import problems
from api.auth import OperatorAdmin
from api.deps import SessionDep, SettingsDep
from api.routers.payments import ProviderDep
from api.schemas.members import MemberErasureRead
from membership import erasure
from membership.clock import utcnow

router = APIRouter(prefix="/v1/admin/members", tags=["members"])


@router.post(
    "/{member_id}/erasure",
    response_model=MemberErasureRead,
    responses=problems.responses(401, 403, 404, 502),
)
async def erase_member(
    member_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    principal: OperatorAdmin,
) -> MemberErasureRead:
    """Erase a member's personal data (right to be forgotten); reports keep every figure.

    Idempotent: erasing an erased member changes nothing and answers 200 with the first
    erasure's time and `erased_now: false`, so a retried request is safe.
    """
    done = await erasure.erase_member(
        session,
        member_id=member_id,
        actor=principal.actor,
        provider=provider,
        photo_dir=settings.photo_dir,
        now=utcnow(),
    )
    return MemberErasureRead.of(done)

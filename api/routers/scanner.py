"""What a paired scanner syncs so it can decide offline: the revocation feed (rule 4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api import problems
from api.deps import SessionDep
from api.device_auth import CurrentDevice
from api.schemas.cards import RevocationFeed, RevocationRead
from membership import cards

router = APIRouter(prefix="/v1/scanner", tags=["scanner"])


@router.get("/revocations", response_model=RevocationFeed, responses=problems.responses(401))
async def revocations(
    session: SessionDep,
    _device: CurrentDevice,
    since: Annotated[int, Query(ge=0, description="The cursor of the last sync; 0 at first.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> RevocationFeed:
    """Blocked, replaced and reissued cards since the cursor, oldest first: a small delta."""
    page = await cards.revocation_feed(session, since=since, limit=limit)
    return RevocationFeed(
        entries=[RevocationRead.model_validate(entry) for entry in page.entries],
        cursor=page.cursor,
        has_more=page.has_more,
    )

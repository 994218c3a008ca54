"""One call brings a scanner up to date after minutes or weeks offline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api import problems
from api.deps import SessionDep, SettingsDep
from api.device_auth import CurrentDevice
from api.schemas.cards import KeyRead, RevocationFeed, RevocationRead
from membership import cards, sync
from membership.clock import utcnow
from membership.keys import KeyStore

router = APIRouter(prefix="/v1/scanner", tags=["scanner"])


class InstitutionRules(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    timezone: str
    anti_passback_minutes: int


class AcceptedProduct(BaseModel):
    code: str
    name: str
    kind: str


class SyncRead(BaseModel):
    server_time: datetime = Field(description="Compare with the device clock to measure skew.")
    programme: str
    device_id: uuid.UUID
    venue_id: uuid.UUID
    venue_name: str
    institution: InstitutionRules
    products: list[AcceptedProduct]
    keys: list[KeyRead]
    revocations: RevocationFeed


@router.get("/sync", response_model=SyncRead, responses=problems.responses(401))
async def sync_scanner(
    session: SessionDep,
    settings: SettingsDep,
    device: CurrentDevice,
    cursor: Annotated[int, Query(ge=0, description="`revocations.cursor` of the last sync.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 5000,
) -> SyncRead:
    """Keys, the revocation delta since `cursor`, this institution's rules and products.

    Everything but the delta is small and sent whole, so a device that was offline for weeks
    needs one call (or a few, while `revocations.has_more`).
    """
    institution = device.venue.institution
    page = await cards.revocation_feed(session, since=cursor, limit=limit)
    products = await sync.products_accepted_at(session, institution_id=institution.id)
    return SyncRead(
        server_time=utcnow(),
        programme=settings.programme_code,
        device_id=device.id,
        venue_id=device.venue_id,
        venue_name=device.venue.name,
        institution=InstitutionRules.model_validate(institution, from_attributes=True),
        products=[AcceptedProduct(code=p.code, name=p.name, kind=p.kind.value) for p in products],
        keys=[KeyRead.of(info) for info in KeyStore.from_settings(settings).all_keys()],
        revocations=RevocationFeed(
            entries=[RevocationRead.model_validate(entry) for entry in page.entries],
            cursor=page.cursor,
            has_more=page.has_more,
        ),
    )

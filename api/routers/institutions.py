"""Institutions, their tariff periods and their venues (entrances)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api import problems
from api.auth import CurrentStaff, Manager, OperatorAdmin
from api.deps import SessionDep
from api.schemas.common import Page
from api.schemas.institutions import (
    InstitutionCreate,
    InstitutionQuery,
    InstitutionRead,
    InstitutionUpdate,
    TariffCreate,
    VenueCreate,
    VenueQuery,
    VenueRead,
    VenueUpdate,
)
from membership import institutions

router = APIRouter(prefix="/v1/institutions", tags=["institutions"])


@router.get("", response_model=Page[InstitutionRead], responses=problems.responses(401, 403))
async def list_institutions(
    session: SessionDep, principal: CurrentStaff, query: Annotated[InstitutionQuery, Query()]
) -> Page[InstitutionRead]:
    """Institution staff see only their own institution."""
    result = await institutions.list_institutions(
        session, principal=principal, **query.model_dump()
    )
    return Page[InstitutionRead].of(result, InstitutionRead.of)


@router.post(
    "",
    response_model=InstitutionRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 409),
)
async def create_institution(
    body: InstitutionCreate, session: SessionDep, principal: OperatorAdmin
) -> InstitutionRead:
    institution = await institutions.create_institution(
        session, **body.model_dump(), actor=principal.actor
    )
    return InstitutionRead.of(institution)


@router.get(
    "/{institution_id}", response_model=InstitutionRead, responses=problems.responses(401, 403, 404)
)
async def get_institution(
    institution_id: uuid.UUID, session: SessionDep, principal: CurrentStaff
) -> InstitutionRead:
    institution = await institutions.get_institution(
        session, institution_id=institution_id, principal=principal
    )
    return InstitutionRead.of(institution)


@router.patch(
    "/{institution_id}",
    response_model=InstitutionRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def update_institution(
    institution_id: uuid.UUID, body: InstitutionUpdate, session: SessionDep, principal: Manager
) -> InstitutionRead:
    """A manager may change their own institution's details; codes and dates are the operator's."""
    institution = await institutions.update_institution(
        session, institution_id=institution_id, principal=principal, values=body.values()
    )
    return InstitutionRead.of(institution)


@router.post(
    "/{institution_id}/deactivate",
    response_model=InstitutionRead,
    responses=problems.responses(401, 403, 404),
)
async def deactivate_institution(
    institution_id: uuid.UUID, session: SessionDep, principal: OperatorAdmin
) -> InstitutionRead:
    institution = await institutions.deactivate_institution(
        session, institution_id=institution_id, actor=principal.actor
    )
    return InstitutionRead.of(institution)


@router.post(
    "/{institution_id}/tariffs",
    response_model=InstitutionRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409),
)
async def add_tariff(
    institution_id: uuid.UUID, body: TariffCreate, session: SessionDep, principal: OperatorAdmin
) -> InstitutionRead:
    """Start a new tariff period; the institution comes back with all its periods."""
    institution = await institutions.add_tariff(
        session, institution_id=institution_id, **body.model_dump(), actor=principal.actor
    )
    return InstitutionRead.of(institution)


@router.get(
    "/{institution_id}/venues",
    response_model=Page[VenueRead],
    responses=problems.responses(401, 403, 404),
)
async def list_venues(
    institution_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentStaff,
    query: Annotated[VenueQuery, Query()],
) -> Page[VenueRead]:
    result = await institutions.list_venues(
        session, institution_id=institution_id, **query.model_dump()
    )
    return Page[VenueRead].of(result, VenueRead.model_validate)


@router.post(
    "/{institution_id}/venues",
    response_model=VenueRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409),
)
async def create_venue(
    institution_id: uuid.UUID, body: VenueCreate, session: SessionDep, principal: Manager
) -> VenueRead:
    venue = await institutions.create_venue(
        session, institution_id=institution_id, **body.model_dump(), actor=principal.actor
    )
    return VenueRead.model_validate(venue)


@router.get(
    "/{institution_id}/venues/{venue_id}",
    response_model=VenueRead,
    responses=problems.responses(401, 403, 404),
)
async def get_venue(
    institution_id: uuid.UUID, venue_id: uuid.UUID, session: SessionDep, principal: CurrentStaff
) -> VenueRead:
    venue = await institutions.get_venue(session, institution_id=institution_id, venue_id=venue_id)
    return VenueRead.model_validate(venue)


@router.patch(
    "/{institution_id}/venues/{venue_id}",
    response_model=VenueRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def update_venue(
    institution_id: uuid.UUID,
    venue_id: uuid.UUID,
    body: VenueUpdate,
    session: SessionDep,
    principal: Manager,
) -> VenueRead:
    venue = await institutions.update_venue(
        session,
        institution_id=institution_id,
        venue_id=venue_id,
        values=body.values(),
        actor=principal.actor,
    )
    return VenueRead.model_validate(venue)


@router.post(
    "/{institution_id}/venues/{venue_id}/deactivate",
    response_model=VenueRead,
    responses=problems.responses(401, 403, 404),
)
async def deactivate_venue(
    institution_id: uuid.UUID, venue_id: uuid.UUID, session: SessionDep, principal: Manager
) -> VenueRead:
    venue = await institutions.deactivate_venue(
        session, institution_id=institution_id, venue_id=venue_id, actor=principal.actor
    )
    return VenueRead.model_validate(venue)

"""Institutions, their tariff periods and their venues."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import (
    Code,
    CurrencyCode,
    MinorUnits,
    Name,
    PageQuery,
    PatchModel,
    RequestModel,
    TimeZoneName,
)
from membership.institutions import current_tariff, local_today
from membership.models import Institution

City = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
AntiPassbackMinutes = Annotated[
    int, Field(ge=0, le=1440, description="Re-scans within this window are refused.")
]


class TariffCreate(RequestModel):
    valid_from: date
    visit_tariff_minor: MinorUnits
    admission_price_minor: MinorUnits
    currency: CurrencyCode


class TariffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    valid_from: date
    visit_tariff_minor: int
    admission_price_minor: int
    currency: str


class InstitutionCreate(RequestModel):
    code: Code
    name: Name
    city: City
    timezone: TimeZoneName
    anti_passback_minutes: AntiPassbackMinutes = 15
    joined_on: date
    visit_tariff_minor: MinorUnits
    admission_price_minor: MinorUnits
    currency: CurrencyCode


class InstitutionUpdate(PatchModel):
    nullable: ClassVar[frozenset[str]] = frozenset({"left_on"})

    code: Code | None = None
    name: Name | None = None
    city: City | None = None
    timezone: TimeZoneName | None = None
    anti_passback_minutes: AntiPassbackMinutes | None = None
    joined_on: date | None = None
    left_on: date | None = None


class InstitutionRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    city: str
    timezone: str
    anti_passback_minutes: int
    joined_on: date
    left_on: date | None
    active: bool
    current_tariff: TariffRead | None = Field(description="In force today, local time.")
    tariffs: list[TariffRead]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, institution: Institution) -> InstitutionRead:
        tariff = current_tariff(institution, on=local_today(institution))
        return cls(
            id=institution.id,
            code=institution.code,
            name=institution.name,
            city=institution.city,
            timezone=institution.timezone,
            anti_passback_minutes=institution.anti_passback_minutes,
            joined_on=institution.joined_on,
            left_on=institution.left_on,
            active=institution.active,
            current_tariff=TariffRead.model_validate(tariff) if tariff else None,
            tariffs=[TariffRead.model_validate(t) for t in institution.tariffs],
            created_at=institution.created_at,
            updated_at=institution.updated_at,
        )


class InstitutionQuery(PageQuery):
    active: bool | None = None
    city: Annotated[str, Field(max_length=100)] | None = None
    q: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="Part of the name."
    )


class VenueCreate(RequestModel):
    code: Code
    name: Name
    address: Address | None = None


class VenueUpdate(PatchModel):
    nullable: ClassVar[frozenset[str]] = frozenset({"address"})

    code: Code | None = None
    name: Name | None = None
    address: Address | None = None


class VenueRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    code: str
    name: str
    address: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class VenueQuery(PageQuery):
    active: bool | None = None
    q: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="Part of the name."
    )

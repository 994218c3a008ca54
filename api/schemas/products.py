"""Products: what the programme sells and where it is accepted."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, Field

from api.schemas.common import (
    Code,
    CurrencyCode,
    MinorUnits,
    Name,
    PageQuery,
    PatchModel,
    RequestModel,
)
from membership.models import Product, ProductKind

VatRate = Annotated[int, Field(ge=0, le=10000, description="Basis points: 900 is 9 %.")]
ValidityMonths = Annotated[int, Field(ge=1, le=36)]
Age = Annotated[int, Field(ge=0, le=150)]
Holders = Annotated[int, Field(ge=1, le=20)]
GraceDays = Annotated[int, Field(ge=0, le=365)]
InstitutionIds = Annotated[list[uuid.UUID], Field(max_length=1000)]


class ProductCreate(RequestModel):
    code: Code
    name: Name
    kind: ProductKind
    price_minor: MinorUnits
    currency: CurrencyCode
    vat_rate_bp: VatRate = 0
    validity_months: ValidityMonths = 12
    min_age: Age | None = None
    max_age: Age | None = None
    min_holders: Holders = 1
    max_holders: Holders = 1
    auto_renew_allowed: bool = True
    grace_days: GraceDays = 14
    accepted_everywhere: bool = Field(
        default=True, description="False for a club card, which lists where it is accepted."
    )
    accepted_institution_ids: InstitutionIds = Field(default_factory=list)


class ProductUpdate(PatchModel):
    nullable: ClassVar[frozenset[str]] = frozenset({"min_age", "max_age"})

    code: Code | None = None
    name: Name | None = None
    kind: ProductKind | None = None
    price_minor: MinorUnits | None = None
    currency: CurrencyCode | None = None
    vat_rate_bp: VatRate | None = None
    validity_months: ValidityMonths | None = None
    min_age: Age | None = None
    max_age: Age | None = None
    min_holders: Holders | None = None
    max_holders: Holders | None = None
    auto_renew_allowed: bool | None = None
    grace_days: GraceDays | None = None
    accepted_everywhere: bool | None = None
    accepted_institution_ids: InstitutionIds | None = None


class ProductRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    kind: ProductKind
    price_minor: int
    currency: str
    vat_rate_bp: int
    validity_months: int
    min_age: int | None
    max_age: int | None
    min_holders: int
    max_holders: int
    auto_renew_allowed: bool
    grace_days: int
    accepted_everywhere: bool
    accepted_institution_ids: list[uuid.UUID]
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, product: Product) -> ProductRead:
        return cls(
            id=product.id,
            code=product.code,
            name=product.name,
            kind=product.kind,
            price_minor=product.price_minor,
            currency=product.currency,
            vat_rate_bp=product.vat_rate_bp,
            validity_months=product.validity_months,
            min_age=product.min_age,
            max_age=product.max_age,
            min_holders=product.min_holders,
            max_holders=product.max_holders,
            auto_renew_allowed=product.auto_renew_allowed,
            grace_days=product.grace_days,
            accepted_everywhere=product.accepted_everywhere,
            accepted_institution_ids=[institution.id for institution in product.accepted_at],
            active=product.active,
            created_at=product.created_at,
            updated_at=product.updated_at,
        )


class ProductQuery(PageQuery):
    active: bool | None = None
    kind: ProductKind | None = None
    institution_id: uuid.UUID | None = Field(
        default=None, description="Only products accepted at this institution."
    )
    q: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="Part of the name."
    )

"""Products: readable by all staff, changed by the operator only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api import problems
from api.auth import CurrentStaff, OperatorAdmin
from api.deps import SessionDep
from api.schemas.common import Page
from api.schemas.products import ProductCreate, ProductQuery, ProductRead, ProductUpdate
from membership import products

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get("", response_model=Page[ProductRead], responses=problems.responses(401, 403))
async def list_products(
    session: SessionDep, principal: CurrentStaff, query: Annotated[ProductQuery, Query()]
) -> Page[ProductRead]:
    result = await products.list_products(session, **query.model_dump())
    return Page[ProductRead].of(result, ProductRead.of)


@router.post(
    "",
    response_model=ProductRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 409),
)
async def create_product(
    body: ProductCreate, session: SessionDep, principal: OperatorAdmin
) -> ProductRead:
    product = await products.create_product(session, **body.model_dump(), actor=principal.actor)
    return ProductRead.of(product)


@router.get(
    "/{product_id}", response_model=ProductRead, responses=problems.responses(401, 403, 404)
)
async def get_product(
    product_id: uuid.UUID, session: SessionDep, principal: CurrentStaff
) -> ProductRead:
    return ProductRead.of(await products.get_product(session, product_id=product_id))


@router.patch(
    "/{product_id}", response_model=ProductRead, responses=problems.responses(401, 403, 404, 409)
)
async def update_product(
    product_id: uuid.UUID, body: ProductUpdate, session: SessionDep, principal: OperatorAdmin
) -> ProductRead:
    product = await products.update_product(
        session, product_id=product_id, values=body.values(), actor=principal.actor
    )
    return ProductRead.of(product)


@router.post(
    "/{product_id}/deactivate",
    response_model=ProductRead,
    responses=problems.responses(401, 403, 404),
)
async def deactivate_product(
    product_id: uuid.UUID, session: SessionDep, principal: OperatorAdmin
) -> ProductRead:
    product = await products.deactivate_product(
        session, product_id=product_id, actor=principal.actor
    )
    return ProductRead.of(product)

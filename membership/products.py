"""What the programme sells: prices, validity, who may hold it and where it is accepted."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from membership import audit
from membership.audit import Actor
from membership.errors import DuplicateCode, InvalidValue, NotFound
from membership.models import Institution, Product, ProductKind
from membership.pagination import (
    PageResult,
    audit_value,
    changed_fields,
    flush_unique,
    like_pattern,
    paginate,
)


def check_product(product: Product) -> None:
    """Rules across fields, checked after a create or a partial update has been merged.

    The database has the same CHECKs; checking here first gives a clear 422 instead of a
    constraint error.
    """
    if product.max_holders < product.min_holders:
        raise InvalidValue("max_holders cannot be below min_holders.", field="max_holders")
    if product.min_age is not None and product.max_age is not None:
        if product.max_age < product.min_age:
            raise InvalidValue("max_age cannot be below min_age.", field="max_age")
    if product.accepted_everywhere and product.accepted_at:
        raise InvalidValue(
            "A product accepted everywhere lists no institutions.", field="accepted_institution_ids"
        )
    if not product.accepted_everywhere and not product.accepted_at:
        raise InvalidValue(
            "A product not accepted everywhere must name where it is accepted.",
            field="accepted_institution_ids",
        )


async def _institutions(session: AsyncSession, ids: Collection[uuid.UUID]) -> list[Institution]:
    if not ids:
        return []
    found = list(
        (await session.scalars(select(Institution).where(Institution.id.in_(set(ids))))).all()
    )
    missing = set(ids) - {institution.id for institution in found}
    if missing:
        raise InvalidValue(
            "Unknown institution in accepted_institution_ids.",
            field="accepted_institution_ids",
            unknown=sorted(str(institution_id) for institution_id in missing),
        )
    return sorted(found, key=lambda institution: institution.code)


async def _ensure_code_free(session: AsyncSession, code: str) -> None:
    if await session.scalar(select(Product.id).where(Product.code == code)) is not None:
        raise DuplicateCode(f"Product code {code} is taken.", field="code")


async def _load(session: AsyncSession, product_id: uuid.UUID) -> Product:
    product = await session.scalar(
        select(Product)
        .where(Product.id == product_id)
        .options(selectinload(Product.accepted_at))
        .execution_options(populate_existing=True)
    )
    if product is None:
        raise NotFound("No such product.")
    return product


async def create_product(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    kind: ProductKind,
    price_minor: int,
    currency: str,
    vat_rate_bp: int = 0,
    validity_months: int = 12,
    min_age: int | None = None,
    max_age: int | None = None,
    min_holders: int = 1,
    max_holders: int = 1,
    auto_renew_allowed: bool = True,
    grace_days: int = 14,
    accepted_everywhere: bool = True,
    accepted_institution_ids: Collection[uuid.UUID] = (),
    actor: Actor,
) -> Product:
    """A club card names where it is accepted; a programme card is accepted everywhere."""
    await _ensure_code_free(session, code)
    product = Product(
        code=code,
        name=name,
        kind=kind,
        price_minor=price_minor,
        currency=currency,
        vat_rate_bp=vat_rate_bp,
        validity_months=validity_months,
        min_age=min_age,
        max_age=max_age,
        min_holders=min_holders,
        max_holders=max_holders,
        auto_renew_allowed=auto_renew_allowed,
        grace_days=grace_days,
        accepted_everywhere=accepted_everywhere,
        active=True,
        accepted_at=await _institutions(session, accepted_institution_ids),
    )
    check_product(product)
    session.add(product)
    await flush_unique(session, conflict=DuplicateCode(f"Product code {code} is taken."))
    await audit.record(
        session,
        actor=actor,
        action="product.create",
        entity_type="product",
        entity_id=product.id,
        changes={
            "code": code,
            "name": name,
            "kind": audit_value(kind),
            "price_minor": price_minor,
            "currency": currency,
            "vat_rate_bp": vat_rate_bp,
            "validity_months": validity_months,
            "min_age": min_age,
            "max_age": max_age,
            "min_holders": min_holders,
            "max_holders": max_holders,
            "auto_renew_allowed": auto_renew_allowed,
            "grace_days": grace_days,
            "accepted_everywhere": accepted_everywhere,
            "accepted_institution_ids": sorted(str(i.id) for i in product.accepted_at),
        },
    )
    return product


async def get_product(session: AsyncSession, *, product_id: uuid.UUID) -> Product:
    return await _load(session, product_id)


async def list_products(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    active: bool | None = None,
    kind: ProductKind | None = None,
    institution_id: uuid.UUID | None = None,
    q: str | None = None,
) -> PageResult[Product]:
    """`institution_id` keeps the products accepted there: everywhere-cards and its club cards."""
    statement: Select[Product] = (
        select(Product).options(selectinload(Product.accepted_at)).order_by(Product.code)
    )
    if active is not None:
        statement = statement.where(Product.active == active)
    if kind is not None:
        statement = statement.where(Product.kind == kind)
    if institution_id is not None:
        statement = statement.where(
            Product.accepted_everywhere | Product.accepted_at.any(Institution.id == institution_id)
        )
    if q:
        statement = statement.where(func.lower(Product.name).like(like_pattern(q), escape="\\"))
    return await paginate(session, statement, limit=limit, offset=offset)


async def update_product(
    session: AsyncSession, *, product_id: uuid.UUID, values: dict[str, Any], actor: Actor
) -> Product:
    """Partial update; a price change applies to sales from now on, never to paid terms."""
    product = await _load(session, product_id)
    values = dict(values)
    changes: dict[str, Any] = {}
    if "accepted_institution_ids" in values:
        institutions = await _institutions(session, values.pop("accepted_institution_ids"))
        old = sorted(str(i.id) for i in product.accepted_at)
        new = sorted(str(i.id) for i in institutions)
        if old != new:
            product.accepted_at = institutions
            changes["accepted_institution_ids"] = [old, new]
    code = values.get("code", product.code)
    if code != product.code:
        await _ensure_code_free(session, code)
    changes.update(changed_fields(product, values))
    check_product(product)
    if not changes:
        return product
    await flush_unique(session, conflict=DuplicateCode(f"Product code {code} is taken."))
    await audit.record(
        session,
        actor=actor,
        action="product.update",
        entity_type="product",
        entity_id=product.id,
        changes=changes,
    )
    return product


async def deactivate_product(
    session: AsyncSession, *, product_id: uuid.UUID, actor: Actor
) -> Product:
    """No longer sold; memberships already bought keep their product."""
    product = await _load(session, product_id)
    if product.active:
        product.active = False
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="product.deactivate",
            entity_type="product",
            entity_id=product.id,
            changes={"active": [True, False]},
        )
    return product

"""What a scanner needs to decide at the door while the network is down (DESIGN.md rule 4)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Product, product_institutions


async def products_accepted_at(
    session: AsyncSession, *, institution_id: uuid.UUID
) -> Sequence[Product]:
    """Programme cards everywhere, club cards only where listed: the scanner checks the code's
    product against this list when it cannot ask the server."""
    listed_here = select(product_institutions.c.product_id).where(
        product_institutions.c.institution_id == institution_id
    )
    rows = await session.scalars(
        select(Product)
        .where(
            Product.active,
            or_(Product.accepted_everywhere, Product.id.in_(listed_here)),
        )
        .order_by(Product.code)
    )
    return rows.all()

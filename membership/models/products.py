"""What the programme sells, and where each product is accepted."""

from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, Timestamps, str_enum
from membership.models.institutions import Institution


class ProductKind(enum.StrEnum):
    ANNUAL = "annual"
    YOUTH = "youth"
    DUO = "duo"
    FAMILY = "family"
    CLUB = "club"


product_institutions = Table(
    "product_institutions",
    Base.metadata,
    Column("product_id", ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "institution_id",
        ForeignKey("institutions.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class Product(UUIDPK, Timestamps, Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_non_negative"),
        CheckConstraint("validity_months BETWEEN 1 AND 36", name="validity_months"),
        CheckConstraint("vat_rate_bp BETWEEN 0 AND 10000", name="vat_rate"),
        CheckConstraint("grace_days >= 0", name="grace_days_non_negative"),
        CheckConstraint("min_holders >= 1 AND max_holders >= min_holders", name="holders"),
        CheckConstraint("min_age IS NULL OR min_age >= 0", name="min_age_non_negative"),
        CheckConstraint(
            "max_age IS NULL OR min_age IS NULL OR max_age >= min_age", name="age_range"
        ),
    )

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ProductKind] = mapped_column(str_enum(ProductKind, "product_kind"))
    price_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    vat_rate_bp: Mapped[int] = mapped_column(default=0)
    validity_months: Mapped[int] = mapped_column(default=12)
    min_age: Mapped[int | None]
    max_age: Mapped[int | None]
    min_holders: Mapped[int] = mapped_column(default=1)
    max_holders: Mapped[int] = mapped_column(default=1)
    auto_renew_allowed: Mapped[bool] = mapped_column(default=True)
    grace_days: Mapped[int] = mapped_column(default=14)
    accepted_everywhere: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True, index=True)

    accepted_at: Mapped[list[Institution]] = relationship(
        secondary=product_institutions, lazy="raise"
    )

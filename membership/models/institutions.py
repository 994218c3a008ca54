"""Participating institutions, their entrances and their clearing terms over time."""

from __future__ import annotations

import enum
import uuid
from datetime import date

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.models.base import UUIDPK, Base, Timestamps, str_enum


class Institution(UUIDPK, Timestamps, Base):
    __tablename__ = "institutions"
    __table_args__ = (
        CheckConstraint(
            "anti_passback_minutes >= 0 AND anti_passback_minutes <= 1440", name="anti_passback"
        ),
        CheckConstraint("left_on IS NULL OR left_on >= joined_on", name="left_after_joined"),
    )

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    anti_passback_minutes: Mapped[int] = mapped_column(default=15)
    joined_on: Mapped[date]
    left_on: Mapped[date | None]
    active: Mapped[bool] = mapped_column(default=True, index=True)

    venues: Mapped[list[Venue]] = relationship(back_populates="institution", lazy="raise")
    tariffs: Mapped[list[InstitutionTariff]] = relationship(
        back_populates="institution", lazy="raise", order_by="InstitutionTariff.valid_from"
    )


class InstitutionTariff(UUIDPK, Base):
    """What a visit is worth from `valid_from` on; kept per period so old statements recompute."""

    __tablename__ = "institution_tariffs"
    __table_args__ = (
        UniqueConstraint("institution_id", "valid_from"),
        CheckConstraint("visit_tariff_minor >= 0", name="visit_tariff_non_negative"),
        CheckConstraint("admission_price_minor >= 0", name="admission_price_non_negative"),
    )

    institution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE")
    )
    valid_from: Mapped[date]
    visit_tariff_minor: Mapped[int]
    admission_price_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))

    institution: Mapped[Institution] = relationship(back_populates="tariffs", lazy="raise")


class Venue(UUIDPK, Timestamps, Base):
    """A physical entrance; every check-in names one."""

    __tablename__ = "venues"
    __table_args__ = (UniqueConstraint("institution_id", "code"),)

    institution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(default=True)

    institution: Mapped[Institution] = relationship(back_populates="venues", lazy="raise")


class ClearingModel(enum.StrEnum):
    TARIFF = "tariff"
    POOL = "pool"


class ClearingPolicy(UUIDPK, Base):
    """How the programme pays institutions from `valid_from` on (kept so statements recompute).

    `tariff`: each counted visit earns the institution's visit tariff. `pool`: the period's card
    revenue times `payout_share_bp` is divided by admission price x counted visits, with at least
    `floor_bp` of the admission price per visit (the Museumkaart model).
    """

    __tablename__ = "clearing_policies"
    __table_args__ = (
        CheckConstraint("payout_share_bp BETWEEN 0 AND 10000", name="payout_share"),
        CheckConstraint("floor_bp BETWEEN 0 AND 10000", name="floor"),
    )

    valid_from: Mapped[date] = mapped_column(unique=True)
    model: Mapped[ClearingModel] = mapped_column(str_enum(ClearingModel, "clearing_model"))
    payout_share_bp: Mapped[int] = mapped_column(default=0)
    floor_bp: Mapped[int] = mapped_column(default=0)

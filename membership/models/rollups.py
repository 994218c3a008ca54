"""Additive check-in counters per institution, local day and hour, kept in the check-in's
transaction (docs/reports.md, "Scale"): the visit reports read sums from here, not rows."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import Base

# Stands for "no product" in the key: a primary key column cannot be NULL, and an upsert's
# conflict target must not contain NULLs (NULLs never conflict). No product has this id.
NO_PRODUCT = uuid.UUID(int=0)


class InstitutionDayCount(Base):
    """How many check-ins share one key; the key holds every dimension a visit report groups by.

    The institution and product are not foreign keys: the sentinel product is not a row, and a
    counter is a derived figure that `membership.rollups.rebuild` can always recompute.
    """

    __tablename__ = "institution_day_counts"

    institution_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    local_date: Mapped[date] = mapped_column(primary_key=True)
    # The scan time's hour on the institution's wall clock, 0-23.
    hour: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    result: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    counted: Mapped[bool] = mapped_column(primary_key=True)
    checkins: Mapped[int]

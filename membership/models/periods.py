"""Stored report figures: rollups and institution reports of closed periods, and the payout
statements of closed months.

Both are derived from `checkins`, and both must stay exact while check-ins keep arriving. They
record a high-water mark instead of trusting timestamps: `checkin_mark` is the highest check-in
id that was committed when the figures were computed, and `audit_mark` the highest audit entry
id (an override turns an old refused scan into a visit, and only its audit entry says when).
A check-in id above the mark, or an override audited above it, is a change the figures do not
hold; `reports/periods.py` explains why ids, unlike `received_at`, cannot miss one.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import UUIDPK, Base, BigIntPK, str_enum
from membership.models.institutions import ClearingModel


class PeriodKind(enum.StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"
    # Twelve whole calendar months that are not a calendar year: "the last 12 complete months".
    TWELVE_MONTHS = "twelve_months"


class StoredReportKind(enum.StrEnum):
    VISITS = "visits"
    FLOWS = "flows"


class ReportPeriod(UUIDPK, Base):
    """One computation of a standard period's cross-institution counts, and the programme total.

    A recomputation writes a new row (a new id) and deletes the old one, so a reader that got
    two statements from different computations can tell by the id and not mix them.
    """

    __tablename__ = "report_periods"
    __table_args__ = (
        UniqueConstraint("kind", "first_day"),
        CheckConstraint("first_day <= last_day", name="ordered"),
    )

    kind: Mapped[PeriodKind] = mapped_column(str_enum(PeriodKind, "period_kind"))
    first_day: Mapped[date]
    last_day: Mapped[date]
    # Distinct visitors of the whole programme in the period: not the sum of the institutions'.
    visitors: Mapped[int]
    computed_at: Mapped[datetime]
    # When the refresh last found no change above the marks and moved them up.
    checked_at: Mapped[datetime]
    checkin_mark: Mapped[int] = mapped_column(BigInteger)
    audit_mark: Mapped[int] = mapped_column(BigInteger)


class PeriodVisitors(Base):
    """Distinct visitors of one institution in a computed period (only institutions visited)."""

    __tablename__ = "period_visitors"

    period_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("report_periods.id", ondelete="CASCADE"), primary_key=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), primary_key=True
    )
    visitors: Mapped[int]


class PeriodPair(Base):
    """Visitors of both `a` and `b` in a computed period; each unordered pair once, `a` < `b`.

    Pairs without a shared visitor are not stored: their `both` is zero.
    """

    __tablename__ = "period_pairs"
    __table_args__ = (
        CheckConstraint("a_id < b_id", name="ordered"),
        Index("ix_period_pairs_period_id_b_id", "period_id", "b_id"),
    )

    period_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("report_periods.id", ondelete="CASCADE"), primary_key=True
    )
    a_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), primary_key=True
    )
    b_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), primary_key=True
    )
    both: Mapped[int]


class StoredReport(Base):
    """One institution's own report of a computed period, as the live report returned it (JSON).

    Computed in the period's transaction, so it shares the period row's marks and is deleted
    with it; `k` is part of the key because the suppressed cells depend on it.
    """

    __tablename__ = "stored_reports"

    period_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("report_periods.id", ondelete="CASCADE"), primary_key=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), primary_key=True
    )
    report: Mapped[StoredReportKind] = mapped_column(
        str_enum(StoredReportKind, "stored_report_kind"), primary_key=True
    )
    k: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    payload: Mapped[str] = mapped_column(Text)


class PayoutClosing(Base):
    """A closed clearing month: the terms it was cleared on, fixed once the operator closes it.

    The primary key on the month makes closing happen once, however many operators click.
    """

    __tablename__ = "payout_closings"
    __table_args__ = (
        CheckConstraint(
            "(rate_numerator IS NULL) = (rate_denominator IS NULL)", name="rate_complete"
        ),
        CheckConstraint("rate_denominator IS NULL OR rate_denominator > 0", name="rate_positive"),
    )

    month: Mapped[date] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    model: Mapped[ClearingModel | None] = mapped_column(str_enum(ClearingModel, "clearing_model"))
    payout_share_bp: Mapped[int | None]
    floor_bp: Mapped[int | None]
    revenue_minor: Mapped[int | None] = mapped_column(BigInteger)
    floor_applied: Mapped[bool] = mapped_column(default=False)
    # The pool model's value per unit of admission price, exact, so that late visits of this
    # month are paid at the very rate its statement used.
    rate_numerator: Mapped[int | None] = mapped_column(BigInteger)
    rate_denominator: Mapped[int | None] = mapped_column(BigInteger)
    checkin_mark: Mapped[int] = mapped_column(BigInteger)
    audit_mark: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[datetime]
    closed_by: Mapped[str] = mapped_column(String(254))
    closed_by_staff_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL")
    )


class PayoutClosingLine(Base):
    """A stored statement line: what a closed month pays one institution for one product.

    `visit_month` is the month of the visits paid: the closed month itself, or, for a
    correction line, an earlier closed month whose visits arrived after it was closed.
    """

    __tablename__ = "payout_closing_lines"
    __table_args__ = (
        Index("ix_payout_closing_lines_institution_id_month", "institution_id", "month"),
        CheckConstraint("visits > 0", name="visits_positive"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("visit_month <= month", name="visit_month_not_later"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    month: Mapped[date] = mapped_column(
        ForeignKey("payout_closings.month", ondelete="CASCADE"), index=True
    )
    visit_month: Mapped[date]
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))
    visits: Mapped[int]
    amount_minor: Mapped[int] = mapped_column(BigInteger)

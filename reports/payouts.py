"""The programme's clearing: what each institution is paid for its counted visits.

Two models (docs/reports.md, "Payout"), chosen per month by the clearing policy in force on the
first day of that month; tariffs and admission prices apply per visit date, so an old statement
recomputes to the same cents after rates change. Amounts are integers in minor units; the pool
model is computed in exact fractions and rounded once per month by the largest-remainder method,
so the lines add up to the month total to the cent.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.errors import Conflict
from membership.models import (
    Checkin,
    ClearingModel,
    ClearingPolicy,
    Institution,
    InstitutionTariff,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
)
from reports.common import dialect_name, get_institution, month_start, utc_bounds

BASIS_POINTS = 10_000
_MONEY_IN = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


class NoClearingPolicy(Conflict):
    code = "no-clearing-policy"
    title = "No clearing policy is in force for a month with visits"


@dataclass(frozen=True, slots=True)
class PayoutLine:
    month: date
    institution_id: uuid.UUID
    institution_code: str
    product_id: uuid.UUID | None
    product_code: str | None
    visits: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class MonthClearing:
    """One month: the programme's terms, and visits and amounts within the statement's scope."""

    month: date
    model: str | None
    payout_share_bp: int | None
    floor_bp: int | None
    revenue_minor: int | None
    floor_applied: bool
    visits: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class InstitutionTotal:
    institution_id: uuid.UUID
    institution_code: str
    visits: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class ProductTotal:
    product_id: uuid.UUID | None
    product_code: str | None
    visits: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class PayoutStatement:
    year: int
    currency: str
    institution_id: uuid.UUID | None
    months: list[MonthClearing]
    lines: list[PayoutLine]
    institutions: list[InstitutionTotal]
    products: list[ProductTotal]
    visits: int
    total_minor: int


def round_half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__())


def largest_remainder(total: int, shares: Sequence[Fraction]) -> list[int]:
    """Integers that add up to `total`, each within one unit of its exact share.

    Everyone gets the floor of their share; the units still missing go to the largest
    fractional parts, ties to the earlier position (callers order by code, so it is stable).
    Requires `total` to be the exact sum rounded to an integer, which bounds the missing units
    between 0 and len(shares) (proof in docs/reports.md).
    """
    floors = [int(share.__floor__()) for share in shares]
    missing = total - sum(floors)
    if not 0 <= missing <= len(shares):
        raise ValueError("the total is not the rounded sum of the shares")
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return floors


@dataclass(frozen=True, slots=True)
class _Cell:
    month: int
    institution_id: uuid.UUID
    institution_code: str
    product_id: uuid.UUID | None
    product_code: str | None
    visits: int
    tariff_minor: int
    price_minor: int


async def payout_statement(
    session: AsyncSession,
    *,
    year: int,
    currency: str,
    timezone: str,
    institution_id: uuid.UUID | None = None,
) -> PayoutStatement:
    """The year's clearing by month and product, for the programme or one institution.

    The pool model divides programme-wide revenue over every institution, so the whole
    programme is always computed; an institution's statement is its share of that computation.
    """
    if institution_id is not None:
        await get_institution(session, institution_id)
    cells = await _visit_cells(session, year=year)
    revenue = await _monthly_revenue(session, year=year, currency=currency, timezone=timezone)
    policies = (
        await session.execute(select(ClearingPolicy).order_by(ClearingPolicy.valid_from))
    ).scalars()
    policy_list = list(policies)

    lines: list[PayoutLine] = []
    months: list[MonthClearing] = []
    by_month: dict[int, list[_Cell]] = defaultdict(list)
    for cell in cells:
        by_month[cell.month].append(cell)
    for month in range(1, 13):
        first_day = date(year, month, 1)
        policy = next((p for p in reversed(policy_list) if p.valid_from <= first_day), None)
        month_cells = sorted(
            by_month.get(month, []),
            key=lambda c: (c.institution_code, c.product_code or "~", str(c.product_id)),
        )
        if month_cells and policy is None:
            raise NoClearingPolicy(f"no clearing policy is in force on {first_day.isoformat()}")
        amounts, floor_applied = _clear(month_cells, policy, revenue.get(month, 0))
        month_lines = [
            PayoutLine(
                first_day,
                cell.institution_id,
                cell.institution_code,
                cell.product_id,
                cell.product_code,
                cell.visits,
                amount,
            )
            for cell, amount in zip(month_cells, amounts, strict=True)
            if institution_id is None or cell.institution_id == institution_id
        ]
        lines.extend(month_lines)
        is_pool = policy is not None and policy.model == ClearingModel.POOL
        months.append(
            MonthClearing(
                month=first_day,
                model=policy.model.value if policy else None,
                payout_share_bp=policy.payout_share_bp if is_pool and policy else None,
                floor_bp=policy.floor_bp if is_pool and policy else None,
                revenue_minor=revenue.get(month, 0) if is_pool else None,
                floor_applied=floor_applied,
                visits=sum(line.visits for line in month_lines),
                amount_minor=sum(line.amount_minor for line in month_lines),
            )
        )
    return PayoutStatement(
        year=year,
        currency=currency,
        institution_id=institution_id,
        months=months,
        lines=lines,
        institutions=_institution_totals(lines),
        products=_product_totals(lines),
        visits=sum(line.visits for line in lines),
        total_minor=sum(line.amount_minor for line in lines),
    )


def _clear(
    cells: list[_Cell], policy: ClearingPolicy | None, revenue_minor: int
) -> tuple[list[int], bool]:
    """Amounts per cell for one month, and whether the pool's floor decided them."""
    if policy is None or not cells:
        return [0] * len(cells), False
    if policy.model == ClearingModel.TARIFF:
        return [cell.tariff_minor for cell in cells], False
    weight = sum(cell.price_minor for cell in cells)
    if weight == 0:
        return [0] * len(cells), False
    pool = Fraction(revenue_minor * policy.payout_share_bp, BASIS_POINTS)
    floor = Fraction(policy.floor_bp, BASIS_POINTS)
    # Every visit's share is proportional to its admission price, so the floor (also a share
    # of the admission price) binds for all institutions at once or for none.
    rate = max(pool / weight, floor)
    shares = [rate * cell.price_minor for cell in cells]
    return largest_remainder(round_half_up(rate * weight), shares), floor > pool / weight


async def _visit_cells(session: AsyncSession, *, year: int) -> list[_Cell]:
    """Counted visits per month, institution and product, priced at the rates of their day."""
    dialect = dialect_name(session)
    tariffs = select(
        InstitutionTariff.institution_id,
        InstitutionTariff.valid_from,
        InstitutionTariff.visit_tariff_minor,
        InstitutionTariff.admission_price_minor,
        func.lead(InstitutionTariff.valid_from)
        .over(partition_by=InstitutionTariff.institution_id, order_by=InstitutionTariff.valid_from)
        .label("valid_to"),
    ).subquery()
    month = month_start(Checkin.local_date, dialect).label("month")
    stmt = (
        select(
            month,
            Institution.id,
            Institution.code,
            Checkin.product_id,
            Product.code,
            func.count(),
            func.sum(tariffs.c.visit_tariff_minor),
            func.sum(tariffs.c.admission_price_minor),
        )
        .join(Institution, Institution.id == Checkin.institution_id)
        .join(
            tariffs,
            and_(
                tariffs.c.institution_id == Checkin.institution_id,
                Checkin.local_date >= tariffs.c.valid_from,
                or_(tariffs.c.valid_to.is_(None), Checkin.local_date < tariffs.c.valid_to),
            ),
        )
        .outerjoin(Product, Product.id == Checkin.product_id)
        .where(
            Checkin.counted.is_(True),
            Checkin.local_date.between(date(year, 1, 1), date(year, 12, 31)),
        )
        .group_by(month, Institution.id, Institution.code, Checkin.product_id, Product.code)
    )
    return [
        _Cell(int(str(m)[5:7]), iid, str(code), pid, pcode, int(n), int(t), int(p))
        for m, iid, code, pid, pcode, n, t, p in (await session.execute(stmt)).all()
    ]


async def _monthly_revenue(
    session: AsyncSession, *, year: int, currency: str, timezone: str
) -> dict[int, int]:
    """Card revenue per month of the programme's calendar: money in, less refunds paid out.

    A refund lowers the month in which it is paid, not the month of the purchase, so a closed
    month's statement never changes afterwards.
    """
    bounds = [utc_bounds(date(year, m, 1), timezone) for m in range(1, 13)]
    bounds.append(utc_bounds(date(year + 1, 1, 1), timezone))
    month = case(*((Payment.paid_at < bounds[m], m) for m in range(1, 13))).label("month")
    signed = case(
        (Payment.kind == PaymentKind.REFUND, -Payment.amount_minor), else_=Payment.amount_minor
    )
    stmt = (
        select(month, func.sum(signed))
        .where(
            Payment.currency == currency,
            Payment.paid_at >= bounds[0],
            Payment.paid_at < bounds[12],
            or_(
                and_(
                    Payment.kind.in_([PaymentKind.PURCHASE, PaymentKind.RENEWAL]),
                    Payment.status.in_(_MONEY_IN),
                ),
                and_(Payment.kind == PaymentKind.REFUND, Payment.status == PaymentStatus.SUCCEEDED),
            ),
        )
        .group_by(month)
    )
    return {int(m): int(total) for m, total in (await session.execute(stmt)).all()}


def _institution_totals(lines: list[PayoutLine]) -> list[InstitutionTotal]:
    totals: dict[tuple[str, uuid.UUID], list[int]] = defaultdict(lambda: [0, 0])
    for line in lines:
        entry = totals[(line.institution_code, line.institution_id)]
        entry[0] += line.visits
        entry[1] += line.amount_minor
    return [
        InstitutionTotal(iid, code, visits, amount)
        for (code, iid), (visits, amount) in sorted(totals.items(), key=lambda kv: kv[0][0])
    ]


def _product_totals(lines: list[PayoutLine]) -> list[ProductTotal]:
    totals: dict[tuple[str | None, uuid.UUID | None], list[int]] = defaultdict(lambda: [0, 0])
    for line in lines:
        entry = totals[(line.product_code, line.product_id)]
        entry[0] += line.visits
        entry[1] += line.amount_minor
    return [
        ProductTotal(pid, code, visits, amount)
        for (code, pid), (visits, amount) in sorted(totals.items(), key=lambda kv: kv[0][0] or "~")
    ]

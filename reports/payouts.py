"""The programme's clearing: what each institution is paid for its counted visits.

Two models (docs/reports.md, "Payout"), chosen per month by the clearing policy in force on the
first day of that month; tariffs and admission prices apply per visit date, so an old statement
recomputes to the same cents after rates change. Amounts are integers in minor units; the pool
model is computed in exact fractions and rounded once per month by the largest-remainder method,
so the lines add up to the month total to the cent.

A month the operator has closed (`close_month`) is a document: its lines are stored and read
back, never recomputed. Visits that reach a closed month afterwards (late offline scans,
imports, overrides) are paid as correction lines of the next month to be closed, at the closed
month's own rate; until then they show as correction lines of the first open month.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction

from sqlalchemy import ColumnElement, Subquery, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit, rollups
from membership.audit import Actor
from membership.clock import local_date
from membership.errors import Conflict, InvalidValue
from membership.models import (
    NO_PRODUCT,
    Checkin,
    ClearingModel,
    ClearingPolicy,
    Institution,
    InstitutionDayCount,
    InstitutionTariff,
    Payment,
    PaymentKind,
    PaymentStatus,
    PayoutClosing,
    PayoutClosingLine,
    Product,
)
from membership.pagination import flush_unique
from reports.common import dialect_name, get_institution, month_start, utc_bounds
from reports.periods import Marks, as_at, changed_between, high_water

BASIS_POINTS = 10_000
_MONEY_IN = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


class NoClearingPolicy(Conflict):
    code = "no-clearing-policy"
    title = "No clearing policy is in force for a month with visits"


class InvalidMonth(InvalidValue):
    code = "invalid-month"
    title = "Not a calendar month"


class MonthNotOver(Conflict):
    code = "payout-month-not-over"
    title = "A month can be closed only after its last day"


class MonthAlreadyClosed(Conflict):
    code = "payout-month-closed"
    title = "This month is closed already; its statement does not change"


class MonthNotNext(Conflict):
    code = "payout-month-not-next"
    title = "Months are closed in order: close the month after the last closed one"


@dataclass(frozen=True, slots=True)
class PayoutLine:
    month: date
    institution_id: uuid.UUID
    institution_code: str
    product_id: uuid.UUID | None
    product_code: str | None
    visits: int
    amount_minor: int
    # Set on a correction line: the closed month whose late visits this line pays.
    correction_for: date | None = None


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
    # When the operator closed the month; None while it is open and may still change.
    closed_at: datetime | None = None


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
    month: date
    institution_id: uuid.UUID
    institution_code: str
    product_id: uuid.UUID | None
    product_code: str | None
    visits: int
    tariff_minor: int
    price_minor: int


@dataclass(frozen=True, slots=True)
class _Clearing:
    """One month cleared: an amount per cell, and the terms that decided them."""

    amounts: list[int]
    floor_applied: bool
    rate: Fraction | None


def _month_end(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _next_month(month: date) -> date:
    return _month_end(month) + timedelta(days=1)


def _runs(months: list[date]) -> list[tuple[date, date]]:
    """Consecutive months as (first day, last day) ranges, so the query keeps one range scan."""
    runs: list[tuple[date, date]] = []
    for month in months:
        if runs and _next_month(runs[-1][1]) == month:
            runs[-1] = (runs[-1][0], _month_end(month))
        else:
            runs.append((month, _month_end(month)))
    return runs


def _cell_order(cell: _Cell) -> tuple[str, str, str]:
    return (cell.institution_code, cell.product_code or "~", str(cell.product_id))


def _line_order(line: PayoutLine) -> tuple[date, bool, date, str, str, str]:
    """Month by month: its own lines by institution and product, then its corrections."""
    return (
        line.month,
        line.correction_for is not None,
        line.correction_for or line.month,
        line.institution_code,
        line.product_code or "~",
        str(line.product_id),
    )


def _policy_on(policies: list[ClearingPolicy], day: date) -> ClearingPolicy | None:
    return next((p for p in reversed(policies) if p.valid_from <= day), None)


async def _policies(session: AsyncSession) -> list[ClearingPolicy]:
    return list(
        (
            await session.execute(select(ClearingPolicy).order_by(ClearingPolicy.valid_from))
        ).scalars()
    )


async def payout_statement(
    session: AsyncSession,
    *,
    year: int,
    currency: str,
    timezone: str,
    institution_id: uuid.UUID | None = None,
) -> PayoutStatement:
    """The year's clearing by month and product, for the programme or one institution.

    Closed months are read from their stored lines. Open months are computed: the pool model
    divides programme-wide revenue over every institution, so the whole programme is computed
    and an institution's statement is its share of that computation. Its visits are summed from
    the day counters (about 120 000 rows a month on the national seed, against some 900 000
    visits): an open month pays every visit of its days, so it needs no mark. Late visits of closed
    months show as correction lines of the first open month, which will pay them; telling them
    apart needs the check-in ids, so those are counted from `checkins` (few rows above the mark).
    """
    if institution_id is not None:
        await get_institution(session, institution_id)
    closings = {
        closing.month: closing
        for closing in (
            await session.execute(select(PayoutClosing).order_by(PayoutClosing.month))
        ).scalars()
    }
    months = [date(year, m, 1) for m in range(1, 13)]
    open_months = [month for month in months if month not in closings]
    lines: list[PayoutLine] = []
    clearings: dict[date, MonthClearing] = {}
    closed_here = [month for month in months if month in closings]
    if closed_here:
        stored = await _stored_lines(session, months=closed_here, institution_id=institution_id)
        for month in closed_here:
            month_lines = stored.get(month, [])
            lines.extend(month_lines)
            clearings[month] = _month_of_closing(closings[month], month_lines)
    if open_months:
        policies = await _policies(session)
        terms = {month: _policy_on(policies, month) for month in open_months}
        # Revenue matters only to the pool model's months.
        revenue = await _monthly_revenue(
            session,
            months=[
                month
                for month, policy in terms.items()
                if policy is not None and policy.model == ClearingModel.POOL
            ],
            currency=currency,
            timezone=timezone,
        )
        cells = await _counted_cells(session, months=open_months)
        by_month: dict[date, list[_Cell]] = defaultdict(list)
        for cell in cells:
            by_month[cell.month].append(cell)
        pending: list[PayoutLine] = []
        if closings:
            last = max(closings)
            if _next_month(last) in open_months:
                pending = await _corrections(
                    session,
                    paid_in=_next_month(last),
                    closings=closings,
                    after=None,
                    upto=None,
                )
        for month in open_months:
            policy = terms[month]
            month_cells = sorted(by_month.get(month, []), key=_cell_order)
            if month_cells and policy is None:
                raise NoClearingPolicy(f"no clearing policy is in force on {month.isoformat()}")
            cleared = _clear(month_cells, policy, revenue.get(month, 0))
            month_lines = [
                PayoutLine(
                    month,
                    cell.institution_id,
                    cell.institution_code,
                    cell.product_id,
                    cell.product_code,
                    cell.visits,
                    amount,
                )
                for cell, amount in zip(month_cells, cleared.amounts, strict=True)
            ] + [line for line in pending if line.month == month]
            month_lines = [
                line
                for line in month_lines
                if institution_id is None or line.institution_id == institution_id
            ]
            lines.extend(month_lines)
            is_pool = policy is not None and policy.model == ClearingModel.POOL
            clearings[month] = MonthClearing(
                month=month,
                model=policy.model.value if policy else None,
                payout_share_bp=policy.payout_share_bp if is_pool and policy else None,
                floor_bp=policy.floor_bp if is_pool and policy else None,
                revenue_minor=revenue.get(month, 0) if is_pool else None,
                floor_applied=cleared.floor_applied,
                visits=sum(line.visits for line in month_lines),
                amount_minor=sum(line.amount_minor for line in month_lines),
            )
    lines.sort(key=_line_order)
    return PayoutStatement(
        year=year,
        currency=currency,
        institution_id=institution_id,
        months=[clearings[month] for month in months],
        lines=lines,
        institutions=_institution_totals(lines),
        products=_product_totals(lines),
        visits=sum(line.visits for line in lines),
        total_minor=sum(line.amount_minor for line in lines),
    )


def _month_of_closing(closing: PayoutClosing, lines: list[PayoutLine]) -> MonthClearing:
    is_pool = closing.model == ClearingModel.POOL
    return MonthClearing(
        month=closing.month,
        model=closing.model.value if closing.model else None,
        payout_share_bp=closing.payout_share_bp if is_pool else None,
        floor_bp=closing.floor_bp if is_pool else None,
        revenue_minor=closing.revenue_minor if is_pool else None,
        floor_applied=closing.floor_applied,
        visits=sum(line.visits for line in lines),
        amount_minor=sum(line.amount_minor for line in lines),
        closed_at=closing.closed_at,
    )


async def _stored_lines(
    session: AsyncSession, *, months: list[date], institution_id: uuid.UUID | None
) -> dict[date, list[PayoutLine]]:
    """The lines stored when these months were closed, in statement order."""
    stmt = (
        select(
            PayoutClosingLine.month,
            PayoutClosingLine.visit_month,
            PayoutClosingLine.institution_id,
            Institution.code,
            PayoutClosingLine.product_id,
            Product.code,
            PayoutClosingLine.visits,
            PayoutClosingLine.amount_minor,
        )
        .join(Institution, Institution.id == PayoutClosingLine.institution_id)
        .outerjoin(Product, Product.id == PayoutClosingLine.product_id)
        .where(PayoutClosingLine.month.in_(months))
        .order_by(PayoutClosingLine.id)
    )
    if institution_id is not None:
        stmt = stmt.where(PayoutClosingLine.institution_id == institution_id)
    result: dict[date, list[PayoutLine]] = defaultdict(list)
    for month, visit_month, iid, code, pid, pcode, visits, amount in await session.execute(stmt):
        result[month].append(
            PayoutLine(
                month,
                iid,
                str(code),
                pid,
                None if pcode is None else str(pcode),
                int(visits),
                int(amount),
                None if visit_month == month else visit_month,
            )
        )
    return result


def _clear(cells: list[_Cell], policy: ClearingPolicy | None, revenue_minor: int) -> _Clearing:
    """Amounts per cell for one month, whether the pool's floor decided them, and the rate."""
    if policy is None:
        return _Clearing([0] * len(cells), False, None)
    if policy.model == ClearingModel.TARIFF:
        return _Clearing([cell.tariff_minor for cell in cells], False, None)
    weight = sum(cell.price_minor for cell in cells)
    pool = Fraction(revenue_minor * policy.payout_share_bp, BASIS_POINTS)
    floor = Fraction(policy.floor_bp, BASIS_POINTS)
    if weight == 0:
        # Nobody to share the pool: a visit arriving later is paid at least the floor.
        return _Clearing([0] * len(cells), False, floor)
    # Every visit's share is proportional to its admission price, so the floor (also a share
    # of the admission price) binds for all institutions at once or for none.
    rate = max(pool / weight, floor)
    shares = [rate * cell.price_minor for cell in cells]
    amounts = largest_remainder(round_half_up(rate * weight), shares)
    return _Clearing(amounts, floor > pool / weight, rate)


def _tariffs() -> Subquery:
    """Each institution's rates with the day they stop applying (None: still in force)."""
    return select(
        InstitutionTariff.institution_id,
        InstitutionTariff.valid_from,
        InstitutionTariff.visit_tariff_minor,
        InstitutionTariff.admission_price_minor,
        func.lead(InstitutionTariff.valid_from)
        .over(partition_by=InstitutionTariff.institution_id, order_by=InstitutionTariff.valid_from)
        .label("valid_to"),
    ).subquery()


async def _visit_cells(session: AsyncSession, *, where: ColumnElement[bool]) -> list[_Cell]:
    """Counted visits per month, institution and product, priced at the rates of their day."""
    dialect = dialect_name(session)
    tariffs = _tariffs()
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
        .where(Checkin.counted, where)
        .group_by(month, Institution.id, Institution.code, Checkin.product_id, Product.code)
    )
    return [
        _Cell(date.fromisoformat(f"{m}-01"), iid, str(code), pid, pcode, int(n), int(t), int(p))
        for m, iid, code, pid, pcode, n, t, p in (await session.execute(stmt)).all()
    ]


async def _counted_cells(session: AsyncSession, *, months: list[date]) -> list[_Cell]:
    """What `_visit_cells` gives for every counted visit of these months, from the day counters.

    The counters are first summed per institution, day and product (their hours, results and
    reasons are of no use here, and the rest of the query then handles under a third of the rows);
    each day's sum is priced at the rates of that day, times its visits. Scans this session
    made but has not committed are counted too (`apply_pending`), as in the check-ins.
    """
    await rollups.apply_pending(session)
    dialect = dialect_name(session)
    counts = InstitutionDayCount
    days = (
        select(
            counts.institution_id,
            counts.local_date,
            counts.product_id,
            func.sum(counts.checkins).label("visits"),
        )
        .where(
            counts.counted.is_(True),
            or_(*(counts.local_date.between(first, last) for first, last in _runs(months))),
        )
        .group_by(counts.institution_id, counts.local_date, counts.product_id)
        .subquery()
    )
    tariffs = _tariffs()
    month = month_start(days.c.local_date, dialect).label("month")
    stmt = (
        select(
            month,
            Institution.id,
            Institution.code,
            days.c.product_id,
            Product.code,
            func.sum(days.c.visits),
            func.sum(tariffs.c.visit_tariff_minor * days.c.visits),
            func.sum(tariffs.c.admission_price_minor * days.c.visits),
        )
        .join(Institution, Institution.id == days.c.institution_id)
        .join(
            tariffs,
            and_(
                tariffs.c.institution_id == days.c.institution_id,
                days.c.local_date >= tariffs.c.valid_from,
                or_(tariffs.c.valid_to.is_(None), days.c.local_date < tariffs.c.valid_to),
            ),
        )
        .outerjoin(Product, Product.id == days.c.product_id)
        .group_by(month, Institution.id, Institution.code, days.c.product_id, Product.code)
    )
    return [
        _Cell(
            date.fromisoformat(f"{m}-01"),
            iid,
            str(code),
            None if pid == NO_PRODUCT else pid,
            pcode,
            int(n),
            int(t),
            int(p),
        )
        for m, iid, code, pid, pcode, n, t, p in (await session.execute(stmt)).all()
    ]


async def _corrections(
    session: AsyncSession,
    *,
    paid_in: date,
    closings: dict[date, PayoutClosing],
    after: Marks | None,
    upto: Marks | None,
) -> list[PayoutLine]:
    """Correction lines, paid in `paid_in`, for visits of closed months their closing missed.

    A late visit is one counted now (or as at `upto`) that was not a visit as at the marks of
    the last closing before (`after`; by default the latest closing). It earns what it would
    have earned in its own month: the tariff of its day, or the closed month's pool rate times
    its admission price, rounded half up per line.
    """
    if not closings:
        return []
    latest = closings[max(closings)]
    after = after or Marks(latest.checkin_mark, latest.audit_mark)
    cells = await _visit_cells(
        session,
        where=and_(
            Checkin.local_date.between(min(closings), _month_end(max(closings))),
            changed_between(after, upto),
        ),
    )
    lines = []
    for cell in sorted(cells, key=lambda c: (c.month, *_cell_order(c))):
        closing = closings.get(cell.month)
        if closing is None:
            continue
        if closing.model == ClearingModel.POOL and closing.rate_numerator is not None:
            rate = Fraction(closing.rate_numerator, closing.rate_denominator or 1)
            amount = round_half_up(rate * cell.price_minor)
        else:
            amount = cell.tariff_minor
        lines.append(
            PayoutLine(
                paid_in,
                cell.institution_id,
                cell.institution_code,
                cell.product_id,
                cell.product_code,
                cell.visits,
                amount,
                cell.month,
            )
        )
    return lines


async def close_month(
    session: AsyncSession,
    *,
    month: date,
    currency: str,
    timezone: str,
    actor: Actor,
    now: datetime,
) -> MonthClearing:
    """Close a month: store its statement lines, and the corrections it pays, for good.

    Months close in order, each once (the month is the primary key). The lines are computed
    from the check-ins up to a high-water mark (reports/periods.py), so a scan arriving while
    the month closes is either in its lines or, later, in a correction, never in both or neither.
    """
    if month.day != 1:
        raise InvalidMonth("a month is given by its first day")
    if _month_end(month) >= local_date(now, timezone):
        raise MonthNotOver(f"{month:%Y-%m} is not over yet")
    closings = {
        closing.month: closing
        for closing in (await session.execute(select(PayoutClosing))).scalars()
    }
    if month in closings:
        raise MonthAlreadyClosed(
            f"{month:%Y-%m} was closed on {closings[month].closed_at:%Y-%m-%d}"
        )
    if closings and month != _next_month(max(closings)):
        raise MonthNotNext(f"the next month to close is {_next_month(max(closings)):%Y-%m}")
    policy = _policy_on(await _policies(session), month)
    if policy is None:
        raise NoClearingPolicy(f"no clearing policy is in force on {month.isoformat()}")
    marks = await high_water(session)
    cells = sorted(
        await _visit_cells(
            session, where=and_(Checkin.local_date.between(month, _month_end(month)), as_at(marks))
        ),
        key=_cell_order,
    )
    revenue = (
        await _monthly_revenue(session, months=[month], currency=currency, timezone=timezone)
    ).get(month, 0)
    cleared = _clear(cells, policy, revenue)
    corrections = await _corrections(
        session, paid_in=month, closings=closings, after=None, upto=marks
    )
    is_pool = policy.model == ClearingModel.POOL
    closing = PayoutClosing(
        month=month,
        currency=currency,
        model=policy.model,
        payout_share_bp=policy.payout_share_bp if is_pool else None,
        floor_bp=policy.floor_bp if is_pool else None,
        revenue_minor=revenue if is_pool else None,
        floor_applied=cleared.floor_applied,
        rate_numerator=cleared.rate.numerator if cleared.rate is not None else None,
        rate_denominator=cleared.rate.denominator if cleared.rate is not None else None,
        checkin_mark=marks.checkin,
        audit_mark=marks.audit,
        closed_at=now,
        closed_by=actor.label,
        closed_by_staff_id=actor.staff_user_id,
    )
    session.add(closing)
    await flush_unique(session, conflict=MonthAlreadyClosed(f"{month:%Y-%m} was closed just now"))
    lines = [
        PayoutLine(
            month,
            cell.institution_id,
            cell.institution_code,
            cell.product_id,
            cell.product_code,
            cell.visits,
            amount,
        )
        for cell, amount in zip(cells, cleared.amounts, strict=True)
    ] + corrections
    session.add_all(
        PayoutClosingLine(
            month=month,
            visit_month=line.correction_for or month,
            institution_id=line.institution_id,
            product_id=line.product_id,
            visits=line.visits,
            amount_minor=line.amount_minor,
        )
        for line in lines
    )
    result = _month_of_closing(closing, lines)
    await audit.record(
        session,
        actor=actor,
        action="payout.close",
        entity_type="payout_month",
        entity_id=f"{month:%Y-%m}",
        changes={
            "visits": result.visits,
            "amount_minor": result.amount_minor,
            "correction_lines": len(corrections),
            "checkin_mark": marks.checkin,
        },
    )
    return result


async def _monthly_revenue(
    session: AsyncSession, *, months: list[date], currency: str, timezone: str
) -> dict[date, int]:
    """Card revenue of these months of the programme's calendar: money in, less refunds paid out.

    A refund lowers the month in which it is paid, not the month of the purchase, so a closed
    month's statement never changes afterwards. Only the months asked for are summed: payments
    have no index on `paid_at`, and a year of them costs several times a month's aggregation.
    """
    if not months:
        return {}
    ordered = sorted(months)
    # Within the months' ranges, a payment belongs to the first month that ends after it.
    month = case(
        *(
            (Payment.paid_at < utc_bounds(_next_month(m), timezone), i)
            for i, m in enumerate(ordered)
        )
    ).label("month")
    signed = case(
        (Payment.kind == PaymentKind.REFUND, -Payment.amount_minor), else_=Payment.amount_minor
    )
    stmt = (
        select(month, func.sum(signed))
        .where(
            Payment.currency == currency,
            or_(
                *(
                    and_(
                        Payment.paid_at >= utc_bounds(first, timezone),
                        Payment.paid_at < utc_bounds(last + timedelta(days=1), timezone),
                    )
                    for first, last in _runs(ordered)
                )
            ),
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
    return {ordered[int(m)]: int(total) for m, total in (await session.execute(stmt)).all()}


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

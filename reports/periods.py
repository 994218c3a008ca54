"""Rollups of closed periods: the cross-institution counts, stored, and never served stale.

Affinity and the network matrix need every visitor of every institution in the period: at
national scale that is tens of seconds of reading `checkins` (docs/reports.md, "Scale"). For a
standard period (a calendar month, quarter or year, or the latest twelve whole months) that is
over everywhere, `refresh` stores the counts those reports are built on — distinct visitors per
institution, shared visitors per pair of institutions, and the programme's distinct visitors —
computed by the same SQL the live reports run, inside the database; and, in the same
transaction, each visited institution's own visits and flows reports (reports/stored.py). The
reports read them only while they are exact.

**Why marks, not `received_at`.** A check-in's `received_at` is the server clock when its request
arrived, not when its transaction committed: a batch of offline scans or an import commits
seconds or minutes later. A refresh that recorded "computed at T" and then trusted every row
with `received_at <= T` would miss a row received before T and committed after its snapshot,
forever. Instead the refresh takes a high-water mark (`high_water`): the highest check-in id
and audit entry id such that every row up to them is committed and visible, and computes
exactly the rows up to the mark. A check-in above the mark dated up to the period's end (any
result: the visits report shows refusals, and counts new visitors against earlier visits), or
an override (which turns an old refused scan into a visit) audited above it, makes the period
changed; the reports then fall back to the live query and the next refresh recomputes it.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    Uuid,
    and_,
    any_,
    cast,
    delete,
    distinct,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from membership.clock import utcnow
from membership.errors import Conflict
from membership.models import AuditEntry, Checkin, Institution
from membership.models.periods import (
    PeriodKind,
    PeriodPair,
    PeriodVisitors,
    ReportPeriod,
    StoredReport,
    StoredReportKind,
)
from reports.common import (
    Period,
    analytic_memory,
    counted_visits,
    dialect_name,
    visitor_order,
)

log = logging.getLogger(__name__)

OVERRIDE_ACTION = "checkin.override"
# How long a mark may wait for transactions that were writing when it was taken.
BARRIER_TIMEOUT_SECONDS = 30.0


class WritersStillBusy(Conflict):
    code = "writers-still-busy"
    title = "Transactions that were writing check-ins did not finish in time; try again"


# Transactions, other than our own, that hold a ROW EXCLUSIVE lock on the check-ins or the audit
# entries of this database. An INSERT takes that lock before it draws its id from the sequence,
# and PostgreSQL gives the transaction its xid only after that, when the row is written: a
# transaction caught between the two is missing from the snapshot's list of transactions in
# progress, so the lock, not the xid, is what tells us who may still add a row below the mark.
_WRITERS = text(
    """
    SELECT DISTINCT virtualtransaction FROM pg_locks
    WHERE locktype = 'relation' AND mode = 'RowExclusiveLock'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND relation IN ('checkins'::regclass, 'audit_entries'::regclass)
      AND pid <> pg_backend_pid()
    """
)
# Every transaction holds the lock on its own virtual transaction id until it ends.
_STILL_RUNNING = text(
    "SELECT count(*) FROM pg_locks "
    "WHERE locktype = 'virtualxid' AND virtualxid = ANY(CAST(:writers AS text[]))"
)


def _mark(value: int) -> ColumnElement[int]:
    """A mark written into the statement, not bound: with `id > $1` a cached generic plan
    cannot know that few rows lie above the mark and reads the whole table instead."""
    return literal(value, BigInteger, literal_execute=True)


@dataclass(frozen=True, slots=True)
class Marks:
    """Every check-in and audit entry with an id up to these is committed and visible."""

    checkin: int
    audit: int


async def high_water(session: AsyncSession, *, timeout: float = BARRIER_TIMEOUT_SECONDS) -> Marks:
    """The highest ids below which nothing can still appear.

    Ids come from sequences, handed out at insert, not at commit: a transaction in progress may
    hold an id below the highest committed one. On PostgreSQL, after taking the marks, we wait
    until every other transaction that held a write lock on the check-ins or the audit entries
    by then has ended: one that drew an id before the marks holds that lock, and one that starts
    later draws ids above them. We may wait for a few scans that began after the marks; they
    take milliseconds. SQLite has one writer at a time, so the committed maximum is already such
    a mark. The session must be in READ COMMITTED (the default), so that its next statements
    see what those transactions wrote.
    """
    highest = (
        select(func.coalesce(func.max(Checkin.id), 0)).scalar_subquery(),
        select(func.coalesce(func.max(AuditEntry.id), 0)).scalar_subquery(),
    )
    checkin_mark, audit_mark = (await session.execute(select(*highest))).one()
    if dialect_name(session) == "postgresql":
        writers = list(await session.scalars(_WRITERS))
        deadline = time.monotonic() + timeout
        while writers and await session.scalar(_STILL_RUNNING, {"writers": writers}):
            if time.monotonic() > deadline:
                raise WritersStillBusy()
            await asyncio.sleep(0.02)
    return Marks(int(checkin_mark), int(audit_mark))


def overridden_after(audit_mark: int, upto: int | None = None) -> Select[Any]:
    """Ids of check-ins overridden (refused scans turned into visits) after the audit mark."""
    window = [AuditEntry.id > _mark(audit_mark)]
    if upto is not None:
        window.append(AuditEntry.id <= _mark(upto))
    return select(cast(AuditEntry.entity_id, BigInteger)).where(
        *window,
        AuditEntry.entity_type == "checkin",
        AuditEntry.action == OVERRIDE_ACTION,
    )


def as_at(marks: Marks) -> ColumnElement[bool]:
    """Check-in rows as they stood at the marks: inserted by then and not overridden since.

    An override after the marks changed a refused scan, which was no visit at the marks.
    """
    return and_(
        Checkin.id <= _mark(marks.checkin), Checkin.id.not_in(overridden_after(marks.audit))
    )


def changed_between(after: Marks, upto: Marks | None) -> ColumnElement[bool]:
    """Check-in rows that figures taken at `after` do not hold as they stood at `upto` (or now).

    Written as ids from two short primary-key walks (rows above the mark, overridden rows)
    rather than as `id > mark OR …`, which PostgreSQL can only answer by reading the table.
    """
    later = Checkin.__table__.alias("later")
    inserted = select(later.c.id).where(later.c.id > _mark(after.checkin))
    if upto is not None:
        inserted = inserted.where(later.c.id <= _mark(upto.checkin))
    overridden = overridden_after(after.audit, None if upto is None else upto.audit)
    changed = Checkin.id.in_(union_all(inserted, overridden))
    return changed if upto is None else and_(changed, as_at(upto))


# ------------------------------------------------------------ the SQL shared with the live reports


def _visits(period: Period, marks: Marks | None) -> list[ColumnElement[bool]]:
    """Visits with a visitor in the period: now (`marks` None) or as they stood at the marks."""
    where = [counted_visits(period), Checkin.visitor_key.is_not(None)]
    if marks is not None:
        where.append(as_at(marks))
    return where


def visitor_institutions(period: Period, marks: Marks | None = None) -> Subquery:
    """Each (visitor, institution) with a visit in the period: the cross-institution counts on
    SQLite are built on these rows (`programme_counts`)."""
    return (
        select(Checkin.visitor_key, Checkin.institution_id)
        .where(*_visits(period, marks))
        .group_by(Checkin.visitor_key, Checkin.institution_id)
        .subquery()
    )


def programme_visitors(period: Period, marks: Marks | None = None) -> Select[Any]:
    """Distinct visitors of the whole programme: not additive over institutions."""
    # DISTINCT in a subquery can hash; count(DISTINCT …) always sorts.
    keys = select(Checkin.visitor_key).where(*_visits(period, marks)).distinct().subquery()
    return select(func.count()).select_from(keys)


def institution_visitors(pairs: Subquery) -> Select[Any]:
    """Distinct visitors per institution."""
    return select(pairs.c.institution_id, func.count().label("visitors")).group_by(
        pairs.c.institution_id
    )


def shared_visitors(pairs: Subquery) -> Select[Any]:
    """Visitors of both a and b, per unordered pair with a < b; pairs sharing none are absent."""
    a, b = pairs.alias("a"), pairs.alias("b")
    return (
        select(
            a.c.institution_id.label("a_id"),
            b.c.institution_id.label("b_id"),
            func.count().label("both"),
        )
        .join(
            b,
            and_(a.c.visitor_key == b.c.visitor_key, a.c.institution_id < b.c.institution_id),
        )
        .group_by(a.c.institution_id, b.c.institution_id)
    )


# Visitor keys are 32 hex digits; ranges of them split the per-visitor pass (below).
KEY_RANGES = 6


def _key_ranges() -> list[ColumnElement[bool]]:
    """Conditions that split the visitor keys into KEY_RANGES parts of about equal size.

    Any key falls in exactly one part, whatever its form, so counts stay exact; hex keys
    balance them.
    """
    bounds = [f"{part * 256 // KEY_RANGES:02x}" for part in range(1, KEY_RANGES)]
    key = Checkin.visitor_key
    return [
        key < bounds[0],
        *(and_(key >= low, key < high) for low, high in pairwise(bounds)),
        key >= bounds[-1],
    ]


def visitor_sets(period: Period, marks: Marks | None = None) -> list[Subquery]:
    """PostgreSQL: one row per visitor of the period, with the institutions visited as an
    array in uuid order (`institutions`), in parts by visitor-key range.

    The aggregate is ordered, which PostgreSQL never hashes: it groups the visits as the
    one-visit-per-day index (visitor key first) hands them out, with no sort of the text keys
    and no hash table of the period's eight million (visitor, institution) rows, which is what
    the join of `visitor_institutions` with itself cost. Each key range is a range scan of that
    index, so the parts of one statement run side by side (a parallel append). With marks the
    visits' ids are needed, which that index lacks: then one part, read from the table and
    sorted by key bytewise (`visitor_order`), far cheaper than in the C.UTF-8 collation.
    """
    institutions = func.array_agg(
        aggregate_order_by(distinct(Checkin.institution_id), Checkin.institution_id),
        type_=ARRAY(Uuid()),
    )
    return [
        select(institutions.label("institutions"))
        .where(*_visits(period, marks), *part)
        .group_by(
            Checkin.visitor_key
            if marks is None
            else visitor_order(Checkin.visitor_key, "postgresql")
        )
        .subquery(f"visitors_{number}")
        for number, part in enumerate([[]] if marks is not None else [[r] for r in _key_ranges()])
    ]


def _positions(sets: Subquery) -> Subquery:
    """Each visitor's array with i = 0 … n and, for i >= 1, j = i … n (for i = 0, j = 0).

    Position 0 is past the array's start, so `institutions[0]` is NULL: that row stands for
    the visitor in the programme. Set-returning functions in the select list, not in FROM,
    so no function scan is set up per row.
    """
    size = func.cardinality(sets.c.institutions)
    first = select(sets.c.institutions, func.generate_series(0, size).label("i")).subquery()
    return select(
        first.c.institutions,
        first.c.i,
        func.generate_series(
            first.c.i, func.least(first.c.i, 1) * func.cardinality(first.c.institutions)
        ).label("j"),
    ).subquery()


@dataclass(frozen=True, slots=True)
class ProgrammeCounts:
    """What the network matrix and the rollups are built from: distinct visitors of the
    programme, of each institution, and of each unordered pair (a < b; absent means none)."""

    visitors_any: int
    visitors: dict[uuid.UUID, int]
    shared: dict[tuple[uuid.UUID, uuid.UUID], int]


def _pair_counts(period: Period, marks: Marks | None) -> Select[Any]:
    """Rows (a, b, visitors): a = b NULL for the programme, a = b for an institution, a < b for
    a pair (positions i < j of the sorted array). About 55 million (visitor, pair) rows for a
    national year: each part is aggregated where it runs, then the parts are summed."""
    rows = []
    for sets in visitor_sets(period, marks):
        at = _positions(sets)
        rows.append(
            select(at.c.institutions[at.c.i].label("a_id"), at.c.institutions[at.c.j].label("b_id"))
        )
    pairs = union_all(*rows).subquery("pairs")
    return select(pairs.c.a_id, pairs.c.b_id, func.count()).group_by(pairs.c.a_id, pairs.c.b_id)


async def programme_counts(
    session: AsyncSession, *, period: Period, marks: Marks | None = None
) -> ProgrammeCounts:
    """The counts of every visitor of every institution in the period, live (`marks` None) or
    as they stood at the marks for a rollup: the same statements for both.

    PostgreSQL reads the visits once (`visitor_sets`); SQLite, at the embedded scale, counts
    the (visitor, institution) rows and joins them with themselves.
    """
    if dialect_name(session) == "postgresql":
        visitors_any = 0
        visitors: dict[uuid.UUID, int] = {}
        shared: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        for a, b, n in await session.execute(_pair_counts(period, marks)):
            if a is None:
                visitors_any = int(n)
            elif a == b:
                visitors[a] = int(n)
            else:
                shared[(a, b)] = int(n)
        return ProgrammeCounts(visitors_any, visitors, shared)
    pairs = visitor_institutions(period, marks)
    return ProgrammeCounts(
        visitors_any=int((await session.execute(programme_visitors(period, marks))).scalar_one()),
        visitors={i: int(n) for i, n in await session.execute(institution_visitors(pairs))},
        shared={(a, b): int(n) for a, b, n in await session.execute(shared_visitors(pairs))},
    )


async def affinity_counts(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period
) -> AffinityCounts:
    """PostgreSQL: A's affinity counts from one pass over the period's `visitor_sets`.

    The programme-wide parts (distinct visitors of the programme and of every B) cost a pass
    over every visit whatever A is; here A's overlaps share it: they are the visitors whose
    array holds A. Rows (b, visitors, both): b NULL for the programme (both = visitors of A).
    """
    rows = []
    for sets in visitor_sets(period):
        ours = literal(institution_id, Uuid()) == any_(sets.c.institutions)
        at = select(
            sets.c.institutions,
            ours.label("ours"),
            func.generate_series(0, func.cardinality(sets.c.institutions)).label("i"),
        ).subquery()
        rows.append(select(at.c.institutions[at.c.i].label("b"), at.c.ours))
    each = union_all(*rows).subquery("each")
    visitors_a = visitors_any = 0
    others: list[tuple[uuid.UUID, int, int]] = []
    for b, visitors, both in await session.execute(
        select(each.c.b, func.count(), func.count().filter(each.c.ours)).group_by(each.c.b)
    ):
        if b is None:
            visitors_any, visitors_a = int(visitors), int(both)
        elif b != institution_id:
            others.append((b, int(visitors), int(both)))
    return AffinityCounts(visitors_a=visitors_a, visitors_any=visitors_any, others=others)


# ------------------------------------------------------------------------- standard periods


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


@dataclass(frozen=True, slots=True)
class StandardPeriod:
    kind: PeriodKind
    period: Period


def _months_after(start: date, months: int) -> date:
    """The last day of the `months`-th month counted from the month of `start` (that is 1)."""
    index = start.year * 12 + start.month - 1 + months - 1
    return _month_end(index // 12, index % 12 + 1)


def standard_kind(period: Period) -> PeriodKind | None:
    """The kind of rollup that holds exactly this period, if any."""
    start, end = period.start, period.end
    if start.day != 1 or end != _month_end(end.year, end.month):
        return None
    if end == _months_after(start, 1):
        return PeriodKind.MONTH
    if start.month % 3 == 1 and end == _months_after(start, 3):
        return PeriodKind.QUARTER
    if end == _months_after(start, 12):
        return PeriodKind.YEAR if start.month == 1 else PeriodKind.TWELVE_MONTHS
    return None


def closed_before(now: datetime) -> date:
    """The last day that is over in every time zone (UTC-12 to UTC+14): two days before UTC today.

    A scan made now falls on a local day no earlier than this day's successor, so only a late
    scan (offline, imported) can still land in a period ending on or before it.
    """
    return now.date() - timedelta(days=2)


def closed_periods(first_visit: date, now: datetime) -> Iterator[StandardPeriod]:
    """Every month, quarter and year from the first visit's year that is over everywhere, and
    the twelve months ending with the latest month that is over.

    Only the latest twelve-months window: a late scan falls in up to twelve windows, and
    keeping them all would make one scan cost twelve recomputations. The refresh drops an older
    window (`_drop_older_twelve_months`), so a request for it is counted live.
    """
    last_closed = closed_before(now)
    for year in range(first_visit.year, last_closed.year + 1):
        candidates = [
            *(
                StandardPeriod(PeriodKind.MONTH, Period(date(year, m, 1), _month_end(year, m)))
                for m in range(1, 13)
            ),
            *(
                StandardPeriod(
                    PeriodKind.QUARTER, Period(date(year, m, 1), _month_end(year, m + 2))
                )
                for m in (1, 4, 7, 10)
            ),
            StandardPeriod(PeriodKind.YEAR, Period(date(year, 1, 1), date(year, 12, 31))),
        ]
        for candidate in candidates:
            if first_visit <= candidate.period.end <= last_closed:
                yield candidate
    latest_month_end = (
        last_closed
        if last_closed == _month_end(last_closed.year, last_closed.month)
        else last_closed.replace(day=1) - timedelta(days=1)
    )
    # Ending with a December, the twelve months are a calendar year, yielded as such above.
    if latest_month_end.month != 12 and first_visit <= latest_month_end:
        start = date(latest_month_end.year - 1, latest_month_end.month + 1, 1)
        yield StandardPeriod(PeriodKind.TWELVE_MONTHS, Period(start, latest_month_end))


# ---------------------------------------------------------------------------------- refresh


# The advisory lock key of the refresh ("mem" "rfsh" in ASCII), apart from the import's.
_REFRESH_LOCK = 0x6D656D_72667368


@dataclass(frozen=True, slots=True)
class RefreshReport:
    marks: Marks
    computed: list[StandardPeriod]
    unchanged: int


async def _first_visit_day(session: AsyncSession) -> date | None:
    """The earliest local day of any check-in, one index probe per institution."""
    first = (
        select(func.min(Checkin.local_date))
        .where(Checkin.institution_id == Institution.id)
        .scalar_subquery()
    )
    value = await session.scalar(select(func.min(first)))
    return value if value is None or isinstance(value, date) else date.fromisoformat(str(value))


async def period_changed(session: AsyncSession, *, period: Period, marks: Marks) -> bool:
    """Whether a check-in up to the period's end is not held by figures taken at the marks.

    Not only visits in the period: the stored visits report shows refusals and re-entries,
    and its new visitors depend on every earlier visit, so a late import of old history
    changes it too. Rollups and stored reports of a period share its marks, so they share
    this one definition, and the refresh recomputes by it.

    Two probes, each walking ids above a mark only (primary keys), so they cost what arrived
    since the last refresh, not the size of the period.
    """
    up_to_end = Checkin.local_date <= period.end
    return bool(
        await session.scalar(
            select(
                or_(
                    exists().where(up_to_end, Checkin.id > _mark(marks.checkin)),
                    exists().where(up_to_end, Checkin.id.in_(overridden_after(marks.audit))),
                )
            )
        )
    )


async def compute_period(
    session: AsyncSession, *, standard: StandardPeriod, marks: Marks, now: datetime, k: int
) -> uuid.UUID:
    """Replace the period's rollup by the counts of the rows up to the marks (in the database),
    and store each visited institution's visits and flows reports with suppression `k`."""
    period = standard.period
    await analytic_memory(session)
    await session.execute(
        delete(ReportPeriod).where(
            ReportPeriod.kind == standard.kind, ReportPeriod.first_day == period.start
        )
    )
    counts = await programme_counts(session, period=period, marks=marks)
    stored = ReportPeriod(
        id=uuid.uuid4(),
        kind=standard.kind,
        first_day=period.start,
        last_day=period.end,
        visitors=counts.visitors_any,
        computed_at=now,
        checked_at=now,
        checkin_mark=marks.checkin,
        audit_mark=marks.audit,
    )
    session.add(stored)
    await session.flush()
    if counts.visitors:
        await session.execute(
            insert(PeriodVisitors),
            [
                {"period_id": stored.id, "institution_id": i, "visitors": n}
                for i, n in counts.visitors.items()
            ],
        )
    if counts.shared:
        await session.execute(
            insert(PeriodPair),
            [
                {"period_id": stored.id, "a_id": a, "b_id": b, "both": n}
                for (a, b), n in counts.shared.items()
            ],
        )
    await _store_institution_reports(session, period_id=stored.id, period=period, k=k)
    return stored.id


async def _store_institution_reports(
    session: AsyncSession, *, period_id: uuid.UUID, period: Period, k: int
) -> None:
    """Each visited institution's visits and flows reports, exactly as the live functions
    return them now (flows for all of them from one statement: `flows_reports`).

    They count every row they see, not only the rows up to the marks, and are still exact when
    served: every row up to the marks is visible to them, and a row above the marks that they
    included is a check-in up to the period's end above the mark, or an override audited
    above it, which makes `period_changed` true, so those figures are never served.
    """
    # Imported here because both reports import this module (they read their stored figures
    # through `reports.stored`, which builds on the marks defined here).
    from reports.affinity import flows_reports
    from reports.stored import payload
    from reports.visits import visits_report

    visited = list(
        await session.scalars(
            select(PeriodVisitors.institution_id).where(PeriodVisitors.period_id == period_id)
        )
    )
    if not visited:
        return
    every_flows = await flows_reports(session, institution_ids=visited, period=period, k=k)
    for institution_id in visited:
        visits = await visits_report(session, institution_id=institution_id, period=period, k=k)
        flows = every_flows[institution_id]
        session.add_all(
            StoredReport(
                period_id=period_id,
                institution_id=institution_id,
                report=report,
                k=k,
                payload=payload(figures),
            )
            for report, figures in (
                (StoredReportKind.VISITS, visits),
                (StoredReportKind.FLOWS, flows),
            )
        )
        await session.flush()


async def _drop_older_twelve_months(
    session: AsyncSession, *, first_visit: date, now: datetime
) -> None:
    """Drop every twelve-months rollup but the latest window's.

    Only the latest window is refreshed, so nothing would move an older one's marks, and its
    change probe would walk every check-in since; a request for it is counted live instead.
    """
    latest = [
        standard.period.start
        for standard in closed_periods(first_visit, now)
        if standard.kind is PeriodKind.TWELVE_MONTHS
    ]
    await session.execute(
        delete(ReportPeriod).where(
            ReportPeriod.kind == PeriodKind.TWELVE_MONTHS, ReportPeriod.first_day.not_in(latest)
        )
    )


async def refresh(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, k: int
) -> RefreshReport:
    """Compute missing and changed rollups of closed periods, with the institution reports for
    suppression `k` (the programme's); confirm the others up to now.

    Each period is its own transaction, so readers get the new figures as soon as they exist.
    A period found unchanged gets the new marks, which keeps the readers' change probe short.
    A period without institution reports for this `k` (computed before they existed, or for
    another k) is computed again even when unchanged: else it would never get them.
    On PostgreSQL refreshes run one at a time (an advisory lock held for the whole pass): a
    second one waits, then finds the periods the first stored unchanged and computes only what
    changed meanwhile, instead of computing every period a second time. On SQLite, and should
    the lock ever be bypassed, the unique (kind, first_day) lets one of two refreshes store a
    period and the other roll it back.
    """
    async with sessionmaker() as guard:
        if dialect_name(guard) == "postgresql":
            # Held by this open transaction, which writes nothing, until the pass ends.
            await guard.execute(select(func.pg_advisory_xact_lock(_REFRESH_LOCK)))
        return await _refresh(sessionmaker, now=now, k=k)


async def _refresh(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, k: int
) -> RefreshReport:
    # Reports of all visited institutions are stored in one transaction: one stands for all.
    reports_for_k = or_(
        exists().where(StoredReport.period_id == ReportPeriod.id, StoredReport.k == k),
        ~exists().where(PeriodVisitors.period_id == ReportPeriod.id),
    )
    async with sessionmaker() as session:
        marks = await high_water(session)
        first_visit = await _first_visit_day(session)
        stored = {
            (kind, first_day): Marks(int(checkin_mark), int(audit_mark))
            for kind, first_day, checkin_mark, audit_mark in await session.execute(
                select(
                    ReportPeriod.kind,
                    ReportPeriod.first_day,
                    ReportPeriod.checkin_mark,
                    ReportPeriod.audit_mark,
                ).where(reports_for_k)
            )
        }
        if first_visit is not None:
            await _drop_older_twelve_months(session, first_visit=first_visit, now=now)
        await session.commit()
    computed: list[StandardPeriod] = []
    unchanged = 0
    if first_visit is None:
        return RefreshReport(marks, computed, unchanged)
    for standard in closed_periods(first_visit, now):
        previous = stored.get((standard.kind, standard.period.start))
        async with sessionmaker() as session:
            if previous is not None and not await period_changed(
                session, period=standard.period, marks=previous
            ):
                await session.execute(
                    update(ReportPeriod)
                    .where(
                        ReportPeriod.kind == standard.kind,
                        ReportPeriod.first_day == standard.period.start,
                        ReportPeriod.checkin_mark == previous.checkin,
                        ReportPeriod.audit_mark == previous.audit,
                    )
                    .values(checkin_mark=marks.checkin, audit_mark=marks.audit, checked_at=now)
                )
                await session.commit()
                unchanged += 1
                continue
            try:
                await compute_period(session, standard=standard, marks=marks, now=now, k=k)
                await session.commit()
            except IntegrityError:
                await session.rollback()
                log.info("reports.refresh.skipped", extra={"period": standard})
                continue
        computed.append(standard)
    log.info(
        "reports.refresh.done",
        extra={"computed": len(computed), "unchanged": unchanged, "marks": marks},
    )
    return RefreshReport(marks, computed, unchanged)


async def refresh_forever(
    sessionmaker: async_sessionmaker[AsyncSession], *, interval: float, k: int
) -> None:
    """`refresh` again and again; a failed pass is logged and the next one retries."""
    while True:
        try:
            await refresh(sessionmaker, now=utcnow(), k=k)
        except Exception:  # the runner must outlive one bad pass, as the job runner does
            log.exception("reports.refresh.failed")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class AffinityCounts:
    """What affinity is computed from: visitors of A, of the programme, and per other B."""

    visitors_a: int
    visitors_any: int
    others: list[tuple[uuid.UUID, int, int]]  # (B, visitors(B), both)
    computed_at: datetime | None = None  # of the rollup; None when counted live


@dataclass(frozen=True, slots=True)
class NetworkCounts:
    visitors_any: int
    institutions: list[tuple[uuid.UUID, str, str, int]]  # (id, code, name, visitors)
    shared: dict[frozenset[uuid.UUID], int]
    computed_at: datetime | None = None  # of the rollup; None when counted live


def stored_period(period: Period) -> ColumnElement[bool] | None:
    """The `report_periods` row of exactly this period, as a condition; None if not standard."""
    kind = standard_kind(period)
    if kind is None:
        return None
    return and_(
        ReportPeriod.kind == kind,
        ReportPeriod.first_day == period.start,
        ReportPeriod.last_day == period.end,
    )


async def stored_affinity(
    session: AsyncSession, *, institution_id: uuid.UUID, period: Period
) -> AffinityCounts | None:
    """The rollup's counts for A, or None when there is none or it no longer holds.

    One statement reads the whole answer, so it comes from one computation even while a
    refresh replaces it.
    """
    which = stored_period(period)
    if which is None:
        return None
    own, other = aliased(PeriodVisitors), aliased(PeriodVisitors)
    # A's pair with B is stored as (A, B) or as (B, A): two primary-key lookups per B, never
    # an OR that would read every pair of the period.
    forward, backward = aliased(PeriodPair), aliased(PeriodPair)
    rows = (
        await session.execute(
            select(
                ReportPeriod.visitors,
                ReportPeriod.checkin_mark,
                ReportPeriod.audit_mark,
                ReportPeriod.computed_at,
                own.visitors,
                other.institution_id,
                other.visitors,
                func.coalesce(forward.both, backward.both),
            )
            .select_from(ReportPeriod)
            .outerjoin(
                own, and_(own.period_id == ReportPeriod.id, own.institution_id == institution_id)
            )
            .outerjoin(
                other,
                and_(other.period_id == ReportPeriod.id, other.institution_id != institution_id),
            )
            .outerjoin(
                forward,
                and_(
                    forward.period_id == ReportPeriod.id,
                    forward.a_id == institution_id,
                    forward.b_id == other.institution_id,
                ),
            )
            .outerjoin(
                backward,
                and_(
                    backward.period_id == ReportPeriod.id,
                    backward.a_id == other.institution_id,
                    backward.b_id == institution_id,
                ),
            )
            .where(which)
        )
    ).all()
    if not rows:
        return None
    visitors_any, checkin_mark, audit_mark, computed_at, visitors_a = rows[0][:5]
    if await period_changed(session, period=period, marks=Marks(checkin_mark, audit_mark)):
        return None
    return AffinityCounts(
        visitors_a=int(visitors_a or 0),
        visitors_any=int(visitors_any),
        others=[
            (other_id, int(n), int(both or 0))
            for *_, other_id, n, both in rows
            if other_id is not None
        ],
        computed_at=computed_at,
    )


async def stored_network(session: AsyncSession, *, period: Period) -> NetworkCounts | None:
    """The rollup's counts for the whole programme, or None when there is none or it is stale.

    Two statements; each returns the computation's id, and a refresh in between (a new id)
    makes this answer None rather than a mix of two computations.
    """
    which = stored_period(period)
    if which is None:
        return None
    head = (
        await session.execute(
            select(
                ReportPeriod.id,
                ReportPeriod.visitors,
                ReportPeriod.checkin_mark,
                ReportPeriod.audit_mark,
                ReportPeriod.computed_at,
                Institution.id,
                Institution.code,
                Institution.name,
                PeriodVisitors.visitors,
            )
            .select_from(ReportPeriod)
            .outerjoin(PeriodVisitors, PeriodVisitors.period_id == ReportPeriod.id)
            .outerjoin(Institution, Institution.id == PeriodVisitors.institution_id)
            .where(which)
            .order_by(Institution.code)
        )
    ).all()
    if not head:
        return None
    period_id, visitors_any, checkin_mark, audit_mark, computed_at = head[0][:5]
    pairs = (
        await session.execute(
            select(ReportPeriod.id, PeriodPair.a_id, PeriodPair.b_id, PeriodPair.both)
            .select_from(ReportPeriod)
            .outerjoin(PeriodPair, PeriodPair.period_id == ReportPeriod.id)
            .where(which)
        )
    ).all()
    if not pairs or pairs[0][0] != period_id:
        return None
    if await period_changed(session, period=period, marks=Marks(checkin_mark, audit_mark)):
        return None
    return NetworkCounts(
        visitors_any=int(visitors_any),
        institutions=[
            (iid, str(code), str(name), int(n))
            for *_, iid, code, name, n in head
            if iid is not None
        ],
        shared={frozenset((a, b)): int(n) for _, a, b, n in pairs if a is not None},
        computed_at=computed_at,
    )

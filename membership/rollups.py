"""Check-in counters kept exact in the check-in's own transaction (docs/reports.md, "Scale").

`count_checkin` notes +1 (or -1) for a check-in's key; the notes of a transaction are applied
just before it commits, as one `INSERT … ON CONFLICT DO UPDATE SET checkins = checkins + n` per
key, in key order. Applying them at commit keeps a hot counter row (a busy door's current hour)
locked for the commit only, not for a whole offline batch, and the key order means two batches
that touch the same counters can never deadlock. A counted visit is already serialised by the
unique index on (visitor, institution, day), so the counters stay exact under concurrent doors.

The same notes keep `institution_visitors` (one row per institution and visitor: the first
counted visit and the latest four, and the latest member link) exact: each counted visit is
merged into its visitor's row by an upsert whose CASE expressions read the row as locked, so two
doors counting one visitor at once both land. A visit is never uncounted and a visitor has at
most one counted visit per institution and day, so merging a date is all there is to do.

`rebuild` recomputes counters and visitor rows from the check-ins, for bulk writers (seeding,
import of history) that insert rows without going through the check-in service.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any
from typing import cast as typing_cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Table,
    Uuid,
    and_,
    case,
    cast,
    delete,
    event,
    extract,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from membership.models import (
    NO_PRODUCT,
    Checkin,
    Institution,
    InstitutionDayCount,
    InstitutionVisitor,
)

_PENDING = "membership.rollups.pending"
_TABLE = typing_cast(Table, InstitutionDayCount.__table__)
_KEY = [column.name for column in _TABLE.primary_key.columns]
_VISITS = "membership.rollups.visits"
_VISITORS = typing_cast(Table, InstitutionVisitor.__table__)
_VISITOR_KEY = [column.name for column in _VISITORS.primary_key.columns]
_LATEST = [_VISITORS.c.visit_1, _VISITORS.c.visit_2, _VISITORS.c.visit_3, _VISITORS.c.visit_4]


@dataclass(frozen=True, order=True, slots=True)
class CounterKey:
    institution_id: uuid.UUID
    local_date: date
    hour: int
    product_id: uuid.UUID
    result: str
    reason: str
    counted: bool


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def key_of(checkin: Checkin, *, timezone: str) -> CounterKey:
    """The counter a check-in adds to; `timezone` is its institution's."""
    return CounterKey(
        institution_id=checkin.institution_id,
        local_date=checkin.local_date,
        hour=checkin.scanned_at.astimezone(_zone(timezone)).hour,
        product_id=checkin.product_id or NO_PRODUCT,
        result=str(checkin.result),
        reason=checkin.reason,
        counted=checkin.counted,
    )


def count_checkin(
    session: AsyncSession, checkin: Checkin, *, timezone: str, delta: int = 1
) -> None:
    """Note that `checkin` was stored (+1) or is about to change its key (-1 before, +1 after).

    Call it only for a row really inserted: a replayed scan adds nothing. A counted visit is
    also merged into its visitor's row (`note_visit`).
    """
    note(session, key_of(checkin, timezone=timezone), delta)
    if delta > 0:
        note_visit(session, checkin)


def note(session: AsyncSession, key: CounterKey, delta: int) -> None:
    """Add `delta` to a counter when the transaction commits (a key taken before a change)."""
    pending: Counter[CounterKey] = session.info.setdefault(_PENDING, Counter())
    pending[key] += delta


@dataclass(frozen=True, slots=True)
class Visit:
    """A counted visit as its visitor's row takes it in."""

    institution_id: uuid.UUID
    visitor_key: str
    local_date: date
    member_id: uuid.UUID | None


def note_visit(session: AsyncSession, checkin: Checkin) -> None:
    """Merge a counted check-in into its visitor's row when the transaction commits."""
    if not checkin.counted or checkin.visitor_key is None:
        return
    pending: list[Visit] = session.info.setdefault(_VISITS, [])
    pending.append(
        Visit(checkin.institution_id, checkin.visitor_key, checkin.local_date, checkin.member_id)
    )


def _merged(row: Any) -> dict[str, ColumnElement[Any]]:
    """The visitor row after merging the visit in `row` (its day in `visit_1`), for DO UPDATE.

    Every expression reads the stored row as locked, not a value read before, which is what
    keeps two doors that count one visitor at once exact. The day is never one already stored
    (one counted visit per visitor, institution and day), so it either goes in front of a
    stored visit, shifting the later ones down, or falls off the end.
    """
    day = row.visit_1
    latest: dict[str, ColumnElement[Any]] = {
        "visit_1": case((day > _LATEST[0], day), else_=_LATEST[0])
    }
    for before, here in pairwise(_LATEST):
        latest[here.name] = case(
            (before.is_(None), null()),
            (day > before, before),
            (or_(here.is_(None), day > here), day),
            else_=here,
        )
    relink = and_(
        row.linked_on.is_not(None),
        or_(_VISITORS.c.linked_on.is_(None), row.linked_on > _VISITORS.c.linked_on),
    )
    return {
        "first_visit": case((day < _VISITORS.c.first_visit, day), else_=_VISITORS.c.first_visit),
        **latest,
        "member_id": case((relink, row.member_id), else_=_VISITORS.c.member_id),
        "linked_on": case((relink, row.linked_on), else_=_VISITORS.c.linked_on),
    }


def _insert(dialect: str) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_VISITORS)


@lru_cache(maxsize=4)
def _visit_upsert(dialect: str) -> Any:
    statement = _insert(dialect)
    return statement.on_conflict_do_update(
        index_elements=_VISITOR_KEY, set_=_merged(statement.excluded)
    )


def _rounds(visits: Sequence[Visit]) -> list[list[dict[str, Any]]]:
    """The visits to merge, as rounds of at most one visit per visitor row, each in key order.

    Only a visitor's latest four, first and latest linked visits can change the row; one
    statement cannot upsert a row twice, so a visitor with several of those in one transaction
    (an offline batch over days) gets them over several rounds. The first round holds every
    visitor, newest visit first, so the rows are locked in key order there and the later rounds
    touch only rows already held: batches that share visitors cannot deadlock.
    """
    per_visitor: dict[tuple[uuid.UUID, str], list[Visit]] = defaultdict(list)
    for visit in visits:
        per_visitor[(visit.institution_id, visit.visitor_key)].append(visit)
    rounds: list[list[dict[str, Any]]] = []
    for key in sorted(per_visitor):
        newest_first = sorted(per_visitor[key], key=lambda v: v.local_date, reverse=True)
        linked = [v for v in newest_first if v.member_id is not None][:1]
        chosen = {*newest_first[: len(_LATEST)], newest_first[-1], *linked}
        for index, visit in enumerate(v for v in newest_first if v in chosen):
            if index == len(rounds):
                rounds.append([])
            rounds[index].append(
                {
                    "institution_id": visit.institution_id,
                    "visitor_key": visit.visitor_key,
                    "first_visit": visit.local_date,
                    "visit_1": visit.local_date,
                    "member_id": visit.member_id,
                    "linked_on": visit.local_date if visit.member_id is not None else None,
                }
            )
    return rounds


def _apply_visits(session: Session) -> None:
    pending: list[Visit] | None = session.info.pop(_VISITS, None)
    if not pending:
        return
    statement = _visit_upsert(session.get_bind().dialect.name)
    for rows in _rounds(pending):
        session.execute(statement, rows)


async def merge_visits(session: AsyncSession, source: FromClause) -> None:
    """Merge every counted visit in `source` into its visitor's row, in SQL (bulk writers).

    `source` has the columns institution_id, visitor_key, local_date and member_id of counted
    visits new to the visitor rows. The rounds are those of `_rounds`, picked by window
    functions; merging commutes with the check-in service's merges, so this is exact next to
    live check-ins.
    """
    by_visitor = (source.c.institution_id, source.c.visitor_key)
    picked = select(
        *by_visitor,
        source.c.local_date,
        source.c.member_id,
        func.row_number()
        .over(partition_by=by_visitor, order_by=source.c.local_date.desc())
        .label("newest"),
        func.row_number()
        .over(partition_by=by_visitor, order_by=source.c.local_date)
        .label("oldest"),
        func.row_number()
        .over(
            partition_by=by_visitor,
            order_by=(source.c.member_id.is_(None), source.c.local_date.desc()),
        )
        .label("linked"),
    ).subquery()
    chosen = (
        select(
            picked.c.institution_id,
            picked.c.visitor_key,
            picked.c.local_date,
            picked.c.member_id,
            func.row_number()
            .over(
                partition_by=(picked.c.institution_id, picked.c.visitor_key),
                order_by=picked.c.local_date.desc(),
            )
            .label("round"),
        )
        .where(
            or_(
                picked.c.newest <= len(_LATEST),
                picked.c.oldest == 1,
                and_(picked.c.linked == 1, picked.c.member_id.is_not(None)),
            )
        )
        .subquery()
    )
    dialect = session.get_bind().dialect.name
    for number in range(1, len(_LATEST) + 3):
        rows = (
            select(
                chosen.c.institution_id,
                chosen.c.visitor_key,
                chosen.c.local_date.label("first_visit"),
                chosen.c.local_date.label("visit_1"),
                chosen.c.member_id,
                case((chosen.c.member_id.is_not(None), chosen.c.local_date), else_=null()).label(
                    "linked_on"
                ),
            )
            .where(chosen.c["round"] == number)
            .order_by(chosen.c.institution_id, chosen.c.visitor_key)
        )
        statement = _insert(dialect).from_select(
            ["institution_id", "visitor_key", "first_visit", "visit_1", "member_id", "linked_on"],
            rows,
        )
        merged = statement.on_conflict_do_update(
            index_elements=_VISITOR_KEY, set_=_merged(statement.excluded)
        )
        result = typing_cast(CursorResult[Any], await session.execute(merged))
        if not result.rowcount:
            return


async def clear_member_links(session: AsyncSession, member_ids: Collection[uuid.UUID]) -> None:
    """Remove these members' links from their check-ins and visitor rows (erasure, retention).

    The visitor key stays, so every report gives the same figures afterwards (rule 5); only
    the contact list and the renewal segment, which need the person, lose them.
    """
    ids = list(member_ids)
    if not ids:
        return
    # A visit noted but not yet merged would bring the link back at commit.
    await apply_pending(session)
    await session.execute(update(Checkin).where(Checkin.member_id.in_(ids)).values(member_id=None))
    await session.execute(
        update(_VISITORS)
        .where(_VISITORS.c.member_id.in_(ids))
        .values(member_id=None, linked_on=None)
    )


@lru_cache(maxsize=4)
def _upsert(dialect: str) -> Any:
    """Built once per dialect: every check-in commits through here, and building the statement
    (an `excluded` alias of the table) cost more than executing it."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_TABLE)
    return statement.on_conflict_do_update(
        index_elements=_KEY,
        set_={"checkins": _TABLE.c.checkins + statement.excluded.checkins},
    )


def _apply(session: Session) -> None:
    pending: Counter[CounterKey] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    changes = sorted((key, delta) for key, delta in pending.items() if delta != 0)
    if not changes:
        return
    rows = [
        {
            "institution_id": key.institution_id,
            "local_date": key.local_date,
            "hour": key.hour,
            "product_id": key.product_id,
            "result": key.result,
            "reason": key.reason,
            "counted": key.counted,
            "checkins": delta,
        }
        for key, delta in changes
    ]
    session.execute(_upsert(session.get_bind().dialect.name), rows)
    emptied = [row for row, (_, delta) in zip(rows, changes, strict=True) if delta < 0]
    for row in emptied:
        session.execute(
            delete(_TABLE).where(
                *(_TABLE.c[name] == row[name] for name in _KEY), _TABLE.c.checkins == 0
            )
        )


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # Counters before visitor rows, each in key order: one global lock order for everyone.
    _apply(session)
    _apply_visits(session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # A rolled-back transaction takes its notes with it.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_VISITS, None)


def _apply_all(session: Session) -> None:
    _apply(session)
    _apply_visits(session)


async def apply_pending(session: AsyncSession) -> None:
    """Write the notes now rather than at commit (for a caller that reads counters before)."""
    await session.run_sync(_apply_all)


def _sqlite_local_hour(value: str | None, timezone: str) -> int | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC).astimezone(_zone(timezone)).hour


async def ensure_sqlite_functions(session: AsyncSession) -> None:
    """Register `membership_local_hour` on SQLite, which has no time zone database."""
    if session.get_bind().dialect.name != "sqlite":
        return
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.create_function("membership_local_hour", 2, _sqlite_local_hour, deterministic=True)


def local_hour(column: Any, timezone: Any, dialect: str) -> ColumnElement[int]:
    """The hour of a UTC timestamp on the wall clock of `timezone` (a column or a value).

    On SQLite this needs `ensure_sqlite_functions` on the session first.
    """
    if dialect == "postgresql":
        return cast(extract("hour", func.timezone(timezone, column)), Integer)
    return func.membership_local_hour(column, timezone)


async def rebuild(
    session: AsyncSession, institution_ids: Collection[uuid.UUID] | None = None
) -> None:
    """Recompute the counters and visitor rows of these institutions (all when None) from
    their check-ins.

    Safe next to live check-ins on PostgreSQL: a counter written meanwhile by a check-in that
    the recount cannot see yet is waited for (row lock) and then added to; one it can see is
    overwritten with the recount, which includes it. Visitor rows are deleted and merged anew
    (`merge_visits`), and a merge commutes with the check-in service's.
    """
    await session.flush()
    await ensure_sqlite_functions(session)
    dialect = session.get_bind().dialect.name
    pending: Counter[CounterKey] | None = session.info.get(_PENDING)
    if pending:
        for key in [
            k for k in pending if institution_ids is None or k.institution_id in institution_ids
        ]:
            del pending[key]
    visits: list[Visit] | None = session.info.get(_VISITS)
    if visits:
        visits[:] = [
            v
            for v in visits
            if institution_ids is not None and v.institution_id not in institution_ids
        ]
    table = _TABLE
    ids = list(institution_ids) if institution_ids is not None else None
    if ids is not None and not ids:
        return
    await _rebuild_visitors(session, ids)
    wipe = delete(table)
    source = select(
        Checkin.institution_id,
        Checkin.local_date,
        local_hour(Checkin.scanned_at, Institution.timezone, dialect).label("hour"),
        func.coalesce(Checkin.product_id, literal(NO_PRODUCT, Uuid())).label("product_id"),
        Checkin.result,
        Checkin.reason,
        Checkin.counted,
        func.count().label("checkins"),
    ).join(Institution, Institution.id == Checkin.institution_id)
    if ids is not None:
        wipe = wipe.where(table.c.institution_id.in_(ids))
        source = source.where(Checkin.institution_id.in_(ids))
    source = source.group_by(*(source.selected_columns[i] for i in range(7)))
    await session.execute(wipe)
    columns = [c.name for c in table.columns]
    if dialect == "postgresql":
        statement = postgresql.insert(table).from_select(columns, source)
        statement = statement.on_conflict_do_update(
            index_elements=_KEY, set_={"checkins": statement.excluded.checkins}
        )
        await session.execute(statement)
    else:
        # SQLite serialises writers: nothing can have added a counter since the delete.
        await session.execute(table.insert().from_select(columns, source))


async def _rebuild_visitors(session: AsyncSession, ids: list[uuid.UUID] | None) -> None:
    wipe = delete(_VISITORS)
    source = select(
        Checkin.institution_id, Checkin.visitor_key, Checkin.local_date, Checkin.member_id
    ).where(Checkin.counted, Checkin.visitor_key.is_not(None))
    if ids is not None:
        wipe = wipe.where(_VISITORS.c.institution_id.in_(ids))
        source = source.where(Checkin.institution_id.in_(ids))
    await session.execute(wipe)
    await merge_visits(session, source.subquery())

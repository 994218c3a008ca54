"""Check-in counters kept exact in the check-in's own transaction (docs/reports.md, "Scale").

`count_checkin` notes +1 (or -1) for a check-in's key; the notes of a transaction are applied
just before it commits, as one `INSERT … ON CONFLICT DO UPDATE SET checkins = checkins + n` per
key, in key order. Applying them at commit keeps a hot counter row (a busy door's current hour)
locked for the commit only, not for a whole offline batch, and the key order means two batches
that touch the same counters can never deadlock. A counted visit is already serialised by the
unique index on (visitor, institution, day), so the counters stay exact under concurrent doors.

`rebuild` recomputes counters from the check-ins, for bulk writers (seeding, import of history)
that insert rows without going through the check-in service.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from typing import cast as typing_cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    Uuid,
    cast,
    delete,
    event,
    extract,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from membership.models import NO_PRODUCT, Checkin, Institution, InstitutionDayCount

_PENDING = "membership.rollups.pending"
_TABLE = typing_cast(Table, InstitutionDayCount.__table__)
_KEY = [column.name for column in _TABLE.primary_key.columns]


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

    Call it only for a row really inserted: a replayed scan adds nothing.
    """
    note(session, key_of(checkin, timezone=timezone), delta)


def note(session: AsyncSession, key: CounterKey, delta: int) -> None:
    """Add `delta` to a counter when the transaction commits (a key taken before a change)."""
    pending: Counter[CounterKey] = session.info.setdefault(_PENDING, Counter())
    pending[key] += delta


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
    _apply(session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # A rolled-back transaction takes its notes with it.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


async def apply_pending(session: AsyncSession) -> None:
    """Write the notes now rather than at commit (for a caller that reads counters before)."""
    await session.run_sync(_apply)


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
    """Recompute the counters of these institutions (all when None) from their check-ins.

    Safe next to live check-ins on PostgreSQL: a counter written meanwhile by a check-in that
    the recount cannot see yet is waited for (row lock) and then added to; one it can see is
    overwritten with the recount, which includes it.
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
    table = _TABLE
    ids = list(institution_ids) if institution_ids is not None else None
    if ids is not None and not ids:
        return
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

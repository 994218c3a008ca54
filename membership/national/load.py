"""Loading the generated programme into PostgreSQL in one transaction.

The bulk tables are truncated and loaded with FREEZE, their keys, indexes and foreign keys
dropped for the load and re-created from their own catalogue definitions afterwards, so the
schema ends exactly as the migrations made it and every foreign key is validated once,
set-based. A failed seed leaves nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.schema import CreateIndex

from membership.errors import Conflict, DomainError
from membership.models import Base
from membership.national.copy import _copy_stream, _Table
from membership.national.shape import DEFAULT_SEED, NationalSize, NationalSummary
from membership.national.tables import _tables
from membership.national.visits import Generator

# The tables loaded in bulk: truncated, loaded with FREEZE, their keys and indexes rebuilt once.
BULK_TABLES = (
    "members",
    "memberships",
    "membership_holders",
    "membership_terms",
    "payments",
    "cards",
    "checkins",
    "institution_day_counts",
    "institution_visitors",
)
# A seed goes into an empty programme only; staff accounts made beforehand may stay.
_MUST_BE_EMPTY = (*BULK_TABLES, "institutions", "products", "clearing_policies")


class NationalScaleNeedsPostgres(DomainError):
    code = "national-scale-needs-postgresql"
    title = "The national-scale seed runs on PostgreSQL only"


class ProgrammeNotEmpty(Conflict):
    code = "programme-not-empty"
    title = "The database already holds a programme"


# --- loading --------------------------------------------------------------------------------

PhaseCallback = Callable[[str, float], None]


async def seed_national(
    session: AsyncSession,
    *,
    today: date,
    factor: float = 1.0,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    programme_code: str = "MK",
    on_phase: PhaseCallback | None = None,
) -> NationalSummary:
    """Load the national programme into an empty PostgreSQL database, in the caller's transaction.

    Refuses a database that already holds a programme, unless `force`, which first empties every
    table (staff accounts included). `on_phase` hears each phase's name and seconds as it ends.
    The caller commits; until then nothing is visible, and a failure leaves nothing behind.
    """
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        raise NationalScaleNeedsPostgres(
            "The national-scale seed streams PostgreSQL's binary COPY; on SQLite use --demo."
        )
    phases: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases.append((name, now - clock))
        if on_phase is not None:
            on_phase(name, now - clock)
        clock = now

    if force:
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    else:
        for name in _MUST_BE_EMPTY:
            rows = select(Base.metadata.tables[name]).limit(1).subquery()
            if await session.scalar(select(func.count()).select_from(rows)):
                raise ProgrammeNotEmpty(
                    f"Table {name} already has rows: seed an empty database, or pass --force "
                    "to empty every table first.",
                    table=name,
                )
    generator = Generator(
        today=today, size=NationalSize.for_factor(factor), seed=seed, programme_code=programme_code
    )
    await asyncio.to_thread(generator.build_holders)
    done("generate institutions, members and cards")
    # The check-ins are drawn in a thread while the other tables load.
    drawing = asyncio.ensure_future(asyncio.to_thread(generator.build_checkins))
    try:
        await _load(session, generator, drawing, done)
    finally:
        if not drawing.done():
            drawing.cancel()
    summary = generator.summary()
    summary.phases = phases
    return summary


async def _load(
    session: AsyncSession,
    generator: Generator,
    drawing: asyncio.Future[None],
    done: Callable[[str], None],
) -> None:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    # Index builds sort in memory, with up to four parallel workers each (the large check-in
    # indexes build in about half the time with two than with none, a little less again with
    # four); the commit of a seed need not wait for a disk flush.
    await driver.execute(
        "SET LOCAL maintenance_work_mem = '1GB'; SET LOCAL max_parallel_maintenance_workers = 4;"
        " SET LOCAL synchronous_commit = off; SET LOCAL work_mem = '256MB'"
    )
    structures = await _secondary_structures(driver)
    for drop in structures.drops():
        await driver.execute(drop)
    # Truncating in this transaction is what allows COPY FREEZE: the rows arrive frozen and
    # all-visible, so no vacuum has to rewrite 12 million rows before index-only scans work.
    await driver.execute("TRUNCATE " + ", ".join(BULK_TABLES))
    done("drop keys and indexes")
    first = _tables(generator, checkins_built=False)
    for table in first:
        await _copy(driver, table)
        done(f"copy {table.name} ({table.rows:,} rows)")
    await drawing
    done("generate check-ins (what the loads above did not hide)")
    for table in _tables(generator)[len(first) :]:
        await _copy(driver, table)
        done(f"copy {table.name} ({table.rows:,} rows)")
    for create in structures.keys_and_indexes():
        await driver.execute(create)
    done("build keys and indexes")
    for create in structures.foreign_keys():
        await driver.execute(create)
    done("validate foreign keys")
    checkins = len(generator.c_member)
    await driver.execute(
        "SELECT setval(pg_get_serial_sequence('checkins', 'id'), $1, $2)",
        max(checkins, 1),
        checkins > 0,
    )
    await driver.execute("ANALYZE " + ", ".join((*BULK_TABLES, "institutions", "venues")))
    done("analyze")


async def _copy(driver: Any, table: _Table) -> None:
    await driver.copy_to_table(
        table.name,
        source=_copy_stream(table),
        columns=list(table.columns),
        format="binary",
        freeze=table.name in BULK_TABLES,
    )


@dataclass(frozen=True)
class _Structures:
    """The bulk tables' keys, indexes and foreign keys as the catalogue defines them."""

    keys: list[tuple[str, str, str]]  # table, constraint name, definition
    indexes: list[tuple[str, str]]  # index name, CREATE INDEX statement
    references: list[tuple[str, str, str]]

    def drops(self) -> list[str]:
        return [
            *(f"ALTER TABLE {t} DROP CONSTRAINT {n}" for t, n, _ in self.references),
            *(f"DROP INDEX {n}" for n, _ in self.indexes),
            *(f"ALTER TABLE {t} DROP CONSTRAINT {n}" for t, n, _ in self.keys),
        ]

    def keys_and_indexes(self) -> list[str]:
        return [
            *(f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d in self.keys),
            *(statement for _, statement in self.indexes),
        ]

    def foreign_keys(self) -> list[str]:
        return [f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d in self.references]


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def _model_index_ddl(name: str) -> str:
    """A partial index as the model (and so the migration) spells it.

    The catalogue's deparsed predicate does not survive a round trip unchanged (an IN list comes
    back as `= ANY (ARRAY[...])` with other casts), so re-creating from it would drift.
    """
    for table_name in BULK_TABLES:
        for index in Base.metadata.tables[table_name].indexes:
            if index.name == name:
                return str(CreateIndex(index).compile(dialect=_POSTGRESQL))
    raise LookupError(f"partial index {name} is not in the models")


async def _secondary_structures(driver: Any) -> _Structures:
    """Read them back from pg_catalog, so they are re-created exactly as the migrations made them.

    Foreign keys of other tables that point at a bulk table are included: TRUNCATE needs them
    out of the way, and re-adding them validates them once.
    """
    tables = list(BULK_TABLES)
    constraints = await driver.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, quote_ident(c.conname) AS name,"
        " c.contype::text AS contype, pg_get_constraintdef(c.oid) AS definition"
        " FROM pg_constraint c"
        " WHERE (c.contype IN ('p', 'u') AND c.conrelid = ANY($1::regclass[]))"
        " OR (c.contype = 'f' AND (c.conrelid = ANY($1::regclass[])"
        " OR c.confrelid = ANY($1::regclass[])))"
        " ORDER BY c.contype DESC, tbl, name",
        tables,
    )
    indexes = await driver.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition,"
        " i.indpred IS NOT NULL AS partial"
        " FROM pg_index i WHERE i.indrelid = ANY($1::regclass[]) AND NOT EXISTS"
        " (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid"
        " AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))"
        " ORDER BY name",
        tables,
    )
    return _Structures(
        keys=[(r["tbl"], r["name"], r["definition"]) for r in constraints if r["contype"] != "f"],
        indexes=[
            (r["name"], _model_index_ddl(r["name"]) if r["partial"] else r["definition"])
            for r in indexes
        ],
        references=[
            (r["tbl"], r["name"], r["definition"]) for r in constraints if r["contype"] == "f"
        ],
    )

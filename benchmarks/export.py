"""Visit export throughput and memory on PostgreSQL, for CSV and Parquet.

    .venv/bin/python -m benchmarks.export [--own] [--rows 200000] [--repeat 2] [--reload]

(Run as a module: as a script, this file would shadow the `reports` package.)

Exports a year of the busiest institution of the national seed database `membership_national`
when it exists (unless `--own`); otherwise of one institution of its own database
`membership_export_bench` filled with `--rows` counted visits by COPY. Each format is streamed
to nowhere twice: once timed (rows/s, MB/s), once under tracemalloc (peak of Python
allocations). Arrow's own buffers are outside tracemalloc, so the Arrow pool's peak is printed
too; both must stay flat however many rows are exported (a batch or a row group, never the
whole file).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import migrations
from membership.clock import local_date
from membership.db import create_engine, create_sessionmaker
from reports.common import Period
from reports.export import ExportFormat, VisitExport, csv_chunks, institution_id_key, parquet_chunks

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
NATIONAL = "membership_national"
OWN = "membership_export_bench"
SECRET = b"benchmark secret, not for any deployment"
ZONE = "Europe/Amsterdam"
YEAR = 2025
BANDS = ("0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", None)
RENDERERS: dict[ExportFormat, Callable[[AsyncSession, VisitExport], AsyncIterator[bytes]]] = {
    ExportFormat.CSV: csv_chunks,
    ExportFormat.PARQUET: parquet_chunks,
}


def _url(database: str) -> str:
    return make_url(SERVER).set(database=database).render_as_string(hide_password=False)


def _dsn(database: str) -> str:
    return make_url(_url(database)).set(drivername="postgresql").render_as_string(False)


async def _exists(database: str) -> bool:
    server = await asyncpg.connect(_dsn("postgres"))
    try:
        return bool(await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))
    finally:
        await server.close()


async def _fill_own(rows: int, reload: bool) -> None:
    """One institution with `rows` visits over a year: three venues, four products."""
    if await _exists(OWN) and not reload:
        own = await asyncpg.connect(_dsn(OWN))
        try:
            migrated = await own.fetchval("SELECT to_regclass('checkins') IS NOT NULL")
            present = (
                await own.fetchval("SELECT count(*) FROM checkins WHERE counted") if migrated else 0
            )
        finally:
            await own.close()
        if present == rows:
            return
    server = await asyncpg.connect(_dsn("postgres"))
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{OWN}" WITH (FORCE)')
        await server.execute(f'CREATE DATABASE "{OWN}"')
    finally:
        await server.close()
    # Alembic runs its own event loop: in a thread, beside this one.
    await asyncio.to_thread(migrations.upgrade, _url(OWN))
    started = time.perf_counter()
    rng = random.Random(8)
    institution = uuid.uuid4()
    venues = [uuid.uuid4() for _ in range(3)]
    products = [uuid.uuid4() for _ in range(4)]
    visitors = max(rows // 6, 1)
    keys = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(visitors)]
    zone = ZoneInfo(ZONE)
    connection = await asyncpg.connect(_dsn(OWN))
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO institutions (id, code, name, city, timezone, joined_on, active, "
                "anti_passback_minutes, created_at, updated_at) VALUES "
                "($1, 'BENCH', 'Het Bench Museum', 'Den Haag', $2, '2020-01-01', true, 15, "
                "now(), now())",
                institution,
                ZONE,
            )
            for n, (venue, name) in enumerate(
                zip(venues, ("Hoofdingang", "Café-ingang", "Zuidvleugel"), strict=True)
            ):
                await connection.execute(
                    "INSERT INTO venues (id, institution_id, code, name, active, created_at, "
                    "updated_at) VALUES ($1, $2, $3, $4, true, now(), now())",
                    venue,
                    institution,
                    f"V{n}",
                    name,
                )
            for n, product in enumerate(products):
                await connection.execute(
                    "INSERT INTO products (id, code, name, kind, price_minor, currency, "
                    "vat_rate_bp, validity_months, min_holders, max_holders, auto_renew_allowed,"
                    " grace_days, accepted_everywhere, active, created_at, updated_at) VALUES "
                    "($1, $2, $2, 'annual', 7500, 'EUR', 900, 12, 1, 1, true, 14, true, true, "
                    "now(), now())",
                    product,
                    f"BENCH{n}",
                )
            records = []
            for n in range(rows):
                visitor = n % visitors
                # Distinct days for one visitor: one visit per visitor and day (rule 1).
                day = date(YEAR, 1, 1) + timedelta(days=((n // visitors) * 53 + visitor * 7) % 365)
                local = datetime(day.year, day.month, day.day, 10, tzinfo=zone) + timedelta(
                    minutes=rng.randrange(7 * 60), seconds=rng.randrange(60)
                )
                at = local.astimezone(UTC)
                records.append(
                    (
                        f"bench-{n}",
                        institution,
                        rng.choice(venues),
                        keys[visitor],
                        rng.choice(products),
                        at,
                        at,
                        local_date(at, ZONE),
                        "admitted",
                        "ok",
                        True,
                        False,
                        False,
                        False,
                        rng.choice(BANDS),
                        f"{rng.randrange(10, 100)}",
                    )
                )
            await connection.copy_records_to_table(
                "checkins",
                records=records,
                columns=[
                    "client_scan_id",
                    "institution_id",
                    "venue_id",
                    "visitor_key",
                    "product_id",
                    "scanned_at",
                    "received_at",
                    "local_date",
                    "result",
                    "reason",
                    "counted",
                    "offline",
                    "flagged",
                    "imported",
                    "age_band",
                    "region",
                ],
            )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    print(f"loaded {rows:,} visits into {OWN} in {time.perf_counter() - started:.0f} s")


async def _pick(sessions: async_sessionmaker[AsyncSession]) -> tuple[VisitExport, int]:
    """The institution with most visits, over its whole range of visit days."""
    async with sessions() as session:
        institution_id, visits, first, last = (
            await session.execute(
                text(
                    "SELECT institution_id, count(*), min(local_date), max(local_date) "
                    "FROM checkins WHERE counted GROUP BY institution_id ORDER BY 2 DESC LIMIT 1"
                )
            )
        ).one()
        code, zone = (
            await session.execute(
                text("SELECT code, timezone FROM institutions WHERE id = :id"),
                {"id": institution_id},
            )
        ).one()
    export = VisitExport(
        institution_id=institution_id,
        institution_code=code,
        timezone=zone,
        period=Period(first, last),
        format=ExportFormat.CSV,
        id_key=institution_id_key(SECRET, institution_id),
    )
    return export, int(visits)


async def _drain(
    sessions: async_sessionmaker[AsyncSession], export: VisitExport
) -> tuple[int, float]:
    """Bytes sent, and seconds until the first chunk holding rows (what a client waits for)."""
    size = 0
    first_rows = 0.0
    # A CSV's first chunk is its header alone; a Parquet file's first chunk is a row group.
    header_chunks = 1 if export.format is ExportFormat.CSV else 0
    started = time.perf_counter()
    async with sessions() as session:
        async for n, chunk in aenumerate(RENDERERS[export.format](session, export)):
            if n == header_chunks:
                first_rows = time.perf_counter() - started
            size += len(chunk)
    return size, first_rows


async def aenumerate(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    n = 0
    async for chunk in chunks:
        yield n, chunk
        n += 1


async def main(rows: int, repeat: int, reload: bool, own: bool) -> None:
    database = NATIONAL if not own and await _exists(NATIONAL) else OWN
    if database == OWN:
        await _fill_own(rows, reload)
    engine = create_engine(_url(database))
    sessions = create_sessionmaker(engine)
    try:
        base, visits = await _pick(sessions)
        print(
            f"{database}: {base.institution_code}, {visits:,} visits "
            f"{base.period.start} … {base.period.end}"
        )
        for format in ExportFormat:
            export = VisitExport(
                institution_id=base.institution_id,
                institution_code=base.institution_code,
                timezone=base.timezone,
                period=base.period,
                format=format,
                id_key=base.id_key,
            )
            best = first = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                size, first_rows = await _drain(sessions, export)
                best = min(best, time.perf_counter() - started)
                first = min(first, first_rows)
            tracemalloc.start()
            await _drain(sessions, export)
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            # The pool's peak over the process: CSV runs first and allocates nothing in Arrow.
            arrow_peak = pa.default_memory_pool().max_memory() or 0
            arrow = f"{arrow_peak / 2**20:.1f} MiB" if format is ExportFormat.PARQUET else "-"
            print(
                f"{format.value:8} {visits / best:10,.0f} rows/s  {size / 2**20 / best:6.1f} MB/s"
                f"  {size / 2**20:7.1f} MB  best of {repeat}: {best:.2f} s"
                f" (first rows after {first:.2f} s)"
                f"  tracemalloc peak {peak / 2**20:.1f} MiB  arrow pool peak {arrow}"
            )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="visits in the own database")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--reload", action="store_true", help="rebuild the own database")
    parser.add_argument("--own", action="store_true", help=f"use {OWN} even if {NATIONAL} exists")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.repeat, arguments.reload, arguments.own))

"""Report timings on national-scale data on PostgreSQL.

    .venv/bin/python -m benchmarks.reports [--database membership_national] [--factor 1.0]
        [--skip-load | --force] [--repeat 5] [--rollups] [--only ROW,ROW]

(Run as a module: as a script, this file would shadow the `reports` package.)

Loads the programme of `membership seed --scale national` (membership/national/: 500
institutions, 1.5 million members, about 12 million check-ins over the year before today) into
its own database, created if absent, printing the time of each load phase; then prints the p50
time of each report for a large, a middle and a small institution, and of the network matrix;
for the streamed contacts export, the time of its audit row's count, to its first contacts and
to its end, and its rows.
`--skip-load` reuses the programme already in the database; `--force` replaces it. `--factor
0.02` gives a quick run. Targets (issue 8): institution report < 1 s, network < 60 s.
`--rollups` first refreshes the rollups of the closed periods and closes the payout months of the
year (printing how long each took), so affinity, network and payout read stored figures; without
it (on a database where that was never done) they are counted live. The seeded year is not a
calendar year, so affinity and network are also timed over the last calendar quarter in the
data, and every report kept per closed period over the last twelve complete months: standard
periods, which the rollups and stored reports serve. `--database` picks another
database name, so that two people can benchmark at once.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import migrations
from membership import national
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.db import create_engine, create_sessionmaker
from membership.errors import DomainError
from reports.affinity import affinity_report, flows_report
from reports.common import Period
from reports.contacts import ContactExport, count_contacts, csv_chunks
from reports.network import network_report
from reports.payouts import (
    MonthAlreadyClosed,
    MonthNotNext,
    MonthNotOver,
    close_month,
    payout_statement,
)
from reports.periods import refresh
from reports.segments import Segment, segments_report
from reports.visits import visits_report

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DATABASE = "membership_national"
ZONE = national.TIMEZONE
K = 10


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _bench_url() -> str:
    return make_url(SERVER).set(database=DATABASE).render_as_string(hide_password=False)


async def _create_database() -> None:
    server = await asyncpg.connect(_dsn(SERVER))
    try:
        if not await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await server.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await server.close()


async def _load(*, factor: float, force: bool) -> None:
    """The national seed, as `membership seed --scale national` runs it, phase by phase."""
    engine = create_engine(_bench_url())
    started = time.perf_counter()
    try:
        async with create_sessionmaker(engine)() as session:
            summary = await national.seed_national(
                session,
                today=local_date(utcnow(), ZONE),
                factor=factor,
                force=force,
                on_phase=lambda name, seconds: print(f"  {seconds:7.1f} s  {name}", flush=True),
            )
            await session.commit()
    finally:
        await engine.dispose()
    print(
        f"loaded {summary.members:,} members, {summary.checkins:,} check-ins "
        f"({summary.visits:,} visits) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


@dataclass(frozen=True)
class _Periods:
    """The periods timed, taken from the data: the seed's year ends the day before it ran."""

    year: Period
    month: Period
    as_of: date
    payout_year: int
    # The last calendar quarter inside the data: a standard period, which rollups serve.
    quarter: Period
    # The last twelve complete months: a standard period too ("twelve_months").
    twelve_months: Period


async def _periods() -> _Periods:
    connection = await asyncpg.connect(_dsn(_bench_url()))
    try:
        first, last = await connection.fetchrow(
            "SELECT min(local_date), max(local_date) FROM institution_day_counts"
        )
    finally:
        await connection.close()
    if first is None:
        raise SystemExit(f"{DATABASE} holds no check-ins: run without --skip-load")
    month_end = last.replace(day=1) - timedelta(days=1)
    # The calendar year with most of the seeded days.
    payout_year = last.year if last.month >= 7 else last.year - 1
    quarter_end = date(last.year, (last.month - 1) // 3 * 3 + 1, 1) - timedelta(days=1)
    return _Periods(
        year=Period(first, last),
        month=Period(month_end.replace(day=1), month_end),
        as_of=last,
        payout_year=payout_year,
        quarter=Period(quarter_end.replace(day=1, month=quarter_end.month - 2), quarter_end),
        twelve_months=Period(
            date(month_end.year - (month_end.month < 12), month_end.month % 12 + 1, 1), month_end
        ),
    )


async def _prepare_rollups(year: int) -> None:
    """Refresh the rollups of closed periods and close the year's payout months, timed."""
    engine = create_engine(_bench_url())
    sessions = create_sessionmaker(engine)
    try:
        started = time.perf_counter()
        result = await refresh(sessions, now=utcnow(), k=K)
        print(
            f"rollups: {len(result.computed)} periods computed, {result.unchanged} unchanged, "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        started = time.perf_counter()
        closed = 0
        for month in range(1, 13):
            async with sessions() as session:
                try:
                    await close_month(
                        session,
                        month=date(year, month, 1),
                        currency="EUR",
                        timezone=ZONE,
                        actor=Actor(label="benchmark"),
                        now=utcnow(),
                    )
                except (MonthAlreadyClosed, MonthNotNext):
                    continue
                except MonthNotOver:
                    break
                await session.commit()
                closed += 1
        print(
            f"payout: {closed} months closed in {time.perf_counter() - started:.1f} s", flush=True
        )
    finally:
        await engine.dispose()


async def _p50(action: Callable[[], Awaitable[object]], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


@dataclass(frozen=True)
class _Stream:
    count: float
    first_rows: float
    whole: float
    rows: int


async def _contacts_stream(
    sessions: async_sessionmaker[AsyncSession], institution_id: uuid.UUID, as_of: date
) -> _Stream:
    """The contacts export as its request and response run it, without the audit row (nobody
    took the data): the count the audit row records, then when the first chunk of contacts is
    ready (the header goes out before the query) and when the last is."""
    export = ContactExport(institution_id, "BENCH", as_of, tuple(Segment))
    async with sessions() as session:
        started = time.perf_counter()
        await count_contacts(session, export)
        count = time.perf_counter() - started
    async with sessions() as session:
        started = time.perf_counter()
        first: float | None = None
        lines = 0
        async for chunk in csv_chunks(session, export):
            lines += chunk.count(b"\r\n")
            if first is None and lines > 1:
                first = time.perf_counter() - started
        whole = time.perf_counter() - started
    return _Stream(count, first if first is not None else whole, whole, lines - 1)


CONTACT_ROWS = ("contacts (count)", "contacts (first rows)", "contacts (all rows)")


async def _time_contacts(
    sessions: async_sessionmaker[AsyncSession],
    picks: dict[str, Any],
    as_of: date,
    repeat: int,
    only: set[str],
) -> None:
    """p50 of the audit row's count and of the time to the first contacts and to the end of
    the stream, with the row count."""
    if only and not only & set(CONTACT_ROWS):
        return
    cells: list[tuple[float, float, float, int]] = []
    for institution_id, _ in picks.values():
        runs = [await _contacts_stream(sessions, institution_id, as_of) for _ in range(repeat)]
        cells.append(
            (
                statistics.median(run.count for run in runs),
                statistics.median(run.first_rows for run in runs),
                statistics.median(run.whole for run in runs),
                runs[-1].rows,
            )
        )
    for name, column in zip(CONTACT_ROWS[:2], (0, 1), strict=True):
        print(f"{name:<22}" + "".join(f"{cell[column]:>26.3f}" for cell in cells))
    print(
        f"{CONTACT_ROWS[2]:<22}"
        + "".join(f"{f'{whole:.3f} ({rows:,} rows)':>26}" for *_, whole, rows in cells),
        flush=True,
    )


async def _time_reports(repeat: int, periods: _Periods, only: set[str]) -> None:
    engine = create_engine(_bench_url())
    sessions = create_sessionmaker(engine)
    period, month, as_of = periods.year, periods.month, periods.as_of
    try:
        async with sessions() as session:
            ranked = (
                await session.execute(
                    text(
                        "SELECT institution_id, sum(checkins) FROM institution_day_counts"
                        " WHERE counted GROUP BY institution_id ORDER BY 2 DESC"
                    )
                )
            ).all()
        picks = {
            "large": ranked[0],
            "middle": ranked[len(ranked) // 2],
            "small": ranked[int(len(ranked) * 0.95)],
        }
        reports: dict[str, Callable[[Any, uuid.UUID], Awaitable[object]]] = {
            "visits (year)": lambda s, i: visits_report(s, institution_id=i, period=period, k=K),
            "visits (month)": lambda s, i: visits_report(s, institution_id=i, period=month, k=K),
            "visits (12 months)": lambda s, i: visits_report(
                s, institution_id=i, period=periods.twelve_months, k=K
            ),
            "affinity (year)": lambda s, i: affinity_report(
                s, institution_id=i, period=period, k=K
            ),
            "affinity (quarter)": lambda s, i: affinity_report(
                s, institution_id=i, period=periods.quarter, k=K
            ),
            "flows (year)": lambda s, i: flows_report(s, institution_id=i, period=period, k=K),
            "flows (12 months)": lambda s, i: flows_report(
                s, institution_id=i, period=periods.twelve_months, k=K
            ),
            "affinity (12 months)": lambda s, i: affinity_report(
                s, institution_id=i, period=periods.twelve_months, k=K
            ),
            "segments": lambda s, i: segments_report(s, institution_id=i, as_of=as_of),
            "payout (year)": lambda s, i: payout_statement(
                s, year=periods.payout_year, currency="EUR", timezone=ZONE, institution_id=i
            ),
        }
        print(f"\np50 of {repeat} runs, seconds")
        print(
            f"{'report':<22}" + "".join(f"{f'{n} ({v} visits)':>26}" for n, (_, v) in picks.items())
        )
        for name, report in reports.items():
            if only and name not in only:
                continue
            cells = []
            for institution_id, _ in picks.values():
                async with sessions() as session:
                    cells.append(
                        await _p50(
                            lambda report=report, i=institution_id, s=session: report(s, i), repeat
                        )
                    )
            print(f"{name:<22}" + "".join(f"{c:>26.3f}" for c in cells), flush=True)
        await _time_contacts(sessions, picks, as_of, repeat, only)
        for name, network_period in (
            ("network (year)", period),
            ("network (quarter)", periods.quarter),
            ("network (12 months)", periods.twelve_months),
        ):
            if only and name not in only:
                continue
            async with sessions() as session:
                network = await _p50(
                    lambda p=network_period, s=session: network_report(s, period=p, k=K),
                    max(1, repeat // 2),
                )
            print(f"{name:<22}{network:>26.3f}", flush=True)
    finally:
        await engine.dispose()


def main() -> None:
    global DATABASE  # one setting, read by every step of this script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--factor", type=float, default=1.0)
    loading = parser.add_mutually_exclusive_group()
    loading.add_argument("--skip-load", action="store_true", help="reuse the loaded programme")
    loading.add_argument("--force", action="store_true", help="replace a loaded programme")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rollups", action="store_true")
    parser.add_argument(
        "--only",
        default="",
        help='comma-separated report rows, e.g. "payout (year),network (year)"',
    )
    args = parser.parse_args()
    DATABASE = args.database
    if not args.skip_load:
        asyncio.run(_create_database())
        migrations.upgrade(_bench_url())
        try:
            asyncio.run(_load(factor=args.factor, force=args.force))
        except DomainError as exc:
            raise SystemExit(f"{exc.detail} (or --skip-load to time the programme loaded)") from exc
    periods = asyncio.run(_periods())
    print(
        f"periods: year {periods.year.start} to {periods.year.end}, month "
        f"{periods.month.start:%Y-%m}, quarter {periods.quarter.start:%Y-%m} to "
        f"{periods.quarter.end:%Y-%m}, twelve months {periods.twelve_months.start:%Y-%m} to "
        f"{periods.twelve_months.end:%Y-%m}, segments as of {periods.as_of}, "
        f"payout {periods.payout_year}"
    )
    if args.rollups:
        asyncio.run(_prepare_rollups(periods.payout_year))
    asyncio.run(_time_reports(args.repeat, periods, set(filter(None, args.only.split(",")))))


if __name__ == "__main__":
    main()

"""Report timings on national-scale data on PostgreSQL.

    .venv/bin/python -m benchmarks.reports [--scale 1.0] [--repeat 5] [--reload] [--rollups]

(Run as a module: as a script, this file would shadow the `reports` package.)

Builds (once; `--reload` rebuilds) a believable national programme in its own database
`membership_bench`: 500 institutions with skewed popularity, 1.5 million members clustered by
region, about 12 million counted visits over 2025 with seasonality, weekday and hour patterns,
same-day second visits, re-entries and refusals — loaded with COPY. Then prints the p50 time of
each report for a large, a middle and a small institution, and of the network matrix.
`--scale 0.02` gives a quick run. Targets (issue 8): institution report < 1 s, network < 60 s.
`--rollups` first refreshes the rollups of the closed periods and closes the payout months of the
year (printing how long each took), so affinity, network and payout read stored figures; without
it (on a database where that was never done) they are counted live. `--database` picks another
database name, so that two people can benchmark at once.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

import migrations
from membership.audit import Actor
from membership.clock import utcnow
from membership.db import create_engine, create_sessionmaker
from reports.affinity import affinity_report, flows_report
from reports.common import Period
from reports.network import network_report
from reports.payouts import MonthAlreadyClosed, MonthNotNext, close_month, payout_statement
from reports.periods import refresh
from reports.segments import consenting_contacts, segments_report
from reports.visits import visits_report

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DATABASE = "membership_bench"
YEAR = 2025
ZONE = "Europe/Amsterdam"
REGIONS = 12
INSTITUTIONS = 500
MEMBERS = 1_500_000
MEAN_VISIT_DAYS = 7.0
K = 10
CHUNK = 25_000

# Relative visits per month (summer and the autumn holidays are busy) and per weekday.
MONTH_WEIGHT = (0.7, 0.7, 0.8, 1.0, 1.0, 0.9, 1.3, 1.4, 0.9, 1.1, 0.9, 1.2)
WEEKDAY_WEIGHT = (0.5, 0.8, 0.9, 1.0, 1.1, 1.6, 1.7)
HOUR_WEIGHT = {10: 1.2, 11: 1.6, 12: 1.4, 13: 1.5, 14: 1.7, 15: 1.3, 16: 0.8}


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _bench_url() -> str:
    return make_url(SERVER).set(database=DATABASE).render_as_string(hide_password=False)


async def _prepare_database(reload: bool) -> bool:
    """Create the benchmark database; True if it must be filled."""
    server = await asyncpg.connect(_dsn(SERVER))
    try:
        exists = await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if exists and not reload:
            bench = await asyncpg.connect(_dsn(_bench_url()))
            try:
                filled = await bench.fetchval("SELECT EXISTS (SELECT 1 FROM checkins)")
            finally:
                await bench.close()
            if filled:
                return False
        await server.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await server.execute(f'CREATE DATABASE "{DATABASE}"')
        return True
    finally:
        await server.close()


def _generation_sql(scale: float) -> list[str]:
    """The programme generated inside PostgreSQL: set-based, so 12 million rows take minutes.

    Skewed choices (popular museums, busy days and hours) are equi-joins on bucket tables in
    which each value owns a share of the buckets proportional to its weight.
    """
    institutions = max(20, round(INSTITUTIONS * min(1.0, scale * 4)))
    members = max(1000, round(MEMBERS * scale))
    month_weight = ", ".join(str(w) for w in MONTH_WEIGHT)
    weekday_weight = ", ".join(str(w) for w in WEEKDAY_WEIGHT)
    hours = ", ".join(f"({h}, {w})" for h, w in HOUR_WEIGHT.items())
    return [
        "SELECT setseed(0.2025)",
        f"""CREATE TEMP TABLE inst AS
            SELECT n, gen_random_uuid() AS id, gen_random_uuid() AS venue_id,
                   n % {REGIONS} AS region, 1.0 / power(n + 1, 0.9) AS w
            FROM generate_series(0, {institutions - 1}) AS n""",
        f"""INSERT INTO institutions (id, code, name, city, timezone, anti_passback_minutes,
                                      joined_on, active)
            SELECT id, 'M' || lpad(n::text, 3, '0'), 'Museum ' || n, 'City ' || region,
                   '{ZONE}', 15, DATE '2015-01-01', true FROM inst""",
        """INSERT INTO venues (id, institution_id, code, name, active)
            SELECT venue_id, id, 'MAIN', 'Main entrance', true FROM inst""",
        f"""INSERT INTO institution_tariffs (id, institution_id, valid_from, visit_tariff_minor,
                                             admission_price_minor, currency)
            SELECT gen_random_uuid(), id, v.valid_from, 600 + 50 * (n % 9) + v.bump,
                   1200 + 100 * (n % 12), 'EUR'
            FROM inst, (VALUES (DATE '2015-01-01', 0), (DATE '{YEAR}-07-01', 25))
                 AS v(valid_from, bump)""",
        f"""INSERT INTO clearing_policies (id, valid_from, model, payout_share_bp, floor_bp)
            VALUES (gen_random_uuid(), DATE '2015-01-01', 'tariff', 0, 0),
                   (gen_random_uuid(), DATE '{YEAR}-07-01', 'pool', 6000, 3000)""",
        """INSERT INTO products (id, code, name, kind, price_minor, currency, vat_rate_bp,
                                 validity_months, min_holders, max_holders, auto_renew_allowed,
                                 grace_days, accepted_everywhere, active)
            VALUES (gen_random_uuid(), 'ANNUAL', 'Annual card', 'annual', 7500, 'EUR', 900, 12,
                    1, 1, true, 14, true, true),
                   (gen_random_uuid(), 'YOUTH', 'Youth card', 'youth', 3500, 'EUR', 900, 12,
                    1, 1, true, 14, true, true),
                   (gen_random_uuid(), 'DUO', 'Duo card', 'duo', 12500, 'EUR', 900, 12,
                    2, 2, true, 14, true, true)""",
        # Regional choices (region 0..11, 10 000 buckets) and national ones (region -1).
        """CREATE TEMP TABLE pick AS
            WITH weighted AS (
                SELECT region, id, venue_id, w,
                       sum(w) OVER (PARTITION BY region ORDER BY n) AS cw,
                       sum(w) OVER (PARTITION BY region) AS tw, 10000 AS size
                FROM inst
                UNION ALL
                SELECT -1, id, venue_id, w, sum(w) OVER (ORDER BY n), sum(w) OVER (), 100000
                FROM inst)
            SELECT region, b AS bucket, id, venue_id
            FROM weighted,
                 generate_series(floor((cw - w) / tw * size)::int,
                                 floor(cw / tw * size)::int - 1) AS b""",
        "CREATE INDEX ON pick (region, bucket)",
        f"""CREATE TEMP TABLE day_pick AS
            WITH d AS (
                SELECT day::date AS day,
                       (ARRAY[{month_weight}])[extract(month FROM day)::int]
                       * (ARRAY[{weekday_weight}])[extract(isodow FROM day)::int] AS w
                FROM generate_series(DATE '{YEAR}-01-01', DATE '{YEAR}-12-31', '1 day') AS day),
            c AS (SELECT day, w, sum(w) OVER (ORDER BY day) AS cw, sum(w) OVER () AS tw FROM d)
            SELECT b AS bucket, day
            FROM c, generate_series(floor((cw - w) / tw * 10000)::int,
                                    floor(cw / tw * 10000)::int - 1) AS b""",
        f"""CREATE TEMP TABLE hour_pick AS
            WITH h AS (SELECT * FROM (VALUES {hours}) AS h(hour, w)),
            c AS (SELECT hour, w, sum(w) OVER (ORDER BY hour) AS cw, sum(w) OVER () AS tw FROM h)
            SELECT b AS bucket, hour FROM c, generate_series(0, 999) AS b
            WHERE b >= floor((cw - w) / tw * 1000) AND b < floor(cw / tw * 1000)""",
        f"""CREATE TEMP TABLE mem AS
            SELECT n, gen_random_uuid() AS id, md5('visitor' || n) AS key,
                   floor(random() * {REGIONS})::int AS region, random() < 0.3 AS share,
                   gen_random_uuid() AS membership_id,
                   CASE WHEN random() < 0.8 THEN 'ANNUAL' WHEN random() < 0.5 THEN 'YOUTH'
                        ELSE 'DUO' END AS product_code,
                   1 + least(119, floor(-ln(1 - random()) * {MEAN_VISIT_DAYS - 1}))::int
                     AS visit_days,
                   DATE '{YEAR}-01-01' + (floor(random() * 600) - 300)::int AS starts_on
            FROM generate_series(1, {members}) AS n""",
        f"""INSERT INTO members (id, first_name, last_name, email, birth_date, postal_code,
                                 language, visitor_key, marketing_opt_in, share_contact,
                                 share_contact_at, imported)
            SELECT id, 'Visitor', 'Number ' || n, 'visitor' || n || '@example.org',
                   DATE '1940-01-01' + floor(random() * 28000)::int,
                   lpad((10 + region * 7 + floor(random() * 7))::int::text, 2, '0')
                     || lpad(floor(random() * 100)::int::text, 2, '0') || ' AB',
                   'nl', key, false, share,
                   CASE WHEN share THEN TIMESTAMPTZ '{YEAR - 1}-12-01 00:00+00' END, false
            FROM mem""",
        """INSERT INTO memberships (id, product_id, status, auto_renew)
            SELECT m.membership_id, p.id, 'active', random() < 0.6
            FROM mem m JOIN products p ON p.code = m.product_code""",
        """INSERT INTO membership_holders (membership_id, member_id)
            SELECT membership_id, id FROM mem""",
        """INSERT INTO membership_terms (id, membership_id, starts_on, ends_on, kind, status)
            SELECT gen_random_uuid(), membership_id, starts_on, starts_on + 365, 'purchase',
                   'active' FROM mem""",
        # One row per planned visit-day; 12 % of them also visit a second museum 3 h later.
        """CREATE TEMP TABLE plan AS
            SELECT v.*, s.stop, random() AS inst_roll, random() AS extra_roll,
                   CASE WHEN random() < 0.2 THEN -1 ELSE v.region END AS pick_region
            FROM (SELECT m.id AS member_id, m.key, m.region, p.id AS product_id, g,
                         floor(random() * 10000)::int AS day_bucket,
                         floor(random() * 1000)::int AS hour_bucket,
                         floor(random() * 60)::int AS minute
                  FROM mem m JOIN products p ON p.code = m.product_code,
                       generate_series(1, m.visit_days) AS g) AS v,
                 LATERAL (SELECT 0 AS stop UNION ALL
                          SELECT 1 WHERE random() < 0.12 AND v.g > 0) AS s""",
        f"""CREATE TEMP TABLE visit AS
            SELECT DISTINCT ON (pl.key, k.id, d.day)
                   pl.member_id, pl.key, pl.product_id, k.id AS institution_id, k.venue_id,
                   d.day,
                   ((d.day + make_interval(hours => least(h.hour + 3 * pl.stop, 20),
                                           mins => pl.minute))::timestamp
                     AT TIME ZONE '{ZONE}') AS scanned_at,
                   pl.extra_roll
            FROM plan pl
            JOIN pick k ON k.region = pl.pick_region
                 AND k.bucket = floor(pl.inst_roll
                                      * CASE WHEN pl.pick_region = -1 THEN 100000
                                             ELSE 10000 END)::int
            JOIN day_pick d ON d.bucket = pl.day_bucket
            JOIN hour_pick h ON h.bucket = pl.hour_bucket
            ORDER BY pl.key, k.id, d.day, scanned_at""",
        """INSERT INTO checkins (client_scan_id, institution_id, venue_id, member_id,
                                 visitor_key, product_id, scanned_at, received_at, local_date,
                                 result, reason, counted, offline, flagged, imported)
            SELECT gen_random_uuid()::text, institution_id, venue_id, member_id, key,
                   product_id, scanned_at, scanned_at, day, 'admitted', 'ok', true, false,
                   false, false FROM visit
            UNION ALL
            SELECT gen_random_uuid()::text, institution_id, venue_id, member_id, key,
                   product_id, scanned_at + interval '50 minutes',
                   scanned_at + interval '50 minutes', day,
                   CASE WHEN extra_roll < 0.04 THEN 'reentry' ELSE 'refused' END,
                   CASE WHEN extra_roll < 0.04 THEN 'reentry' ELSE 'already_used' END,
                   false, false, false, false
            FROM visit WHERE extra_roll < 0.06""",
        f"""INSERT INTO payments (id, reference, membership_id, kind, status, provider,
                                  amount_minor, currency, paid_at, refunded_minor, vat_rate_bp)
            SELECT gen_random_uuid(), 'B' || n, (SELECT membership_id FROM mem LIMIT 1),
                   'purchase', 'succeeded', 'local', {round(7_500_000 * scale * 4)}, 'EUR',
                   TIMESTAMPTZ '{YEAR}-01-01 00:00+00' + n * interval '7 hours', 0, 900
            FROM generate_series(0, 1199) AS n""",
        "ANALYZE",
    ]


async def _load(scale: float) -> None:
    connection = await asyncpg.connect(_dsn(_bench_url()), command_timeout=3600)
    started = time.perf_counter()
    try:
        # A bulk load: index maintenance row by row would dominate, so the check-in indexes
        # are dropped for the load and built once afterwards, exactly as the migrations made them.
        await connection.execute("SET synchronous_commit = off; SET work_mem = '512MB'")
        await connection.execute("SET maintenance_work_mem = '1GB'")
        # The generator makes only valid references; skipping the per-row foreign-key triggers
        # (superuser, this database only) makes the load set-based from end to end.
        await connection.execute("SET session_replication_role = replica")
        indexes = await connection.fetch(
            "SELECT i.indexrelid::regclass::text AS indexname,"
            " pg_get_indexdef(i.indexrelid) AS indexdef FROM pg_index i"
            " WHERE i.indrelid = 'checkins'::regclass AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        )
        for index in indexes:
            await connection.execute(f"DROP INDEX {index['indexname']}")
        for statement in _generation_sql(scale):
            if statement == "ANALYZE":
                for index in indexes:
                    await connection.execute(index["indexdef"])
            await connection.execute(statement)
            first_line = " ".join(statement.split())[:60]
            print(f"  {time.perf_counter() - started:6.0f} s  {first_line}", flush=True)
        counted = await connection.fetchval("SELECT count(*) FROM checkins WHERE counted")
        rows = await connection.fetchval("SELECT count(*) FROM checkins")
    finally:
        await connection.close()
    print(
        f"loaded {rows} check-ins ({counted} counted visits) in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )


async def _prepare_rollups() -> None:
    """Refresh the rollups of closed periods and close the year's payout months, timed."""
    engine = create_engine(_bench_url())
    sessions = create_sessionmaker(engine)
    try:
        started = time.perf_counter()
        result = await refresh(sessions, now=utcnow())
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
                        month=date(YEAR, month, 1),
                        currency="EUR",
                        timezone=ZONE,
                        actor=Actor(label="benchmark"),
                        now=utcnow(),
                    )
                except (MonthAlreadyClosed, MonthNotNext):
                    continue
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


async def _time_reports(repeat: int) -> None:
    engine = create_engine(_bench_url())
    sessions = create_sessionmaker(engine)
    period = Period(date(YEAR, 1, 1), date(YEAR, 12, 31))
    month = Period(date(YEAR, 8, 1), date(YEAR, 8, 31))
    as_of = date(YEAR, 12, 31)
    try:
        async with sessions() as session:
            ranked = (
                await session.execute(
                    text(
                        "SELECT institution_id, count(*) FROM checkins WHERE counted "
                        "GROUP BY institution_id ORDER BY 2 DESC"
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
            "affinity (year)": lambda s, i: affinity_report(
                s, institution_id=i, period=period, k=K
            ),
            "flows (year)": lambda s, i: flows_report(s, institution_id=i, period=period, k=K),
            "segments": lambda s, i: segments_report(s, institution_id=i, as_of=as_of),
            "contacts": lambda s, i: consenting_contacts(s, institution_id=i, as_of=as_of),
            "payout (year)": lambda s, i: payout_statement(
                s, year=YEAR, currency="EUR", timezone=ZONE, institution_id=i
            ),
        }
        print(f"\np50 of {repeat} runs, seconds")
        print(
            f"{'report':<18}" + "".join(f"{f'{n} ({v} visits)':>26}" for n, (_, v) in picks.items())
        )
        for name, report in reports.items():
            cells = []
            for institution_id, _ in picks.values():
                async with sessions() as session:
                    cells.append(
                        await _p50(
                            lambda report=report, i=institution_id, s=session: report(s, i), repeat
                        )
                    )
            print(f"{name:<18}" + "".join(f"{c:>26.3f}" for c in cells), flush=True)
        async with sessions() as session:
            network = await _p50(
                lambda: network_report(session, period=period, k=K), max(1, repeat // 2)
            )
        print(f"{'network (year)':<18}{network:>26.3f}")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--rollups", action="store_true")
    parser.add_argument("--database")
    args = parser.parse_args()
    if args.database:
        global DATABASE  # one setting, read by every step of this script
        DATABASE = args.database
    if asyncio.run(_prepare_database(args.reload)):
        migrations.upgrade(_bench_url())
        asyncio.run(_load(args.scale))
    if args.rollups:
        asyncio.run(_prepare_rollups())
    asyncio.run(_time_reports(args.repeat))


if __name__ == "__main__":
    main()

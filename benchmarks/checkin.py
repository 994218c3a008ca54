"""Benchmark of the door: `POST /v1/checkins` beside a bare one-INSERT endpoint (issue 5).

What it does, in order:
1. recreates a PostgreSQL database (`mbench_checkin` unless the URL names one), migrates it, and
   COPYs in a programme of realistic size: 20 institutions with their entrances and scanners,
   the products, 100,000 members each with an active membership and a card, and 1,000,000
   earlier check-ins over the past year that follow the door rules (one counted visit per
   visitor, institution and local day; passbacks refused; later scans re-entries);
2. starts the real API under uvicorn (`--workers`, default 1, loopback only) with
   `_ceiling_app.py`, which adds `POST /_bench/insert` to the product app: device
   authentication, one INSERT, commit; both endpoints are measured on the same server, so the
   same workers, pool and database;
3. scans random cards' signed QR codes from several doors with aiohttp (keep-alive; a lighter
   client than httpx, whose own CPU would be taken from the server on a small machine) at
   concurrency 1, 8 and 32, each for a fixed time after a warm-up (in `--rounds` slices in which
   the two endpoints take turns, so both meet the same machine load), mostly first scans and some
   repeats that hit anti-passback, and prints throughput, latency percentiles and the ratio of
   the check-in to the ceiling, with the targets of the issue.

It reports, it does not judge: the exit code is 0 when a target is missed. The load generator
runs on the same machine as the server and the database, so its own CPU is shown too, and so
is the CPU of the server (all its workers) and of its database backends per request. What the
code itself costs per request, whatever the machine's load, is `benchmarks/checkin_cpu.py`'s
measure (CPU time, or instructions under callgrind) on the database loaded here.

    .venv/bin/python -m benchmarks.checkin                                    # full scale
    .venv/bin/python -m benchmarks.checkin --cards 2000 --checkins 20000 --seconds 5
    .venv/bin/python -m benchmarks.checkin --skip-load --workers 2            # reuse the data
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

import migrations
from membership import card_numbers, codes, devices
from membership.audit import Actor
from membership.db import create_engine, create_sessionmaker
from membership.keys import KeyStore

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
DEFAULT_DATABASE = "mbench_checkin"
CHECKIN_PATH = "/v1/checkins"
CEILING_PATH = "/_bench/insert"
CONCURRENCIES = (1, 8, 32)
TIMEZONE = "Europe/Amsterdam"
PROGRAMME = "MK"
HISTORY_DAYS = 365
ANTI_PASSBACK = timedelta(minutes=15)
# Targets of issue 5.
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_P99_CONCURRENCY = 8
BENCH_SCAN_PREFIX = "bench-"


# --- the programme -------------------------------------------------------------------------

_INSTITUTIONS: tuple[tuple[str, str, str, float], ...] = (
    # code, name, city, popularity (relative share of visits)
    ("AMS-SKH", "Stedelijk Kunsthal", "Amsterdam", 3.0),
    ("AMS-FOTO", "Amstel Fotomuseum", "Amsterdam", 1.5),
    ("AMS-GRP", "Museum Het Grachtenpand", "Amsterdam", 1.8),
    ("AMS-SCH", "Scheepvaarthuis", "Amsterdam", 2.1),
    ("RTM-MHR", "Maritiem Huis Rotterdam", "Rotterdam", 2.2),
    ("RTM-KAM", "Kunsthal aan de Maas", "Rotterdam", 2.0),
    ("RTM-DLF", "Museum Delfshaven", "Rotterdam", 0.8),
    ("DHG-HPK", "Haags Prentenkabinet", "Den Haag", 1.6),
    ("DHG-HFV", "Museum aan de Hofvijver", "Den Haag", 2.4),
    ("DHG-ESC", "Paleis der Prenten", "Den Haag", 1.1),
    ("UTR-KLK", "Utrechts Klokkenmuseum", "Utrecht", 1.2),
    ("UTR-DOM", "Domstad Museum", "Utrecht", 1.7),
    ("HLM-SCH", "Haarlems Schilderijenhuis", "Haarlem", 1.5),
    ("LEI-OUD", "Leids Oudheidkundig Huis", "Leiden", 1.4),
    ("GRN-KST", "Groninger Kunstpaleis", "Groningen", 1.3),
    ("MST-BON", "Maastrichts Bonnefanten Atelier", "Maastricht", 1.0),
    ("EIN-DES", "Designhuis Eindhoven", "Eindhoven", 1.1),
    ("ZWL-FRS", "Fraeylemaborg Zwolle", "Zwolle", 0.6),
    ("ARN-OPL", "Openluchtdorp Arnhem", "Arnhem", 1.9),
    ("DEL-PRN", "Prinsenhof Delft", "Delft", 0.9),
)
_VENUES = (("MAIN", "Hoofdingang"), ("GROUP", "Groepsingang"), ("GARDEN", "Tuiningang"))

# code, name, kind, price, min age, max age, max holders, share of members, club institution
_PRODUCTS: tuple[tuple[str, str, str, int, int | None, int | None, int, float, str | None], ...] = (
    ("MK-ADULT", "Museumkaart volwassene", "annual", 7500, 18, None, 1, 0.64, None),
    ("MK-YOUTH", "Museumkaart jongeren", "youth", 3750, None, 17, 1, 0.16, None),
    ("MK-DUO", "Museumkaart duo", "duo", 13500, 18, None, 2, 0.12, None),
    ("SKH-CLUB", "Stedelijk Kunsthal Vriendenkaart", "club", 4500, 16, None, 1, 0.05, "AMS-SKH"),
    ("ARN-CLUB", "Openluchtdorp Jaarkaart", "club", 3500, None, None, 1, 0.03, "ARN-OPL"),
)
_BLOCKED_SHARE = 0.005
_FIRST_NAMES = (
    "Anna Daan Emma Sem Julia Lucas Sophie Finn Tess Levi Sara Noah Fleur Bram Lotte Jesse "
    "Eva Thijs Lisa Ruben Iris Milan Noor Lars Roos Sven Femke Luuk Anouk Thomas Maud Jan"
).split()
_LAST_NAMES = (
    "de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer|"
    "de Boer|Mulder|de Groot|Bos|Vos|Peters|Hendriks|van Leeuwen|Dekker|Brouwer|de Wit|"
    "Dijkstra|Smits|de Graaf|van der Meer|van der Linden|Kok|Jacobs|de Haan|Vermeulen"
).split("|")
# After a first admission, the share of visitors scanned again the same day: within the
# anti-passback window (card passed back, refused) or hours later (re-entry, not counted).
_PASSBACK_SHARE = 0.015
_REENTRY_SHARE = 0.035


@dataclass(frozen=True)
class Target:
    name: str
    database_url: str  # SQLAlchemy URL of the benchmark database
    admin_dsn: str  # asyncpg DSN of the maintenance database, to drop and create it

    @property
    def dsn(self) -> str:
        return _asyncpg_dsn(make_url(self.database_url))


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def resolve_target(raw: str) -> Target:
    url = make_url(raw)
    if url.get_backend_name() != "postgresql":
        raise SystemExit("The benchmark runs on PostgreSQL: give a postgresql+asyncpg:// URL.")
    url = url.set(drivername="postgresql+asyncpg")
    name = url.database or DEFAULT_DATABASE
    url = url.set(database=name)
    return Target(
        name=name,
        database_url=url.render_as_string(hide_password=False),
        admin_dsn=_asyncpg_dsn(url.set(database="postgres")),
    )


async def recreate_database(target: Target) -> None:
    # The database is dropped: a typo in --database-url must not take someone's data with it.
    if not target.name.startswith("mbench"):
        raise SystemExit(f"Refusing to drop {target.name!r}: benchmark databases start 'mbench'.")
    admin = await asyncpg.connect(target.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{target.name}"')
    finally:
        await admin.close()


# --- loading -------------------------------------------------------------------------------


@dataclass
class _Members:
    """Column-wise facts about the loaded members, indexed like the member list."""

    ids: list[uuid.UUID] = field(default_factory=list)
    visitor_keys: list[str] = field(default_factory=list)
    card_ids: list[uuid.UUID] = field(default_factory=list)
    product_ids: list[uuid.UUID] = field(default_factory=list)
    club_institution: list[int | None] = field(default_factory=list)
    # The history day (0 = HISTORY_DAYS ago) the membership started: ascending by construction,
    # so the members holding a card on day d are a prefix of the list.
    first_day: list[int] = field(default_factory=list)


def _choose_weighted(weights: Sequence[float], rng: random.Random) -> Iterator[int]:
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    while True:
        yield bisect.bisect_right(cumulative, rng.random() * total)


async def load(target: Target, *, cards: int, checkins: int, seed: int) -> None:
    rng = random.Random(seed)
    today = date.today()
    connection = await asyncpg.connect(target.dsn)
    try:
        # The rows are consistent by construction, so the per-row foreign-key triggers of a
        # million-row COPY would only cost time; replica mode skips them (superuser only).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("SET session_replication_role = replica")

        started = time.perf_counter()
        institution_ids = [uuid.uuid4() for _ in _INSTITUTIONS]
        await _copy(
            connection,
            "institutions",
            "id code name city timezone anti_passback_minutes joined_on active",
            [
                (iid, code, name, city, TIMEZONE, 15, today - timedelta(days=3 * 365), True)
                for iid, (code, name, city, _pop) in zip(
                    institution_ids, _INSTITUTIONS, strict=True
                )
            ],
        )
        await _copy(
            connection,
            "institution_tariffs",
            "id institution_id valid_from visit_tariff_minor admission_price_minor currency",
            [
                (uuid.uuid4(), iid, today - timedelta(days=3 * 365), 800, 1800, "EUR")
                for iid in institution_ids
            ],
        )
        venue_rows = []
        device_rows = []
        venues_of: list[list[tuple[uuid.UUID, uuid.UUID]]] = []  # (venue id, device id)
        for index, iid in enumerate(institution_ids):
            doors = []
            for venue_code, venue_name in _VENUES[: 1 + index % len(_VENUES)]:
                venue_id, device_id = uuid.uuid4(), uuid.uuid4()
                venue_rows.append((venue_id, iid, venue_code, venue_name, True))
                device_rows.append((device_id, venue_id, f"{venue_name} scanner"))
                doors.append((venue_id, device_id))
            venues_of.append(doors)
        await _copy(connection, "venues", "id institution_id code name active", venue_rows)
        # Unpaired: each run pairs them afresh and keeps the keys in memory only.
        await _copy(connection, "devices", "id venue_id name", device_rows)

        institution_index = {code: i for i, (code, *_rest) in enumerate(_INSTITUTIONS)}
        product_ids = [uuid.uuid4() for _ in _PRODUCTS]
        await _copy(
            connection,
            "products",
            "id code name kind price_minor currency vat_rate_bp validity_months min_age max_age"
            " min_holders max_holders auto_renew_allowed grace_days accepted_everywhere active",
            [
                (
                    *(pid, code, name, kind, price, "EUR", 900, 12, min_age, max_age, 1, holders),
                    *(True, 14, club is None, True),
                )
                for pid, (code, name, kind, price, min_age, max_age, holders, _share, club) in zip(
                    product_ids, _PRODUCTS, strict=True
                )
            ],
        )
        await _copy(
            connection,
            "product_institutions",
            "product_id institution_id",
            [
                (pid, institution_ids[institution_index[spec[8]]])
                for pid, spec in zip(product_ids, _PRODUCTS, strict=True)
                if spec[8] is not None
            ],
        )
        print(f"  programme: {len(institution_ids)} institutions, {len(venue_rows)} venues")

        dropped = await _drop_secondary_indexes(connection, _BULK_TABLES)
        members = await _load_members(connection, rng, cards, product_ids, institution_index)
        print(f"  members, memberships, terms, cards: {cards:,} each")
        loaded = await _load_history(connection, rng, members, checkins, venues_of, institution_ids)
        print(f"  earlier check-ins: {loaded:,}")
        copied = time.perf_counter() - started

        started = time.perf_counter()
        await connection.execute("RESET session_replication_role")
        await connection.execute("SET maintenance_work_mem = '256MB'")
        # Recreating the unique ones also proves the data keeps them (one counted visit a day).
        for definition in dropped:
            await connection.execute(definition)
        indexed = time.perf_counter() - started

        started = time.perf_counter()
        # A production table is vacuumed and analysed; planning against empty statistics
        # would benchmark a database nobody runs.
        for table in ("checkins", "cards", "members", "memberships", "membership_terms"):
            await connection.execute(f"VACUUM (ANALYZE) {table}")
        analysed = time.perf_counter() - started
        print(
            f"  COPY {copied:.1f} s, {len(dropped)} indexes {indexed:.1f} s, "
            f"VACUUM ANALYZE {analysed:.1f} s"
        )
    finally:
        await connection.close()


_BULK_TABLES = (
    "members",
    "memberships",
    "membership_holders",
    "membership_terms",
    "cards",
    "checkins",
)


async def _drop_secondary_indexes(
    connection: asyncpg.Connection, tables: Sequence[str]
) -> list[str]:
    """Drop the indexes no constraint owns and return their definitions, to build them later.

    Building an index once over loaded rows is many times faster than updating it row by row
    in random key order (visitor keys, uuids) while a million rows stream in.
    """
    rows = await connection.fetch(
        "SELECT x.indexrelid::regclass::text AS name, pg_get_indexdef(x.indexrelid) AS definition "
        "FROM pg_index x WHERE x.indrelid = ANY($1::regclass[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        list(tables),
    )
    for row in rows:
        await connection.execute(f"DROP INDEX {row['name']}")
    return [row["definition"] for row in rows]


async def _copy(connection: asyncpg.Connection, table: str, columns: str, records: Any) -> None:
    await connection.copy_records_to_table(table, records=records, columns=columns.split())


async def _load_members(
    connection: asyncpg.Connection,
    rng: random.Random,
    count: int,
    product_ids: list[uuid.UUID],
    institution_index: dict[str, int],
) -> _Members:
    today = date.today()
    issued_base = datetime.now(UTC) - timedelta(days=HISTORY_DAYS)
    members = _Members()
    # Memberships started on a day of the past year (the first at least a week ago), so every
    # visitor has history and every term of a year and a day still covers today.
    members.first_day = sorted(rng.randrange(0, HISTORY_DAYS - 7) for _ in range(count))
    pick_product = _choose_weighted([spec[7] for spec in _PRODUCTS], rng)
    numbers: set[str] = set()
    member_rows, membership_rows, holder_rows, term_rows, card_rows = [], [], [], [], []
    for first_day in members.first_day:
        member_id, membership_id, card_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        product = next(pick_product)
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        visitor_key = secrets.token_hex(16)
        opt_in = rng.random() < 0.3
        starts_on = today - timedelta(days=HISTORY_DAYS - first_day)
        issued_at = issued_base + timedelta(days=first_day, seconds=rng.randrange(86_400))
        member_rows.append(
            (
                member_id,
                first,
                last,
                f"{first}.{last.replace(' ', '')}.{visitor_key[:6]}@example.nl".lower(),
                date(1940, 1, 1) + timedelta(days=rng.randrange(70 * 365)),
                f"{rng.randrange(1011, 9999)} {rng.choice('ABCDEGHJKLMNPRTVWXZ')}"
                f"{rng.choice('ABCDEGHJKLMNPRTVWXZ')}",
                "nl" if rng.random() < 0.9 else "en",
                visitor_key,
                opt_in,
                issued_at if opt_in else None,
                rng.random() < 0.2,
                False,
            )
        )
        membership_rows.append((membership_id, product_ids[product], "active", False))
        holder_rows.append((membership_id, member_id))
        term_rows.append(
            (
                uuid.uuid4(),
                membership_id,
                starts_on,
                starts_on + timedelta(days=366),
                "purchase",
                "active",
            )
        )
        number = card_numbers.generate()
        while number in numbers:
            number = card_numbers.generate()
        numbers.add(number)
        status = "blocked" if rng.random() < _BLOCKED_SHARE else "active"
        card_rows.append((card_id, number, 1, status, member_id, membership_id, issued_at, False))
        members.ids.append(member_id)
        members.visitor_keys.append(visitor_key)
        members.card_ids.append(card_id)
        members.product_ids.append(product_ids[product])
        club = _PRODUCTS[product][8]
        members.club_institution.append(institution_index[club] if club else None)

    await _copy(
        connection,
        "members",
        "id first_name last_name email birth_date postal_code language visitor_key"
        " marketing_opt_in marketing_opt_in_at share_contact imported",
        member_rows,
    )
    await _copy(connection, "memberships", "id product_id status auto_renew", membership_rows)
    await _copy(connection, "membership_holders", "membership_id member_id", holder_rows)
    await _copy(
        connection,
        "membership_terms",
        "id membership_id starts_on ends_on kind status",
        term_rows,
    )
    await _copy(
        connection,
        "cards",
        "id number version status member_id membership_id issued_at imported",
        card_rows,
    )
    return members


_CHECKIN_COLUMNS = [
    "client_scan_id",
    "device_id",
    "institution_id",
    "venue_id",
    "card_id",
    "card_version",
    "member_id",
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
]


async def _load_history(
    connection: asyncpg.Connection,
    rng: random.Random,
    members: _Members,
    total: int,
    venues_of: list[list[tuple[uuid.UUID, uuid.UUID]]],
    institution_ids: list[uuid.UUID],
) -> int:
    """A year of door traffic, streamed into one COPY day by day, oldest first (like the table).

    Busier on weekends and growing with the number of members; within a day the rows pass the
    same rules as the door, so the partial unique index (one counted visit per visitor,
    institution and local day) holds and the decisions look like the real ones.
    """
    zone = ZoneInfo(TIMEZONE)
    today = date.today()
    days = [today - timedelta(days=HISTORY_DAYS - d) for d in range(HISTORY_DAYS)]
    holding = [bisect.bisect_right(members.first_day, d) for d in range(HISTORY_DAYS)]
    weights = [
        n * (1.6 if day.weekday() >= 5 else 1.0) for n, day in zip(holding, days, strict=True)
    ]
    first_scans = total / (1 + _PASSBACK_SHARE + _REENTRY_SHARE)
    per_day = [round(first_scans * w / sum(weights)) for w in weights]
    pick_institution = _choose_weighted([spec[3] for spec in _INSTITUTIONS], rng)
    written = 0

    def rows() -> Iterator[tuple[Any, ...]]:
        nonlocal written
        sequence = itertools.count()
        for d, day in enumerate(days):
            midnight = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
            scans: list[tuple[int, int, int]] = []  # seconds after local midnight, member, inst
            for _ in range(per_day[d]):
                member = int(rng.random() * holding[d])
                club = members.club_institution[member]
                institution = club if club is not None else next(pick_institution)
                second = 36_000 + int(rng.random() * 25_200)  # opening hours, 10:00 to 17:00
                scans.append((second, member, institution))
                chance = rng.random()
                if chance < _PASSBACK_SHARE:
                    scans.append((second + rng.randrange(30, 600), member, institution))
                elif chance < _PASSBACK_SHARE + _REENTRY_SHARE:
                    scans.append((second + rng.randrange(3_600, 14_400), member, institution))
            scans.sort()
            last_admitted: dict[tuple[int, int], datetime] = {}
            for second, member, institution in scans:
                scanned_at = midnight + timedelta(seconds=second)
                seen = last_admitted.get((member, institution))
                if seen is None:
                    result, reason, counted = "admitted", "ok", True
                elif scanned_at - seen < ANTI_PASSBACK:
                    result, reason, counted = "refused", "already_used", False
                else:
                    result, reason, counted = "reentry", "reentry", False
                if result != "refused":
                    last_admitted[(member, institution)] = scanned_at
                venue_id, device_id = rng.choice(venues_of[institution])
                written += 1
                yield (
                    f"h{next(sequence)}",
                    device_id,
                    institution_ids[institution],
                    venue_id,
                    members.card_ids[member],
                    1,
                    members.ids[member],
                    members.visitor_keys[member],
                    members.product_ids[member],
                    scanned_at,
                    scanned_at + timedelta(milliseconds=300 + rng.randrange(900)),
                    day,
                    result,
                    reason,
                    counted,
                    False,
                    False,
                    False,
                )

    await connection.copy_records_to_table("checkins", records=rows(), columns=_CHECKIN_COLUMNS)
    return written


# --- the doors -----------------------------------------------------------------------------


@dataclass
class Traffic:
    """What the scanners send: random cards, mostly first scans, some passed back at once.

    A first scan takes a card not yet scanned at that institution in this run, so it is
    admitted (a few blocked cards and nothing else are refused); a repeat scans a card that
    was just admitted, at a door of the same institution, and meets anti-passback.
    """

    # The `Authorization` header of each paired scanner, per institution.
    doors_of: list[list[str]]
    codes: list[str]
    club_institution: list[int | None]
    institution_weights: list[float]
    repeat_share: float
    rng: random.Random
    run: str = field(default_factory=lambda: secrets.token_hex(3))
    _scanned: set[tuple[int, int]] = field(default_factory=set)
    _recent: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=500))
    _sequence: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._pick_institution = _choose_weighted(self.institution_weights, self.rng)

    def next(self) -> tuple[dict[str, str], bytes]:
        if self._recent and self.rng.random() < self.repeat_share:
            card, institution = self.rng.choice(self._recent)
        else:
            for _attempt in range(20):
                card = self.rng.randrange(len(self.codes))
                club = self.club_institution[card]
                institution = club if club is not None else next(self._pick_institution)
                if (card, institution) not in self._scanned:
                    break
            self._scanned.add((card, institution))
            self._recent.append((card, institution))
        authorization = self.rng.choice(self.doors_of[institution])
        body = {
            "code": self.codes[card],
            "client_scan_id": f"{BENCH_SCAN_PREFIX}{self.run}-{next(self._sequence)}",
            "scanned_at": datetime.now(UTC).isoformat(),
        }
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        return headers, json.dumps(body).encode()


async def prepare_traffic(
    target: Target, *, key_dir: Path, pool: int, repeat_share: float, seed: int
) -> tuple[Traffic, list[uuid.UUID]]:
    """Pair every scanner afresh and sign the QR codes of a random sample of the cards."""
    rng = random.Random(seed + 1)
    engine = create_engine(target.database_url)
    sessionmaker = create_sessionmaker(engine)
    actor = Actor(label="benchmark")
    try:
        async with sessionmaker() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT d.id, v.institution_id FROM devices d "
                        "JOIN venues v ON v.id = d.venue_id WHERE d.revoked_at IS NULL "
                        "ORDER BY v.institution_id, d.id"
                    )
                )
            ).all()
            institutions = (
                await session.execute(text("SELECT id, code FROM institutions ORDER BY code"))
            ).all()
            index = {row.id: i for i, row in enumerate(institutions)}
            doors_of: list[list[str]] = [[] for _ in institutions]
            device_ids = []
            for device_id, institution_id in rows:
                device = await devices.get_device(session, device_id=device_id)
                pairing = await devices.renew_pairing_code(
                    session, device=device, actor=actor, now=datetime.now(UTC)
                )
                paired = await devices.pair(session, code=pairing.code, now=datetime.now(UTC))
                doors_of[index[institution_id]].append(f"Bearer {paired.key}")
                device_ids.append(device_id)
            await session.commit()
            card_rows = (
                await session.execute(
                    text(
                        "SELECT c.number, c.version, p.code AS product, t.ends_on, "
                        "pi.institution_id AS club FROM cards c "
                        "JOIN memberships m ON m.id = c.membership_id "
                        "JOIN products p ON p.id = m.product_id "
                        "JOIN membership_terms t ON t.membership_id = m.id "
                        "LEFT JOIN product_institutions pi ON pi.product_id = p.id "
                        "ORDER BY c.number"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    sample = rng.sample(card_rows, min(pool, len(card_rows)))
    _key_id, private_key = KeyStore(key_dir).signing_key()
    qr_codes = [
        codes.encode(
            codes.CardCode(
                programme=PROGRAMME,
                card_number=row.number,
                card_version=row.version,
                valid_until=row.ends_on - timedelta(days=1),
                product_code=row.product,
            ),
            private_key=private_key,
        )
        for row in sample
    ]
    popularity = {code: pop for code, _name, _city, pop in _INSTITUTIONS}
    traffic = Traffic(
        doors_of=doors_of,
        codes=qr_codes,
        club_institution=[index[row.club] if row.club else None for row in sample],
        institution_weights=[popularity.get(row.code, 1.0) for row in institutions],
        repeat_share=repeat_share,
        rng=rng,
    )
    return traffic, device_ids


async def delete_bench_rows(target: Target, device_ids: list[uuid.UUID]) -> int:
    """Earlier runs' scans would turn this run's first scans into re-entries: remove them."""
    connection = await asyncpg.connect(target.dsn)
    try:
        status = await connection.execute(
            "DELETE FROM checkins WHERE device_id = ANY($1::uuid[]) AND client_scan_id LIKE $2",
            device_ids,
            BENCH_SCAN_PREFIX + "%",
        )
    finally:
        await connection.close()
    return int(status.split()[-1])


# --- the server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def cpu_seconds(self) -> float | None:
        """CPU of uvicorn and of every worker process it started."""
        pids = _descendants(self.process.pid)
        total = 0.0
        for pid in pids:
            seconds = _process_cpu(pid)
            if seconds is None:
                return None
            total += seconds
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float | None:
    """User plus system CPU seconds of one process, from /proc (None where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _descendants(pid: int) -> list[int]:
    """`pid` and the processes below it (uvicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def start_server(target: Target, key_dir: Path, workdir: Path, *, workers: int) -> Server:
    port = _free_port()
    log = workdir / "server.log"
    env = os.environ | {
        "MEMBERSHIP_DATABASE_URL": target.database_url,
        "MEMBERSHIP_KEY_DIR": str(key_dir),
        "MEMBERSHIP_PROGRAMME_CODE": PROGRAMME,
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        # Imported as a namespace package from the checkout root: with benchmarks/ itself on
        # sys.path its modules would shadow packages of the same name (benchmarks/reports.py).
        "benchmarks._ceiling_app:create_app",
        "--factory",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as output:
        # A session of its own: Ctrl-C reaches only this script, which then stops the server.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not become ready:\n{server.log.read_text()[-3000:]}")


async def _database_backends(target: Target) -> list[int]:
    connection = await asyncpg.connect(target.dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            target.name,
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


# --- the load ------------------------------------------------------------------------------


@dataclass
class Phase:
    endpoint: str
    concurrency: int
    latencies: list[float]
    errors: int
    elapsed: float
    app_cpu: float | None
    db_cpu: float | None
    client_cpu: float
    load_average: float
    outcomes: Counter[str]

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000

    def per_request_ms(self, seconds: float | None) -> str:
        ok = len(self.latencies)
        return f"{seconds / ok * 1000:.2f}" if seconds is not None and ok else "-"

    @classmethod
    def merge(cls, slices: Sequence[Phase]) -> Phase:
        """One phase from its slices: requests and times added up, the load averaged."""
        app = [s.app_cpu for s in slices]
        db = [s.db_cpu for s in slices]
        outcomes: Counter[str] = Counter()
        for part in slices:
            outcomes.update(part.outcomes)
        return cls(
            endpoint=slices[0].endpoint,
            concurrency=slices[0].concurrency,
            latencies=[latency for part in slices for latency in part.latencies],
            errors=sum(part.errors for part in slices),
            elapsed=sum(part.elapsed for part in slices),
            app_cpu=None if None in app else sum(x for x in app if x is not None),
            db_cpu=None if None in db else sum(x for x in db if x is not None),
            client_cpu=sum(part.client_cpu for part in slices),
            load_average=statistics.fmean(part.load_average for part in slices),
            outcomes=outcomes,
        )


async def run_phase(
    client: aiohttp.ClientSession,
    target: Target,
    server: Server,
    traffic: Traffic,
    *,
    endpoint: str,
    concurrency: int,
    seconds: float,
    max_requests: int | None,
) -> Phase:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    errors = 0
    issued = 0
    parse = endpoint == CHECKIN_PATH
    url = server.base_url + endpoint
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, issued
        while time.perf_counter() < deadline and (max_requests is None or issued < max_requests):
            issued += 1
            headers, body = traffic.next()
            started = time.perf_counter()
            try:
                async with client.post(url, data=body, headers=headers) as response:
                    status, content = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors += 1
                outcomes[f"error {type(exc).__name__}"] += 1
                continue
            elapsed = time.perf_counter() - started
            if status != 200:
                errors += 1
                outcomes[f"HTTP {status}"] += 1
                continue
            latencies.append(elapsed)
            if parse:
                answer = json.loads(content)
                outcomes[f"{answer['result']}/{answer['reason']}"] += 1

    backends = await _database_backends(target)
    db_before = {pid: _process_cpu(pid) for pid in backends}
    app_before = server.cpu_seconds()
    client_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    app_after = server.cpu_seconds()
    # Backends opened during the phase count from zero; the pool keeps them, so few are.
    db_cpu: float | None = 0.0
    for pid in await _database_backends(target):
        after, before = _process_cpu(pid), db_before.get(pid) or 0.0
        if after is None or db_cpu is None:
            db_cpu = None
            continue
        db_cpu += after - before
    return Phase(
        endpoint=endpoint,
        concurrency=concurrency,
        latencies=latencies,
        errors=errors,
        elapsed=elapsed,
        app_cpu=app_after - app_before
        if app_after is not None and app_before is not None
        else None,
        db_cpu=db_cpu,
        client_cpu=client_cpu,
        load_average=os.getloadavg()[0],
        outcomes=outcomes,
    )


async def benchmark(
    target: Target, server: Server, traffic: Traffic, options: argparse.Namespace
) -> list[Phase]:
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        for endpoint in (CEILING_PATH, CHECKIN_PATH):
            await run_phase(
                client,
                target,
                server,
                traffic,
                endpoint=endpoint,
                concurrency=8,
                seconds=options.seconds,
                max_requests=options.warmup,
            )
        phases = []
        rounds = max(1, options.rounds)
        for concurrency in CONCURRENCIES:
            # The two endpoints take turns in short slices, each first in every other round,
            # so that a machine whose load changes by the minute weighs on both alike.
            slices: dict[str, list[Phase]] = {CEILING_PATH: [], CHECKIN_PATH: []}
            for turn in range(rounds):
                order = (
                    (CEILING_PATH, CHECKIN_PATH) if turn % 2 == 0 else (CHECKIN_PATH, CEILING_PATH)
                )
                for endpoint in order:
                    slices[endpoint].append(
                        await run_phase(
                            client,
                            target,
                            server,
                            traffic,
                            endpoint=endpoint,
                            concurrency=concurrency,
                            seconds=options.seconds / rounds,
                            max_requests=-(-options.requests // rounds)
                            if options.requests
                            else None,
                        )
                    )
            for endpoint in (CEILING_PATH, CHECKIN_PATH):
                phase = Phase.merge(slices[endpoint])
                print(
                    f"  {endpoint:<16} c={concurrency:<3} {phase.requests:>6} requests "
                    f"{phase.throughput:8.1f} req/s  p99 {phase.percentile(99):7.1f} ms"
                )
                phases.append(phase)
    return phases


def report(phases: list[Phase]) -> None:
    print()
    header = (
        f"{'endpoint':<16} {'conc':>4} {'requests':>8} {'errors':>6} {'req/s':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'app ms/req':>10} {'db ms/req':>9} "
        f"{'client ms/req':>13} {'load1':>5}"
    )
    print(header)
    print("-" * len(header))
    for phase in phases:
        print(
            f"{phase.endpoint:<16} {phase.concurrency:>4} {phase.requests:>8} {phase.errors:>6} "
            f"{phase.throughput:>8.1f} {phase.percentile(50):>7.1f} {phase.percentile(95):>7.1f} "
            f"{phase.percentile(99):>7.1f} {phase.per_request_ms(phase.app_cpu):>10} "
            f"{phase.per_request_ms(phase.db_cpu):>9} "
            f"{phase.per_request_ms(phase.client_cpu):>13} {phase.load_average:>5.2f}"
        )
    print("(app/db/client ms/req: CPU time of the server process, of its database backends and")
    print(" of this load generator per successful request; all three share the machine's cores)")
    print()
    by_key = {(phase.endpoint, phase.concurrency): phase for phase in phases}
    ratios = {}
    for concurrency in CONCURRENCIES:
        checkin, ceiling = by_key[(CHECKIN_PATH, concurrency)], by_key[(CEILING_PATH, concurrency)]
        ratio = checkin.throughput / ceiling.throughput if ceiling.throughput else 0.0
        ratios[concurrency] = ratio
        print(
            f"concurrency {concurrency:>2}: check-in/ceiling = {ratio:.2f} "
            f"({checkin.throughput:.1f} / {ceiling.throughput:.1f} req/s)"
        )
    outcomes: Counter[str] = Counter()
    for phase in phases:
        if phase.endpoint == CHECKIN_PATH:
            outcomes.update(phase.outcomes)
    total = sum(outcomes.values()) or 1
    mix = ", ".join(f"{name} {count / total:.1%}" for name, count in outcomes.most_common())
    print(f"check-in answers: {mix}")
    print()
    ratio_ok = all(ratio >= TARGET_RATIO for ratio in ratios.values())
    p99 = by_key[(CHECKIN_PATH, TARGET_P99_CONCURRENCY)].percentile(99)
    print(
        f"target throughput >= {TARGET_RATIO:.0%} of the ceiling at every concurrency: "
        f"{'HOLDS' if ratio_ok else 'MISSED'} "
        f"(lowest {min(ratios.values()):.2f})"
    )
    print(
        f"target p99 < {TARGET_P99_MS:.0f} ms at concurrency {TARGET_P99_CONCURRENCY}: "
        f"{'HOLDS' if p99 < TARGET_P99_MS else 'MISSED'} ({p99:.1f} ms)"
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    parser.add_argument("--cards", type=int, default=100_000, help="members, each with a card")
    parser.add_argument("--checkins", type=int, default=1_000_000, help="earlier check-ins")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint and concurrency")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (the API is stateless)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="slices per concurrency in which the two endpoints take turns",
    )
    parser.add_argument("--requests", type=int, help="cap per endpoint and concurrency")
    parser.add_argument("--warmup", type=int, default=200, help="requests per endpoint first")
    parser.add_argument("--repeat-share", type=float, default=0.1, help="scans passed back")
    parser.add_argument("--sample", type=int, default=20_000, help="cards whose QR codes are used")
    parser.add_argument("--seed", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    target = resolve_target(options.database_url)
    print(f"database {target.name}; load average {_load_average()}")
    if not options.skip_load:
        started = time.perf_counter()
        asyncio.run(recreate_database(target))
        migrations.upgrade(target.database_url)
        print(f"created and migrated in {time.perf_counter() - started:.1f} s; loading…")
        started = time.perf_counter()
        asyncio.run(load(target, cards=options.cards, checkins=options.checkins, seed=options.seed))
        print(f"loaded in {time.perf_counter() - started:.1f} s; load average {_load_average()}")

    with tempfile.TemporaryDirectory(prefix="mbench-") as workdir:
        key_dir = Path(workdir) / "keys"
        KeyStore(key_dir).ensure()
        traffic, device_ids = asyncio.run(
            prepare_traffic(
                target,
                key_dir=key_dir,
                pool=options.sample,
                repeat_share=options.repeat_share,
                seed=options.seed,
            )
        )
        removed = asyncio.run(delete_bench_rows(target, device_ids))
        print(
            f"{len(device_ids)} scanners paired, {len(traffic.codes):,} QR codes signed"
            f"{f', {removed:,} rows of earlier runs removed' if removed else ''}"
        )
        server = start_server(target, key_dir, Path(workdir), workers=options.workers)
        try:
            print(
                f"server {server.base_url} (pid {server.process.pid}, "
                f"{options.workers} worker{'s' if options.workers > 1 else ''}); "
                f"{options.seconds:g} s per endpoint and concurrency"
            )
            phases = asyncio.run(benchmark(target, server, traffic, options))
        except KeyboardInterrupt:
            print("interrupted")
            return 130
        finally:
            server.stop()
        asyncio.run(delete_bench_rows(target, device_ids))
    report(phases)
    print(
        f"load average {_load_average()} on {os.cpu_count()} cores; "
        f"{options.workers} server worker{'s' if options.workers > 1 else ''}"
    )
    return 0


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())

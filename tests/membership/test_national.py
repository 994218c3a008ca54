"""The national-scale seed (issue 8, "Scale data"): its database rules, its shape, its reports.

A small factor of the national programme is loaded once into a PostgreSQL database of this
module's own, and each test checks one property of what was loaded with SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

import migrations
from api.app import create_app
from api.cli import app as cli
from membership import demographics, national, rollups
from membership.db import create_engine, create_sessionmaker
from membership.models import StaffRole
from membership.settings import Settings
from tests import factories
from tests.helpers import table_counts
from tests.visitor_rows import brute_visitor_rows, visitor_rows

FACTOR = 0.004
# The year before this day crosses a year end and both daylight-saving changes.
TODAY = date(2026, 3, 15)
FIRST_DAY = TODAY - timedelta(days=365)
SERVER_URL = os.environ.get(
    "MEMBERSHIP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_SCHEMA = """
    SELECT 'constraint', conrelid::regclass::text, conname::text,
           pg_get_constraintdef(oid) || CASE WHEN convalidated THEN '' ELSE ' NOT VALID' END
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'index', indrelid::regclass::text, indexrelid::regclass::text,
           pg_get_indexdef(indexrelid)
    FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid
    WHERE relnamespace = 'public'::regnamespace
"""


def _digest(programme: national.Programme) -> str:
    digest = hashlib.sha256()
    for table in programme.tables:
        for chunk in table.chunks():
            for part in table.encoded(chunk):
                digest.update(part)
    return digest.hexdigest()


class TestGeneration:
    def test_same_seed_same_rows_other_seed_other_rows(self) -> None:
        first = national.generate(today=TODAY, factor=0.001, seed=7)
        again = national.generate(today=TODAY, factor=0.001, seed=7)
        other = national.generate(today=TODAY, factor=0.001, seed=8)
        assert _digest(first) == _digest(again)
        assert _digest(first) != _digest(other)
        assert first.summary == again.summary

    def test_sizes_follow_the_factor(self) -> None:
        assert national.NationalSize.for_factor(1.0) == national.NationalSize(500, 1_500_000)
        assert national.NationalSize.for_factor(0.01) == national.NationalSize(50, 15_000)
        with pytest.raises(ValueError, match="factor"):
            national.NationalSize.for_factor(0)

    def test_about_eight_checkins_per_member(self) -> None:
        summary = national.generate(today=TODAY, factor=0.01).summary
        assert 7.0 < summary.checkins / summary.members < 9.0
        assert summary.visits < summary.checkins
        assert summary.reentries > 0
        assert summary.refusals > 0


class TestRefusals:
    async def test_a_programme_with_members_is_refused_and_kept(
        self, session: AsyncSession, backend: str
    ) -> None:
        member_id = (await factories.create_member(session)).id
        await session.commit()
        before = await table_counts(session)
        expected = (
            national.NationalScaleNeedsPostgres
            if backend == "sqlite"
            else national.ProgrammeNotEmpty
        )
        with pytest.raises(expected):
            await national.seed_national(session, today=TODAY, factor=0.0005)
        await session.rollback()
        assert await table_counts(session) == before
        if backend == "postgresql":
            summary = await national.seed_national(session, today=TODAY, factor=0.0005, force=True)
            await session.commit()
            members = await session.scalar(text("SELECT count(*) FROM members"))
            kept = await session.scalar(
                text("SELECT count(*) FROM members WHERE id = :id"), {"id": member_id}
            )
            assert (members, kept) == (summary.members, 0)


class TestCommand:
    def test_seed_scale_national(self, database_url: str, backend: str) -> None:
        """PostgreSQL: loaded and committed. SQLite: exit code 1 and nothing written."""
        result = CliRunner().invoke(
            cli,
            ["seed", "--scale", "national", "--factor", "0.0005", "--seed", "3"],
            env={"MEMBERSHIP_DATABASE_URL": database_url},
        )
        members = asyncio.run(_members_at(database_url))
        if backend == "sqlite":
            assert (result.exit_code, members) == (1, 0)
        else:
            assert result.exit_code == 0, result.output
            expected = national.generate(today=TODAY, factor=0.0005, seed=3).summary.members
            assert members == expected

    def test_either_demo_or_scale(self, database_url: str) -> None:
        result = CliRunner().invoke(
            cli,
            ["seed", "--demo", "--scale", "national"],
            env={"MEMBERSHIP_DATABASE_URL": database_url},
        )
        assert result.exit_code == 2


async def _members_at(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return int(await session.scalar(text("SELECT count(*) FROM members")) or 0)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Loaded:
    url: str
    summary: national.NationalSummary
    schema_before: set[tuple[str, ...]]


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(_dsn(SERVER_URL), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _schema(url: str) -> set[tuple[str, ...]]:
    connection = await asyncpg.connect(_dsn(url))
    try:
        return {tuple(row) for row in await connection.fetch(_SCHEMA)}
    finally:
        await connection.close()


async def _seed(url: str) -> national.NationalSummary:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            summary = await national.seed_national(session, today=TODAY, factor=FACTOR)
            await session.commit()
            return summary
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def loaded() -> Iterator[Loaded]:
    """A database of this module's own, migrated, then seeded once."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL not reachable ({exc.__class__.__name__})", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable at {SERVER_URL}: national seed tests skipped")
    name = f"mtest_national_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        before = asyncio.run(_schema(url))
        yield Loaded(url=url, summary=asyncio.run(_seed(url)), schema_before=before)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db(loaded: Loaded) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(_dsn(loaded.url))
    yield connection
    await connection.close()


async def _count(db: asyncpg.Connection, query: str, *args: Any) -> int:
    return int(await db.fetchval(query, *args))


@pytest.mark.postgres
class TestDatabaseRules:
    async def test_counts_are_those_printed(self, db: asyncpg.Connection, loaded: Loaded) -> None:
        summary = loaded.summary
        found = await db.fetchrow(
            "SELECT (SELECT count(*) FROM institutions) AS institutions,"
            " (SELECT count(*) FROM members) AS members,"
            " (SELECT count(*) FROM memberships) AS memberships,"
            " (SELECT count(*) FROM membership_terms) AS terms,"
            " (SELECT count(*) FROM payments) AS payments,"
            " (SELECT count(*) FROM cards) AS cards,"
            " (SELECT count(*) FROM checkins) AS checkins,"
            " (SELECT count(*) FROM checkins WHERE counted) AS visits,"
            " (SELECT count(*) FROM checkins WHERE result = 'reentry') AS reentries,"
            " (SELECT count(*) FROM checkins WHERE result = 'refused') AS refusals"
        )
        assert dict(found) == {name: getattr(summary, name) for name in found.keys()}
        assert summary.members == pytest.approx(national.NATIONAL_MEMBERS * FACTOR, rel=0.02)

    async def test_one_counted_visit_per_visitor_institution_and_day(
        self, db: asyncpg.Connection
    ) -> None:
        assert not await _count(
            db,
            "SELECT count(*) FROM (SELECT 1 FROM checkins WHERE counted"
            " GROUP BY visitor_key, institution_id, local_date HAVING count(*) > 1) AS twice",
        )
        assert not await _count(
            db, "SELECT count(*) FROM checkins WHERE counted <> (result = 'admitted')"
        )

    async def test_reentries_and_passback_refusals_follow_a_counted_visit(
        self, db: asyncpg.Connection
    ) -> None:
        """A re-entry comes after the 15-minute window, an `already_used` refusal inside it."""
        following = await db.fetchrow(
            "SELECT count(*) AS scans, count(*) FILTER (WHERE EXISTS ("
            "  SELECT 1 FROM checkins c WHERE c.counted AND c.visitor_key = r.visitor_key"
            "  AND c.institution_id = r.institution_id AND c.local_date = r.local_date"
            "  AND c.scanned_at < r.scanned_at AND (r.result = 'reentry')"
            "      = (r.scanned_at >= c.scanned_at + interval '15 minutes'))) AS follow"
            " FROM checkins r WHERE r.result = 'reentry' OR r.reason = 'already_used'"
        )
        assert following["scans"] > 0
        assert following["follow"] == following["scans"]

    async def test_local_date_is_the_day_in_the_institution_zone(
        self, db: asyncpg.Connection
    ) -> None:
        assert not await _count(
            db,
            "SELECT count(*) FROM checkins c JOIN institutions i ON i.id = c.institution_id"
            " WHERE c.local_date <> (c.scanned_at AT TIME ZONE i.timezone)::date"
            " OR c.local_date < $1 OR c.local_date >= $2",
            FIRST_DAY,
            TODAY,
        )

    async def test_visits_fall_on_days_a_paid_term_covers_with_the_holders_card(
        self, db: asyncpg.Connection
    ) -> None:
        assert not await _count(
            db,
            "SELECT count(*) FROM checkins c WHERE c.counted AND NOT EXISTS ("
            " SELECT 1 FROM membership_holders h JOIN membership_terms t"
            " ON t.membership_id = h.membership_id WHERE h.member_id = c.member_id"
            " AND t.status = 'active' AND t.starts_on <= c.local_date"
            " AND c.local_date < t.ends_on)",
        )
        assert not await _count(
            db,
            "SELECT count(*) FROM checkins c JOIN cards k ON k.id = c.card_id"
            " JOIN members m ON m.id = c.member_id"
            " WHERE k.member_id <> c.member_id OR c.visitor_key <> m.visitor_key",
        )

    async def test_visitor_keys_are_unique_and_present(self, db: asyncpg.Connection) -> None:
        keys = await db.fetchrow(
            "SELECT count(*) AS members, count(DISTINCT visitor_key) AS keys,"
            " count(*) FILTER (WHERE visitor_key !~ '^[0-9a-f]{32}$') AS malformed FROM members"
        )
        assert (keys["keys"], keys["malformed"]) == (keys["members"], 0)

    async def test_one_live_card_per_holder_and_membership_states_agree(
        self, db: asyncpg.Connection
    ) -> None:
        assert not await _count(
            db,
            "SELECT count(*) FROM members m WHERE (SELECT count(*) FROM cards k"
            " WHERE k.member_id = m.id AND k.status IN ('active', 'temporary'))"
            " <> (SELECT count(*) FROM membership_holders h JOIN memberships s"
            " ON s.id = h.membership_id WHERE h.member_id = m.id"
            " AND s.status IN ('active', 'in_grace'))",
        )
        statuses = {
            row["status"] for row in await db.fetch("SELECT DISTINCT status FROM memberships")
        }
        assert {"active", "expired", "refunded"} <= statuses

    async def test_age_band_and_region_as_the_door_fixes_them(self, db: asyncpg.Connection) -> None:
        rows = await db.fetch(
            "SELECT m.birth_date, m.postal_code, c.local_date, c.age_band, c.region"
            " FROM checkins c JOIN members m ON m.id = c.member_id WHERE c.id % 7 = 0"
        )
        assert len(rows) > 1000
        for row in rows:
            assert row["age_band"] == demographics.age_band(row["birth_date"], row["local_date"])
            assert row["region"] == demographics.region(row["postal_code"])
        assert {row["age_band"] for row in rows} >= {"0-12", "13-17", "65+", None}

    async def test_day_counters_match_the_checkins(self, db: asyncpg.Connection) -> None:
        counters = await db.fetchrow(
            "SELECT sum(checkins) AS all, sum(checkins) FILTER (WHERE counted) AS visits"
            " FROM institution_day_counts"
        )
        totals = await db.fetchrow(
            "SELECT count(*) AS all, count(*) FILTER (WHERE counted) AS visits FROM checkins"
        )
        assert dict(counters) == dict(totals)

    async def test_day_counters_are_what_a_rebuild_counts(self, loaded: Loaded) -> None:
        """The seed sums the counters from its arrays; `rollups.rebuild` recounts the rows in SQL
        (with PostgreSQL's own wall-clock hours across both daylight-saving changes)."""
        counters = text(
            "SELECT institution_id, local_date, hour, product_id, result, reason, counted, checkins"
            " FROM institution_day_counts"
        )
        engine = create_engine(loaded.url)
        try:
            async with create_sessionmaker(engine)() as session:
                seeded = {tuple(row) for row in await session.execute(counters)}
                await rollups.rebuild(session)
                rebuilt = {tuple(row) for row in await session.execute(counters)}
                await session.rollback()
        finally:
            await engine.dispose()
        assert len(seeded) > 1000
        assert {row[2] for row in seeded} > {10, 19}
        assert seeded == rebuilt

    async def test_visitor_rows_are_those_of_the_checkins(self, loaded: Loaded) -> None:
        """The seed takes the visitor rows from its arrays; they are what the definition gives
        from the check-ins, and what `rollups.rebuild` merges in SQL."""
        engine = create_engine(loaded.url)
        try:
            async with create_sessionmaker(engine)() as session:
                seeded = await visitor_rows(session)
                assert seeded == await brute_visitor_rows(session)
                await rollups.rebuild(session)
                assert await visitor_rows(session) == seeded
                await session.rollback()
        finally:
            await engine.dispose()
        assert len(seeded) > 1000
        assert any(row[4] is not None for row in seeded.values())

    async def test_schema_ends_as_the_migrations_made_it(self, loaded: Loaded) -> None:
        assert await _schema(loaded.url) == loaded.schema_before
        await asyncio.to_thread(migrations.check, loaded.url)


@pytest.mark.postgres
class TestShape:
    async def test_every_institution_has_visits_and_a_few_have_most(
        self, db: asyncpg.Connection
    ) -> None:
        per_institution = [
            row["visits"]
            for row in await db.fetch(
                "SELECT count(c.id) AS visits FROM institutions i LEFT JOIN checkins c"
                " ON c.institution_id = i.id AND c.counted GROUP BY i.id ORDER BY 1 DESC"
            )
        ]
        median = per_institution[len(per_institution) // 2]
        assert per_institution[-1] > 0
        assert per_institution[0] > 8 * median
        assert sum(per_institution[:3]) > 0.25 * sum(per_institution)

    async def test_members_mostly_visit_near_home(self, db: asyncpg.Connection) -> None:
        """Visits in the visitor's own region, against what chance would give."""
        prefix_of = {city: prefix for city, prefix, *_ in national.CITIES}
        rows = await db.fetch(
            "SELECT c.region, i.city, count(*) AS visits FROM checkins c"
            " JOIN institutions i ON i.id = c.institution_id WHERE c.counted GROUP BY 1, 2"
        )
        total = sum(row["visits"] for row in rows)
        by_region: dict[str, int] = {}
        by_place: dict[str, int] = {}
        for row in rows:
            place = prefix_of[row["city"]]
            by_region[row["region"]] = by_region.get(row["region"], 0) + row["visits"]
            by_place[place] = by_place.get(place, 0) + row["visits"]
        home = sum(row["visits"] for row in rows if row["region"] == prefix_of[row["city"]])
        chance = sum(by_region[r] * by_place.get(r, 0) for r in by_region) / total**2
        assert home / total > 3 * chance

    async def test_weekends_seasons_and_opening_hours(self, db: asyncpg.Connection) -> None:
        by_weekday = {
            row["weekday"]: row["visits"]
            for row in await db.fetch(
                "SELECT extract(isodow FROM local_date)::int AS weekday, count(*) AS visits"
                " FROM checkins WHERE counted GROUP BY 1"
            )
        }
        assert min(by_weekday[6], by_weekday[7]) > 2 * by_weekday[1]
        months = [
            row["visits"]
            for row in await db.fetch(
                "SELECT count(*) AS visits FROM checkins WHERE counted"
                " GROUP BY date_trunc('month', local_date)"
            )
        ]
        assert max(months) > 1.4 * min(months)
        day_hours = await db.fetchval(
            "SELECT avg((extract(hour FROM c.scanned_at AT TIME ZONE i.timezone)"
            " BETWEEN 9 AND 20)::int) FROM checkins c"
            " JOIN institutions i ON i.id = c.institution_id"
        )
        assert day_hours == 1


@pytest.mark.postgres
async def test_every_report_gives_figures(loaded: Loaded, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=loaded.url,
        key_dir=tmp_path / "keys",
        photo_dir=tmp_path / "photos",
        base_url="http://testserver",
    )
    engine = create_engine(loaded.url)
    try:
        async with create_sessionmaker(engine)() as session:
            operator = await factories.create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
            headers = await factories.auth_headers(session, staff_user=operator)
            await session.commit()
            busiest = (
                await session.execute(
                    text(
                        "SELECT institution_id FROM checkins WHERE counted"
                        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    period = {"start": FIRST_DAY.isoformat(), "end": (TODAY - timedelta(days=1)).isoformat()}
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            base = f"/v1/institutions/{busiest}/reports"

            async def get(path: str, **params: Any) -> Any:
                response = await client.get(path, params=params, headers=headers)
                assert response.status_code == 200, response.text
                return response.json()

            visits = await get(f"{base}/visits", **period)
            last_month = await get(
                f"{base}/visits",
                start=(TODAY - timedelta(days=30)).isoformat(),
                end=(TODAY - timedelta(days=1)).isoformat(),
            )
            affinity = await get(f"{base}/affinity", **period)
            flows = await get(f"{base}/flows", **period)
            segments = await get(f"{base}/segments", as_of=(TODAY - timedelta(days=1)).isoformat())
            # The seed holds one year of visits: lapsed visitors show from a later reference day.
            later = await get(f"{base}/segments", as_of=(TODAY + timedelta(days=120)).isoformat())
            payout = await get(f"{base}/payout", year=FIRST_DAY.year)
            network = await get("/v1/reports/network", **period)
    finally:
        await app.state.engine.dispose()
    assert visits["visits"] > visits["visitors"] > 0
    assert last_month["visitors"] > last_month["new_visitors"] > 0
    assert visits["repeat_visitors"] > 0
    assert {row["reason"] for row in visits["not_counted"]} >= {"reentry", "already_used"}
    assert sum(1 for band in visits["age_bands"] if not band["suppressed"]) >= 4
    assert sum(1 for region in visits["regions"] if not region["suppressed"]) >= 4
    assert any(not row["suppressed"] and row["lift"] > 1 for row in affinity["by_lift"])
    assert any(not row["suppressed"] for row in flows["before"] + flows["after"])
    counts = {row["segment"]: row["visitors"] for row in segments["segments"]}
    assert all(counts[name] > 0 for name in ("renewal_at_risk", "new", "loyal", "regular"))
    assert any(row["segment"] == "lapsed" and row["visitors"] > 0 for row in later["segments"])
    models = {month["model"] for month in payout["months"] if month["visits"]}
    assert models == {"tariff", "pool"}
    assert payout["total_minor"] > 0
    assert any(not cell["suppressed"] for cell in network["matrix"])
    assert network["top_flows"]

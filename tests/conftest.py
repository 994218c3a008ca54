"""Test databases: every database test runs on SQLite and on PostgreSQL.

The schema always comes from the Alembic migrations, never `create_all`. SQLite tests get a copy
of a migrated template file; PostgreSQL tests share one database made for this test session and
are isolated by emptying every table after each test, so tests may commit, race and run a real
server process against it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import migrations
from api.app import create_app
from membership.db import create_engine, create_sessionmaker
from membership.models import Base
from membership.settings import Settings

POSTGRES_URL = os.environ.get(
    "MEMBERSHIP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    migrations.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of its own for this test session, so parallel runs never meet."""
    try:
        asyncio.run(_pg_execute(POSTGRES_URL, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL not reachable at {POSTGRES_URL} ({exc.__class__.__name__})"
        if IN_CI:
            pytest.fail(f"{message}; with CI=true the PostgreSQL tests must run", pytrace=False)
        pytest.skip(f"{message}: PostgreSQL half of the suite skipped")
    name = f"mtest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(_pg_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# DELETE beats TRUNCATE for a handful of rows: TRUNCATE pays a file rewrite per table. The
# replica role skips foreign-key triggers, so self-references (refunds, replaced cards) do not
# block the delete.
_EMPTY_ALL_TABLES = "SET session_replication_role = replica; " + "; ".join(
    f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)
)


# Kept columns that every test's data must agree with whatever path wrote it: a check after each
# test catches a writer that forgets one.
_OUT_OF_STEP = """
SELECT CAST(m.id AS TEXT) FROM memberships AS m
WHERE COALESCE(m.paid_until, '0001-01-01') <> COALESCE((
    SELECT max(t.ends_on) FROM membership_terms AS t
    WHERE t.membership_id = m.id AND t.status = 'active'
), '0001-01-01')
"""


def _assert_in_step(found: list[str]) -> None:
    assert not found, f"memberships.paid_until out of step with the terms of {found}"


async def _pg_out_of_step(url: str) -> list[str]:
    connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        return [row[0] for row in await connection.fetch(_OUT_OF_STEP)]
    finally:
        await connection.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "db.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        with sqlite3.connect(path) as connection:
            _assert_in_step([row[0] for row in connection.execute(_OUT_OF_STEP)])
        return
    url: str = request.getfixturevalue("postgres_database")
    yield url
    try:
        _assert_in_step(asyncio.run(_pg_out_of_step(url)))
    finally:
        asyncio.run(_pg_execute(url, _EMPTY_ALL_TABLES))


@pytest.fixture
def backend(database_url: str) -> str:
    return make_url(database_url).get_backend_name()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        key_dir=tmp_path / "keys",
        photo_dir=tmp_path / "photos",
        base_url="http://testserver",
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session the test commits itself, as a request or a job would."""
    async with create_sessionmaker(engine)() as session:
        yield session


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    yield app
    await app.state.engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    postgres = [report for report in skipped if "PostgreSQL" in str(report.longrepr)]
    if postgres:
        terminalreporter.write_line(
            f"NOTE: {len(postgres)} PostgreSQL tests were SKIPPED (no server); set "
            "MEMBERSHIP_TEST_POSTGRES_URL or start PostgreSQL to run them.",
            yellow=True,
            bold=True,
        )

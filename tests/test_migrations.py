"""Alembic owns the schema: it builds, tears down and rebuilds on both databases, with no drift."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect

import migrations
from membership.db import create_engine
from membership.models import Base


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(url)
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        await engine.dispose()
        return names

    return asyncio.run(read())


@pytest.fixture
def empty_database_url(database_url: str) -> str:
    """The per-test database, taken back to an empty schema first."""
    migrations.downgrade(database_url, "base")
    return database_url


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    assert _tables(url) <= {"alembic_version"}
    migrations.upgrade(url)
    assert set(Base.metadata.tables) <= _tables(url)
    migrations.downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}
    migrations.upgrade(url)
    assert set(Base.metadata.tables) <= _tables(url)


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    migrations.check(database_url)

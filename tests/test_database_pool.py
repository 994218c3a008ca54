"""The connection pool is sized by settings, so a door rush is not served by reconnecting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy.pool import QueuePool

from api.app import create_app
from membership.settings import Settings


def test_the_app_engine_takes_its_pool_size_from_settings() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/unused",
        database_pool_size=7,
        database_max_overflow=3,
    )
    pool = create_app(settings).state.engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.size() == 7


@pytest.mark.parametrize(
    ("name", "value"), [("database_pool_size", 0), ("database_max_overflow", -1)]
)
def test_an_impossible_pool_is_refused_at_start(name: str, value: int) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings.model_validate({name: value})

"""Dependencies shared by the routers; this is the only place that commits in HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership.settings import Settings


async def get_settings(request: Request) -> Settings:
    # Async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker
    # thread, a thread hand-off on every request that reads a setting (every scan).
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, else rolled back."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the commit happens before the response is sent, so a failed commit can
# never be answered with a success.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

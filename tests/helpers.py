"""Assertions and set-ups shared by the API tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import utcnow
from membership.models import Base, Institution, StaffRole, StaffUser
from tests import factories


async def table_counts(session: AsyncSession) -> dict[str, int]:
    """Rows in every table: equal before and after a refused request proves nothing was written."""
    counts: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        counts[table.name] = await session.scalar(select(func.count()).select_from(table)) or 0
    # Ends the transaction (on SQLite a read keeps its snapshot until then), so the next call
    # sees what requests committed meanwhile. Commit, not rollback: rollback would expire the
    # test's objects, and reloading them lazily is not possible in async.
    await session.commit()
    return counts


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    """The response is an RFC 9457 problem document of this status and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    return body


@dataclass(frozen=True)
class StaffWorld:
    """Two institutions and one account per role, each with a bearer header."""

    institution_a: Institution
    institution_b: Institution
    operator: StaffUser
    manager_a: StaffUser
    staff_a: StaffUser
    manager_b: StaffUser
    headers: dict[str, dict[str, str]]


async def create_staff_world(session: AsyncSession) -> StaffWorld:
    """Committed, so requests made through the app see it."""
    institution_a = await factories.create_institution(session, code="RIJKS", city="Amsterdam")
    institution_b = await factories.create_institution(session, code="BOIJMANS", city="Rotterdam")
    operator = await factories.create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    manager_a = await factories.create_staff_user(
        session, role=StaffRole.INSTITUTION_MANAGER, institution=institution_a
    )
    staff_a = await factories.create_staff_user(
        session, role=StaffRole.INSTITUTION_STAFF, institution=institution_a
    )
    manager_b = await factories.create_staff_user(
        session, role=StaffRole.INSTITUTION_MANAGER, institution=institution_b
    )
    headers = {
        "operator": await factories.auth_headers(session, staff_user=operator),
        "manager_a": await factories.auth_headers(session, staff_user=manager_a),
        "staff_a": await factories.auth_headers(session, staff_user=staff_a),
        "manager_b": await factories.auth_headers(session, staff_user=manager_b),
    }
    await session.commit()
    return StaffWorld(
        institution_a=institution_a,
        institution_b=institution_b,
        operator=operator,
        manager_a=manager_a,
        staff_a=staff_a,
        manager_b=manager_b,
        headers=headers,
    )


async def asgi_get(
    app: FastAPI,
    path: str,
    query: str,
    headers: dict[str, str],
    on_first_body: Callable[[], Awaitable[None]] | None = None,
) -> list[MutableMapping[str, Any]]:
    """Every message the app sends for one GET, as a server would receive them. With
    `on_first_body` the client reads the first chunk of the body (calling it as the chunk
    arrives) and then goes away; without, it stays to the end."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    messages: list[MutableMapping[str, Any]] = []
    requested = False
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)
        if on_first_body and message["type"] == "http.response.body" and not gone.is_set():
            await on_first_body()
            gone.set()

    await app(scope, receive, send)
    return messages


def one_local_day(zone: str, *, hours: float) -> datetime:
    """A moment at least `hours` before now whose next `hours` lie in one local day of `zone`,
    so that scans spread over them are one day's visits whenever the suite runs (also in the
    hours just after midnight)."""
    span = timedelta(hours=hours)
    start = utcnow() - span
    here = ZoneInfo(zone)
    end = (start + span).astimezone(here)
    if start.astimezone(here).date() == end.date():
        return start
    midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - span - timedelta(minutes=1)).astimezone(UTC)

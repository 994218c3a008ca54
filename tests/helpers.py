"""Assertions and set-ups shared by the API tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

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

"""Who may do what in the admin API, as one table: role x endpoint -> status.

A refusal must also change nothing, so every 401/403 row checks the row counts of all tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests import factories
from tests.helpers import assert_problem, create_staff_world, table_counts

ROLES = ("operator", "manager_a", "staff_a", "anonymous")

INSTITUTION = {
    "code": "NEWMUSEUM",
    "name": "New Museum",
    "city": "Utrecht",
    "timezone": "Europe/Amsterdam",
    "joined_on": "2025-01-01",
    "visit_tariff_minor": 900,
    "admission_price_minor": 1500,
    "currency": "EUR",
}
TARIFF = {
    "valid_from": "2026-01-01",
    "visit_tariff_minor": 950,
    "admission_price_minor": 1600,
    "currency": "EUR",
}
PRODUCT = {
    "code": "ANNUAL-NEW",
    "name": "Annual card",
    "kind": "annual",
    "price_minor": 7500,
    "currency": "EUR",
}
PASSWORD = "a long enough password"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    # operator, manager of A, staff of A
    expected: tuple[int, int, int]
    body: dict[str, Any] | None = None


CASES = [
    Case("institutions.list", "GET", "/v1/institutions", (200, 200, 200)),
    Case("institutions.create", "POST", "/v1/institutions", (201, 403, 403), INSTITUTION),
    Case("institutions.read-own", "GET", "/v1/institutions/{a}", (200, 200, 200)),
    Case("institutions.read-other", "GET", "/v1/institutions/{b}", (200, 403, 403)),
    Case(
        "institutions.update-own", "PATCH", "/v1/institutions/{a}", (200, 200, 403), {"name": "N"}
    ),
    Case(
        "institutions.update-other", "PATCH", "/v1/institutions/{b}", (200, 403, 403), {"name": "N"}
    ),
    Case(
        "institutions.update-code",
        "PATCH",
        "/v1/institutions/{a}",
        (200, 403, 403),
        {"code": "NEW"},
    ),
    Case("institutions.deactivate", "POST", "/v1/institutions/{a}/deactivate", (200, 403, 403)),
    Case(
        "institutions.add-tariff", "POST", "/v1/institutions/{a}/tariffs", (201, 403, 403), TARIFF
    ),
    Case("venues.list-own", "GET", "/v1/institutions/{a}/venues", (200, 200, 200)),
    Case("venues.list-other", "GET", "/v1/institutions/{b}/venues", (200, 403, 403)),
    Case(
        "venues.create-own",
        "POST",
        "/v1/institutions/{a}/venues",
        (201, 201, 403),
        {"code": "EAST", "name": "East"},
    ),
    Case(
        "venues.create-other",
        "POST",
        "/v1/institutions/{b}/venues",
        (201, 403, 403),
        {"code": "EAST", "name": "East"},
    ),
    Case("venues.read-own", "GET", "/v1/institutions/{a}/venues/{va}", (200, 200, 200)),
    Case("venues.read-other", "GET", "/v1/institutions/{b}/venues/{vb}", (200, 403, 403)),
    Case(
        "venues.update-own",
        "PATCH",
        "/v1/institutions/{a}/venues/{va}",
        (200, 200, 403),
        {"name": "N"},
    ),
    Case(
        "venues.update-other",
        "PATCH",
        "/v1/institutions/{b}/venues/{vb}",
        (200, 403, 403),
        {"name": "N"},
    ),
    Case(
        "venues.deactivate-own",
        "POST",
        "/v1/institutions/{a}/venues/{va}/deactivate",
        (200, 200, 403),
    ),
    Case(
        "venues.deactivate-other",
        "POST",
        "/v1/institutions/{b}/venues/{vb}/deactivate",
        (200, 403, 403),
    ),
    Case("products.list", "GET", "/v1/products", (200, 200, 200)),
    Case("products.read", "GET", "/v1/products/{p}", (200, 200, 200)),
    Case("products.create", "POST", "/v1/products", (201, 403, 403), PRODUCT),
    Case("products.update", "PATCH", "/v1/products/{p}", (200, 403, 403), {"price_minor": 8000}),
    Case("products.deactivate", "POST", "/v1/products/{p}/deactivate", (200, 403, 403)),
    Case("staff.list", "GET", "/v1/staff-users", (200, 200, 403)),
    Case(
        "staff.create-own",
        "POST",
        "/v1/staff-users",
        (201, 201, 403),
        {
            "email": "new@example.org",
            "name": "New",
            "password": PASSWORD,
            "role": "institution_staff",
            "institution_id": "{a}",
        },
    ),
    Case(
        "staff.create-other",
        "POST",
        "/v1/staff-users",
        (201, 403, 403),
        {
            "email": "new@example.org",
            "name": "New",
            "password": PASSWORD,
            "role": "institution_manager",
            "institution_id": "{b}",
        },
    ),
    Case(
        "staff.create-operator",
        "POST",
        "/v1/staff-users",
        (201, 403, 403),
        {"email": "new@example.org", "name": "New", "password": PASSWORD, "role": "operator_admin"},
    ),
    Case("staff.read-own", "GET", "/v1/staff-users/{sa}", (200, 200, 403)),
    Case("staff.read-other", "GET", "/v1/staff-users/{mb}", (200, 403, 403)),
    Case("staff.read-operator", "GET", "/v1/staff-users/{op}", (200, 403, 403)),
    Case("staff.update-own", "PATCH", "/v1/staff-users/{sa}", (200, 200, 403), {"name": "N"}),
    Case("staff.update-other", "PATCH", "/v1/staff-users/{mb}", (200, 403, 403), {"name": "N"}),
    Case(
        "staff.promote-to-operator",
        "PATCH",
        "/v1/staff-users/{sa}",
        (200, 403, 403),
        {"role": "operator_admin", "institution_id": None},
    ),
    Case(
        "staff.move-to-other",
        "PATCH",
        "/v1/staff-users/{sa}",
        (200, 403, 403),
        {"institution_id": "{b}"},
    ),
    Case("staff.deactivate-own", "POST", "/v1/staff-users/{sa}/deactivate", (200, 200, 403)),
    Case("staff.deactivate-other", "POST", "/v1/staff-users/{mb}/deactivate", (200, 403, 403)),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_authorisation_matrix(
    client: httpx.AsyncClient, session: AsyncSession, case: Case, role: str
) -> None:
    world = await create_staff_world(session)
    venue_a = await factories.create_venue(session, institution=world.institution_a)
    venue_b = await factories.create_venue(session, institution=world.institution_b)
    product = await factories.create_product(session)
    await session.commit()
    ids = {
        "a": str(world.institution_a.id),
        "b": str(world.institution_b.id),
        "va": str(venue_a.id),
        "vb": str(venue_b.id),
        "p": str(product.id),
        "sa": str(world.staff_a.id),
        "mb": str(world.manager_b.id),
        "op": str(world.operator.id),
    }
    expected = 401 if role == "anonymous" else case.expected[ROLES.index(role)]
    before = await table_counts(session)

    response = await client.request(
        case.method,
        _fill(case.path, ids),
        json=_fill(case.body, ids),
        headers=world.headers.get(role, {}),
    )

    if expected == 401:
        assert_problem(response, 401, "invalid-token")
    elif expected == 403:
        assert_problem(response, 403, "forbidden")
    else:
        assert response.status_code == expected, response.text
    if expected >= 400:
        assert await table_counts(session) == before

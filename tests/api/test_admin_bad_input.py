"""Bad input gets a clear 4xx problem document and writes nothing (rule 6).

Every case compares the row counts of all tables before and after the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from membership import institutions, products, staff
from membership.models import StaffRole
from tests import factories
from tests.helpers import StaffWorld, assert_problem, create_staff_world, table_counts

INSTITUTION = {
    "code": "CENTRAAL",
    "name": "Centraal Museum",
    "city": "Utrecht",
    "timezone": "Europe/Amsterdam",
    "joined_on": "2024-03-01",
    "visit_tariff_minor": 900,
    "admission_price_minor": 1650,
    "currency": "EUR",
}
PRODUCT = {
    "code": "YOUTH",
    "name": "Youth card",
    "kind": "youth",
    "price_minor": 3750,
    "currency": "EUR",
    "max_age": 18,
}
STAFF = {
    "email": "new@example.org",
    "name": "New Colleague",
    "password": "a long enough password",
    "role": "institution_staff",
    "institution_id": "{a}",
}


@dataclass(frozen=True)
class Bad:
    id: str
    method: str
    path: str
    status: int
    slug: str
    body: Any = None
    params: dict[str, Any] | None = None
    role: str = "operator"


def institution(**changes: Any) -> dict[str, Any]:
    return {**INSTITUTION, **changes}


def product(**changes: Any) -> dict[str, Any]:
    return {**PRODUCT, **changes}


def staff_user(**changes: Any) -> dict[str, Any]:
    return {**STAFF, **changes}


CASES = [
    # Unknown fields
    Bad(
        "institution.unknown-field",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(colour="red"),
    ),
    Bad(
        "product.unknown-field",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(discount=10),
    ),
    Bad(
        "staff.unknown-field",
        "POST",
        "/v1/staff-users",
        422,
        "validation-error",
        staff_user(is_admin=True),
    ),
    Bad(
        "institution.patch-unknown-field",
        "PATCH",
        "/v1/institutions/{a}",
        422,
        "validation-error",
        {"active": False},
    ),
    Bad(
        "product.patch-unknown-field",
        "PATCH",
        "/v1/products/{p}",
        422,
        "validation-error",
        {"id": "x"},
    ),
    Bad(
        "venue.patch-unknown-field",
        "PATCH",
        "/v1/institutions/{a}/venues/{va}",
        422,
        "validation-error",
        {"institution_id": "{b}"},
    ),
    Bad(
        "staff.patch-unknown-field",
        "PATCH",
        "/v1/staff-users/{sa}",
        422,
        "validation-error",
        {"password_hash": "x"},
    ),
    Bad(
        "list.unknown-parameter",
        "GET",
        "/v1/institutions",
        422,
        "validation-error",
        params={"sort": "name"},
    ),
    # Wrong types and shapes
    Bad(
        "institution.text-for-number",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(anti_passback_minutes="many"),
    ),
    Bad(
        "institution.bad-date",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(joined_on="yesterday"),
    ),
    Bad(
        "product.fractional-price",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(price_minor=37.5),
    ),
    Bad(
        "product.unknown-kind",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(kind="lifetime"),
    ),
    Bad(
        "product.ids-not-a-list",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(accepted_institution_ids="{a}"),
    ),
    Bad(
        "staff.unknown-role",
        "POST",
        "/v1/staff-users",
        422,
        "validation-error",
        staff_user(role="superuser"),
    ),
    Bad(
        "staff.bad-email",
        "POST",
        "/v1/staff-users",
        422,
        "validation-error",
        staff_user(email="not-an-address"),
    ),
    Bad(
        "staff.short-password",
        "POST",
        "/v1/staff-users",
        422,
        "validation-error",
        staff_user(password="short"),
    ),
    Bad("body.not-an-object", "POST", "/v1/institutions", 422, "validation-error", ["CENTRAAL"]),
    Bad("path.not-a-uuid", "GET", "/v1/institutions/42", 422, "validation-error", role="staff_a"),
    Bad(
        "patch.null-for-required",
        "PATCH",
        "/v1/institutions/{a}",
        422,
        "validation-error",
        {"name": None},
    ),
    Bad(
        "patch.null-price",
        "PATCH",
        "/v1/products/{p}",
        422,
        "validation-error",
        {"price_minor": None},
    ),
    Bad("list.limit-zero", "GET", "/v1/products", 422, "validation-error", params={"limit": 0}),
    Bad(
        "list.limit-too-big", "GET", "/v1/products", 422, "validation-error", params={"limit": 201}
    ),
    Bad(
        "list.negative-offset",
        "GET",
        "/v1/staff-users",
        422,
        "validation-error",
        params={"offset": -1},
    ),
    # Invalid currency and time zone
    Bad(
        "institution.unknown-currency",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(currency="EUX"),
    ),
    Bad(
        "institution.lower-case-currency",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(currency="eur"),
    ),
    Bad(
        "product.unknown-currency",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(currency="XYZ"),
    ),
    Bad(
        "product.patch-unknown-currency",
        "PATCH",
        "/v1/products/{p}",
        422,
        "validation-error",
        {"currency": "EURO"},
    ),
    Bad(
        "tariff.unknown-currency",
        "POST",
        "/v1/institutions/{a}/tariffs",
        422,
        "validation-error",
        {
            "valid_from": "2026-01-01",
            "visit_tariff_minor": 1,
            "admission_price_minor": 1,
            "currency": "ABC",
        },
    ),
    Bad(
        "institution.unknown-timezone",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(timezone="Europe/Amstredam"),
    ),
    Bad(
        "institution.offset-not-a-zone",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(timezone="+01:00"),
    ),
    Bad(
        "institution.patch-unknown-timezone",
        "PATCH",
        "/v1/institutions/{a}",
        422,
        "validation-error",
        {"timezone": "Mars/Olympus"},
        role="manager_a",
    ),
    # Out of range
    Bad(
        "product.validity-0",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(validity_months=0),
    ),
    Bad(
        "product.validity-37",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(validity_months=37),
    ),
    Bad(
        "product.patch-validity-37",
        "PATCH",
        "/v1/products/{p}",
        422,
        "validation-error",
        {"validity_months": 37},
    ),
    Bad(
        "product.negative-price",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(price_minor=-1),
    ),
    Bad(
        "product.vat-over-100-percent",
        "POST",
        "/v1/products",
        422,
        "validation-error",
        product(vat_rate_bp=10001),
    ),
    Bad(
        "institution.negative-tariff",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(visit_tariff_minor=-850),
    ),
    Bad(
        "institution.anti-passback-over-a-day",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(anti_passback_minutes=1441),
    ),
    Bad(
        "institution.bad-code",
        "POST",
        "/v1/institutions",
        422,
        "validation-error",
        institution(code="centraal museum"),
    ),
    Bad(
        "venue.bad-code",
        "POST",
        "/v1/institutions/{a}/venues",
        422,
        "validation-error",
        {"code": "-", "name": "X"},
    ),
    # Duplicates
    Bad(
        "institution.duplicate-code",
        "POST",
        "/v1/institutions",
        409,
        "duplicate-code",
        institution(code="RIJKS"),
    ),
    Bad(
        "institution.patch-duplicate-code",
        "PATCH",
        "/v1/institutions/{a}",
        409,
        "duplicate-code",
        {"code": "BOIJMANS"},
    ),
    Bad(
        "product.duplicate-code",
        "POST",
        "/v1/products",
        409,
        "duplicate-code",
        product(code="ANNUAL"),
    ),
    Bad(
        "venue.duplicate-code",
        "POST",
        "/v1/institutions/{a}/venues",
        409,
        "duplicate-code",
        {"code": "MAIN", "name": "Main"},
        role="manager_a",
    ),
    Bad(
        "staff.duplicate-email",
        "POST",
        "/v1/staff-users",
        409,
        "duplicate-email",
        staff_user(email="{manager_b_email}"),
    ),
    # Credentials and scope
    Bad(
        "deactivated-user-token",
        "GET",
        "/v1/institutions",
        401,
        "invalid-token",
        role="deactivated",
    ),
    Bad(
        "deactivated-user-writes",
        "PATCH",
        "/v1/institutions/{a}",
        401,
        "invalid-token",
        {"name": "X"},
        role="deactivated",
    ),
    Bad(
        "manager.other-institution",
        "PATCH",
        "/v1/institutions/{b}",
        403,
        "forbidden",
        {"name": "Mine now"},
        role="manager_a",
    ),
    Bad(
        "manager.other-institution-venue",
        "POST",
        "/v1/institutions/{b}/venues",
        403,
        "forbidden",
        {"code": "EAST", "name": "East"},
        role="manager_a",
    ),
    Bad(
        "manager.staff-for-other-institution",
        "POST",
        "/v1/staff-users",
        403,
        "forbidden",
        staff_user(institution_id="{b}"),
        role="manager_a",
    ),
]


@pytest.fixture
async def world(session: AsyncSession) -> StaffWorld:
    world = await create_staff_world(session)
    await factories.create_product(session, code="ANNUAL")
    await factories.create_venue(session, institution=world.institution_a, code="MAIN")
    deactivated = await factories.create_staff_user(
        session, role=StaffRole.INSTITUTION_MANAGER, institution=world.institution_a
    )
    world.headers["deactivated"] = await factories.auth_headers(session, staff_user=deactivated)
    deactivated.active = False
    await session.commit()
    return world


async def ids_of(session: AsyncSession, world: StaffWorld) -> dict[str, str]:
    annual = await products.list_products(session, limit=1, offset=0, q="annual")
    main = await institutions.list_venues(
        session, institution_id=world.institution_a.id, limit=1, offset=0
    )
    await session.commit()
    return {
        "a": str(world.institution_a.id),
        "b": str(world.institution_b.id),
        "p": str(annual.items[0].id),
        "va": str(main.items[0].id),
        "sa": str(world.staff_a.id),
        "manager_b_email": world.manager_b.email,
    }


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, ids) for item in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld, case: Bad
) -> None:
    ids = await ids_of(session, world)
    before = await table_counts(session)

    response = await client.request(
        case.method,
        fill(case.path, ids),
        json=fill(case.body, ids),
        params=case.params,
        headers=world.headers[case.role],
    )

    body = assert_problem(response, case.status, case.slug)
    if case.slug == "validation-error":
        assert body["errors"]
    assert await table_counts(session) == before


async def test_a_body_that_is_not_json(
    client: httpx.AsyncClient, session: AsyncSession, world: StaffWorld
) -> None:
    before = await table_counts(session)

    response = await client.post(
        "/v1/institutions",
        content=b"code=CENTRAAL",
        headers={**world.headers["operator"], "Content-Type": "application/json"},
    )

    assert_problem(response, 422, "validation-error")
    assert await table_counts(session) == before


class TestLostRace:
    """Two requests can pass the duplicate check together; the unique constraint must then
    give the same 409, never a 500. The check is switched off to take the losing side."""

    @pytest.fixture
    def no_precheck(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def free(*_args: Any, **_kwargs: Any) -> None:
            return None

        monkeypatch.setattr(institutions, "_ensure_code_free", free)
        monkeypatch.setattr(institutions, "_ensure_venue_code_free", free)
        monkeypatch.setattr(products, "_ensure_code_free", free)
        monkeypatch.setattr(staff, "_ensure_email_free", free)

    @pytest.mark.parametrize(
        ("method", "path", "body", "slug"),
        [
            ("POST", "/v1/institutions", institution(code="RIJKS"), "duplicate-code"),
            ("PATCH", "/v1/institutions/{a}", {"code": "BOIJMANS"}, "duplicate-code"),
            ("POST", "/v1/products", product(code="ANNUAL"), "duplicate-code"),
            (
                "POST",
                "/v1/institutions/{a}/venues",
                {"code": "MAIN", "name": "M"},
                "duplicate-code",
            ),
            ("POST", "/v1/staff-users", staff_user(email="{manager_b_email}"), "duplicate-email"),
        ],
    )
    async def test_the_constraint_answers_409(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        world: StaffWorld,
        no_precheck: None,
        method: str,
        path: str,
        body: dict[str, Any],
        slug: str,
    ) -> None:
        ids = await ids_of(session, world)
        before = await table_counts(session)

        response = await client.request(
            method, fill(path, ids), json=fill(body, ids), headers=world.headers["operator"]
        )

        assert_problem(response, 409, slug)
        assert await table_counts(session) == before

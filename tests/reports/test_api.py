"""The report endpoints: scope, roles, formats, and no small cell about other institutions."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import AuditEntry, ClearingModel, ClearingPolicy
from tests.factories import (
    create_checkin,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.helpers import StaffWorld, assert_problem, create_staff_world

DAY = date(2026, 5, 12)
PERIOD = {"start": "2026-05-01", "end": "2026-05-31"}
K = 10


async def _world(session: AsyncSession, *, shared: int, only_a: int = 12) -> StaffWorld:
    """`shared` visitors see A then B on 12 May; `only_a` more see only A. Half consent."""
    world = await create_staff_world(session)
    venue_a = await create_venue(session, institution=world.institution_a)
    venue_b = await create_venue(session, institution=world.institution_b)
    product = await create_product(session)
    for n in range(shared + only_a):
        member = await create_member(session, share_contact=n % 2 == 0)
        await create_membership(
            session, product=product, holders=[member], starts_on=date(2026, 1, 1)
        )
        at = datetime(2026, 5, 12, 9, tzinfo=UTC) + timedelta(minutes=n)
        await create_checkin(session, venue=venue_a, member=member, product=product, scanned_at=at)
        if n < shared:
            await create_checkin(
                session,
                venue=venue_b,
                member=member,
                product=product,
                scanned_at=at + timedelta(hours=3),
            )
    session.add(ClearingPolicy(valid_from=date(2020, 1, 1), model=ClearingModel.TARIFF))
    await session.commit()
    return world


def _rows_about_others(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    if path.endswith("/affinity"):
        return [*body["by_lift"], *body["by_share"]]
    if path.endswith("/flows"):
        return [*body["before"], *body["after"]]
    for institution in body["institutions"]:
        assert institution["visitors"] is None or institution["visitors"] >= K
    return [*body["matrix"], *body["top_flows"]]


class TestScope:
    @pytest.mark.parametrize(
        "report", ["visits", "affinity", "flows", "segments", "payout", "segments/contacts.csv"]
    )
    async def test_staff_of_a_cannot_read_b(
        self, session: AsyncSession, client: httpx.AsyncClient, report: str
    ) -> None:
        world = await _world(session, shared=0, only_a=1)
        params = {**PERIOD, "year": "2026"}
        if report.startswith("segments") or report == "payout":
            params = {"year": "2026"} if report == "payout" else {}
        response = await client.get(
            f"/v1/institutions/{world.institution_b.id}/reports/{report}",
            params=params,
            headers=world.headers["manager_a"],
        )
        assert_problem(response, 403, "forbidden")

    async def test_contacts_need_the_manager_role(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session, shared=0, only_a=2)
        url = f"/v1/institutions/{world.institution_a.id}/reports/segments/contacts.csv"
        assert_problem(await client.get(url, headers=world.headers["staff_a"]), 403, "forbidden")

    @pytest.mark.parametrize("path", ["/v1/reports/network", "/v1/reports/payouts"])
    async def test_network_and_programme_payouts_are_the_operators(
        self, session: AsyncSession, client: httpx.AsyncClient, path: str
    ) -> None:
        world = await _world(session, shared=0, only_a=1)
        params = {**PERIOD, "year": "2026"} if path.endswith("network") else {"year": "2026"}
        if path.endswith("network"):
            params.pop("year")
        response = await client.get(path, params=params, headers=world.headers["manager_a"])
        assert_problem(response, 403, "forbidden")
        ok = await client.get(path, params=params, headers=world.headers["operator"])
        assert ok.status_code == 200, ok.text

    async def test_without_a_token_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/reports/network", params=PERIOD)
        assert_problem(response, 401, "invalid-token")


class TestContacts:
    async def test_only_consenting_visitors_of_this_institution(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session, shared=4, only_a=4)
        other_venue = await create_venue(session, institution=world.institution_b)
        outsider = await create_member(session, share_contact=True)
        await create_checkin(
            session,
            venue=other_venue,
            member=outsider,
            scanned_at=datetime(2026, 5, 12, 9, tzinfo=UTC),
        )
        await session.commit()
        response = await client.get(
            f"/v1/institutions/{world.institution_a.id}/reports/segments/contacts.csv",
            params={"as_of": DAY.isoformat()},
            headers=world.headers["manager_a"],
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
        assert len(rows) == 4
        assert str(outsider.id) not in {row["member_id"] for row in rows}
        assert {row["segment"] for row in rows} == {"new"}
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "report.contacts.exported")
        )
        assert audited == 1


class TestFormatsAndSuppression:
    @pytest.mark.parametrize("shared", [K - 1, K])
    async def test_no_count_below_k_about_other_institutions(
        self, session: AsyncSession, client: httpx.AsyncClient, shared: int
    ) -> None:
        world = await _world(session, shared=shared)
        paths = [
            (f"/v1/institutions/{world.institution_a.id}/reports/affinity", "manager_a"),
            (f"/v1/institutions/{world.institution_a.id}/reports/flows", "manager_a"),
            (f"/v1/institutions/{world.institution_b.id}/reports/affinity", "manager_b"),
            ("/v1/reports/network", "operator"),
        ]
        shown = 0
        for path, who in paths:
            response = await client.get(path, params=PERIOD, headers=world.headers[who])
            assert response.status_code == 200, response.text
            for row in _rows_about_others(path, response.json()):
                for key in ("both", "visitors", "visits"):
                    value = row.get(key)
                    assert value is None or value >= K, (path, row)
                    shown += value is not None
                if "suppressed" in row:
                    assert row["suppressed"] == (row.get("both", row.get("visitors")) is None)
        assert (shown > 0) == (shared >= K)

    async def test_json_and_csv_of_the_same_report(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session, shared=K)
        url = f"/v1/institutions/{world.institution_a.id}/reports/visits"
        body = (await client.get(url, params=PERIOD, headers=world.headers["staff_a"])).json()
        assert (body["visits"], body["visitors"]) == (K + 12, K + 12)
        assert body["by_day"] == [{"start": "2026-05-12", "visits": K + 12, "visitors": K + 12}]
        response = await client.get(
            url, params={**PERIOD, "format": "csv"}, headers=world.headers["staff_a"]
        )
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
        assert rows[0] == {
            "section": "total",
            "bucket": "",
            "visits": str(K + 12),
            "visitors": str(K + 12),
            "suppressed": "false",
        }

    async def test_payout_statements_add_up(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session, shared=3, only_a=2)
        programme = (
            await client.get(
                "/v1/reports/payouts", params={"year": 2026}, headers=world.headers["operator"]
            )
        ).json()
        assert programme["visits"] == 8
        assert programme["total_minor"] == 8 * 850
        own = await client.get(
            f"/v1/institutions/{world.institution_a.id}/reports/payout",
            params={"year": 2026, "format": "csv"},
            headers=world.headers["staff_a"],
        )
        rows = list(csv.DictReader(io.StringIO(own.text.lstrip("\ufeff"))))
        assert [(r["month"], r["visits"], r["amount_minor"], r["amount"]) for r in rows] == [
            ("2026-05", "5", "4250", "42.50")
        ]

    async def test_a_period_that_ends_before_it_starts_is_refused(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session, shared=0, only_a=1)
        response = await client.get(
            f"/v1/institutions/{world.institution_a.id}/reports/visits",
            params={"start": "2026-05-31", "end": "2026-05-01"},
            headers=world.headers["staff_a"],
        )
        assert_problem(response, 422, "invalid-period")

"""A closed month is a document: stored lines that never change; late visits become corrections."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership.audit import Actor
from membership.checkins import override
from membership.db import create_sessionmaker
from membership.models import (
    AuditEntry,
    CheckinResult,
    ClearingModel,
    ClearingPolicy,
    Payment,
    PaymentKind,
    PaymentStatus,
    PayoutClosing,
    PayoutClosingLine,
    Venue,
)
from reports.csv import payout_csv
from reports.payouts import (
    MonthAlreadyClosed,
    MonthNotNext,
    MonthNotOver,
    NoClearingPolicy,
    PayoutStatement,
    close_month,
    payout_statement,
)
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.helpers import assert_problem, create_staff_world, table_counts
from tests.reports.dataset import PROGRAMME_ZONE, Dataset, brute_payouts, datasets, load

EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ACTOR = Actor(label="test")
MARCH, APRIL, MAY = date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1)
LATER = datetime(2026, 6, 15, tzinfo=UTC)


async def _statement(
    session: AsyncSession, institution_id: uuid.UUID | None = None
) -> PayoutStatement:
    return await payout_statement(
        session,
        year=2026,
        currency="EUR",
        timezone=PROGRAMME_ZONE,
        institution_id=institution_id,
    )


async def _close(session: AsyncSession, month: date, now: datetime = LATER) -> None:
    await close_month(
        session, month=month, currency="EUR", timezone=PROGRAMME_ZONE, actor=ACTOR, now=now
    )
    await session.commit()


def _adds_up(statement: PayoutStatement) -> None:
    total = sum(line.amount_minor for line in statement.lines)
    assert statement.total_minor == total
    assert sum(m.amount_minor for m in statement.months) == total
    assert sum(i.amount_minor for i in statement.institutions) == total
    assert sum(p.amount_minor for p in statement.products) == total


class TestClosedEqualsComputed:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_stored_lines_are_the_computed_ones(
        self, session: AsyncSession, dataset: Dataset
    ) -> None:
        loaded = await load(session, dataset)
        before = await _statement(session)
        for month in (date(2026, 2, 1), MARCH, APRIL):
            await _close(session, month)
        after = await _statement(session)
        assert after.lines == before.lines
        assert after.total_minor == before.total_minor
        assert [m.closed_at is not None for m in after.months] == [
            m in (2, 3, 4) for m in range(1, 13)
        ]
        product_index = {p.id: i for i, p in enumerate(loaded.products)}
        got = {
            (
                line.month.month,
                loaded.by_id[line.institution_id],
                None if line.product_id is None else product_index[line.product_id],
            ): (line.visits, line.amount_minor)
            for line in after.lines
        }
        assert got == brute_payouts(dataset, 2026)
        _adds_up(after)
        for institution in loaded.institutions:
            own = await _statement(session, institution_id=institution.id)
            assert own.lines == [
                line for line in after.lines if line.institution_id == institution.id
            ]


async def _programme(
    session: AsyncSession, *, model: ClearingModel, revenue: int = 0
) -> tuple[Venue, Venue]:
    """Two institutions (A: tariff 850, price 1750; B: tariff 600, price 1200), a policy, and
    visits in March: 3 at A, 2 at B."""
    a = await create_institution(session, code="A")
    b = await create_institution(
        session, code="B", visit_tariff_minor=600, admission_price_minor=1200
    )
    venue_a, venue_b = (
        await create_venue(session, institution=a),
        await create_venue(session, institution=b),
    )
    session.add(
        ClearingPolicy(
            valid_from=date(2020, 1, 1), model=model, payout_share_bp=6000, floor_bp=3000
        )
    )
    product = await create_product(session)
    member = await create_member(session)
    membership = await create_membership(
        session, product=product, holders=[member], starts_on=date(2026, 1, 1)
    )
    for month in (MARCH, APRIL):
        session.add(
            Payment(
                reference=f"PAY{month.month}",
                membership_id=membership.id,
                kind=PaymentKind.PURCHASE,
                status=PaymentStatus.SUCCEEDED,
                provider="local",
                provider_payment_id=f"pp{month.month}",
                amount_minor=revenue,
                currency="EUR",
                paid_at=datetime(month.year, month.month, 10, 12, tzinfo=UTC),
            )
        )
    for n in range(5):
        await create_checkin(
            session,
            venue=venue_a if n < 3 else venue_b,
            member=await create_member(session),
            scanned_at=datetime(2026, 3, 5 + n, 11, tzinfo=UTC),
        )
    await session.commit()
    return venue_a, venue_b


async def _late_visit(session: AsyncSession, venue: Venue, day: date) -> None:
    await create_checkin(
        session,
        venue=venue,
        member=await create_member(session),
        scanned_at=datetime(day.year, day.month, day.day, 11, tzinfo=UTC),
    )
    await session.commit()


class TestLateVisits:
    async def test_tariff_a_late_visit_is_a_correction_of_the_next_month(
        self, session: AsyncSession
    ) -> None:
        venue_a, _ = await _programme(session, model=ClearingModel.TARIFF)
        await _close(session, MARCH)
        closed = await _statement(session)
        march = [line for line in closed.lines if line.month == MARCH]
        assert [(line.institution_code, line.visits, line.amount_minor) for line in march] == [
            ("A", 3, 3 * 850),
            ("B", 2, 2 * 600),
        ]

        await _late_visit(session, venue_a, date(2026, 3, 30))
        now = await _statement(session)
        assert [line for line in now.lines if line.month == MARCH] == march
        assert now.months[2] == closed.months[2]
        pending = [line for line in now.lines if line.month == APRIL]
        assert [
            (line.institution_code, line.visits, line.amount_minor, line.correction_for)
            for line in pending
        ] == [("A", 1, 850, MARCH)]
        assert now.total_minor == closed.total_minor + 850
        _adds_up(now)

        await _close(session, APRIL)
        final = await _statement(session)
        assert [line for line in final.lines if line.month == MARCH] == march
        assert [line for line in final.lines if line.month == APRIL] == pending
        assert final.months[3].closed_at is not None
        _adds_up(final)
        rows = list(csv.DictReader(io.StringIO(payout_csv(final))))
        assert [(r["month"], r["institution_code"], r["correction_for"]) for r in rows] == [
            ("2026-03", "A", ""),
            ("2026-03", "B", ""),
            ("2026-04", "A", "2026-03"),
        ]
        # Paid once: closing May finds nothing late any more.
        await _close(session, MAY)
        assert (await _statement(session)).total_minor == final.total_minor

    async def test_pool_a_late_visit_earns_the_closed_months_rate(
        self, session: AsyncSession
    ) -> None:
        # Revenue 5 000.00, share 60 %: pool 300 000; weight 3 x 1750 + 2 x 1200 = 7650.
        _, venue_b = await _programme(session, model=ClearingModel.POOL, revenue=500_000)
        await _close(session, MARCH)
        march = await _statement(session)
        assert march.months[2].amount_minor == 300_000
        await _late_visit(session, venue_b, date(2026, 3, 31))
        await _close(session, APRIL)
        final = await _statement(session)
        assert [line for line in final.lines if line.month == MARCH] == [
            line for line in march.lines if line.month == MARCH
        ]
        correction = [line for line in final.lines if line.correction_for == MARCH]
        # 1200 x 300 000 / 7650 = 47 058.82… → 47 059; the March pool is not divided again.
        assert [(line.institution_code, line.visits, line.amount_minor) for line in correction] == [
            ("B", 1, 47_059)
        ]
        assert final.months[3].amount_minor == 47_059
        _adds_up(final)

    async def test_an_override_after_closing_is_paid_once(self, session: AsyncSession) -> None:
        venue_a, _ = await _programme(session, model=ClearingModel.TARIFF)
        refused = await create_checkin(
            session,
            venue=venue_a,
            member=await create_member(session),
            scanned_at=datetime(2026, 3, 20, 11, tzinfo=UTC),
            result=CheckinResult.REFUSED,
            reason="card_blocked",
        )
        await session.commit()
        await _close(session, MARCH)
        await override(
            session,
            checkin_id=refused.id,
            reason="valid after all",
            institution_scope=None,
            actor=ACTOR,
            now=LATER,
        )
        await session.commit()
        await _close(session, APRIL)
        await _close(session, MAY)
        final = await _statement(session)
        assert [
            (line.month, line.visits, line.amount_minor)
            for line in final.lines
            if line.correction_for
        ] == [(APRIL, 1, 850)]


class TestRules:
    async def test_months_close_once_in_order_and_only_when_over(
        self, session: AsyncSession
    ) -> None:
        await _programme(session, model=ClearingModel.TARIFF)
        with pytest.raises(MonthNotOver):
            await _close(session, MARCH, now=datetime(2026, 3, 31, 20, tzinfo=UTC))
        await session.rollback()
        await _close(session, MARCH)
        with pytest.raises(MonthAlreadyClosed):
            await _close(session, MARCH)
        await session.rollback()
        with pytest.raises(MonthNotNext):
            await _close(session, MAY)
        await session.rollback()
        assert await session.scalar(select(func.count()).select_from(PayoutClosing)) == 1

    async def test_a_month_without_a_policy_cannot_close(self, session: AsyncSession) -> None:
        await create_institution(session)
        session.add(ClearingPolicy(valid_from=date(2026, 4, 1), model=ClearingModel.TARIFF))
        await session.commit()
        with pytest.raises(NoClearingPolicy):
            await _close(session, MARCH)


class TestApi:
    async def test_operator_closes_a_month_audited(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await create_staff_world(session)
        venue = await create_venue(session, institution=world.institution_a)
        session.add(ClearingPolicy(valid_from=date(2020, 1, 1), model=ClearingModel.TARIFF))
        await create_checkin(
            session,
            venue=venue,
            member=await create_member(session),
            scanned_at=datetime(2026, 3, 5, 11, tzinfo=UTC),
        )
        await session.commit()
        url = "/v1/reports/payouts/2026/3/close"
        before = await table_counts(session)
        assert_problem(await client.post(url, headers=world.headers["manager_a"]), 403, "forbidden")
        assert_problem(
            await client.post(
                "/v1/reports/payouts/2026/13/close", headers=world.headers["operator"]
            ),
            422,
            "validation-error",
        )
        assert await table_counts(session) == before

        response = await client.post(url, headers=world.headers["operator"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["month"], body["visits"], body["amount_minor"]) == ("2026-03-01", 1, 850)
        assert body["closed_at"] is not None
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "payout.close"))
        ).all()
        assert [(e.entity_id, e.actor_staff_id) for e in entries] == [
            ("2026-03", world.operator.id)
        ]
        again = await client.post(url, headers=world.headers["operator"])
        assert_problem(again, 409, "payout-month-closed")
        statement = await client.get(
            "/v1/reports/payouts", params={"year": "2026"}, headers=world.headers["operator"]
        )
        assert statement.json()["months"][2]["closed_at"] == body["closed_at"]


@pytest.mark.postgres
class TestConcurrentClosing:
    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_two_operators_close_once(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        await _programme(session, model=ClearingModel.TARIFF)
        sessionmaker = create_sessionmaker(engine)

        async def attempt() -> str:
            async with sessionmaker() as own:
                try:
                    await _close(own, MARCH)
                except MonthAlreadyClosed:
                    return "refused"
                return "closed"

        assert sorted(await asyncio.gather(attempt(), attempt(), attempt())) == [
            "closed",
            "refused",
            "refused",
        ]
        assert await session.scalar(select(func.count()).select_from(PayoutClosing)) == 1
        assert await session.scalar(select(func.count()).select_from(PayoutClosingLine)) == 2

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_scans_racing_with_the_closing_are_paid_exactly_once(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        venue_a, _ = await _programme(session, model=ClearingModel.TARIFF)
        members = [await create_member(session) for _ in range(10)]
        await session.commit()
        sessionmaker = create_sessionmaker(engine)

        async def scan(n: int) -> None:
            async with sessionmaker() as writer:
                await create_checkin(
                    writer,
                    venue=venue_a,
                    member=members[n],
                    scanned_at=datetime(2026, 3, 20, 9, tzinfo=UTC) + timedelta(minutes=n),
                )
                await asyncio.sleep(0.04 * (n % 3))
                await writer.commit()

        async def close_march() -> None:
            async with sessionmaker() as own:
                await _close(own, MARCH)

        await asyncio.gather(*(scan(n) for n in range(10)), close_march())
        await _close(session, APRIL)
        final = await _statement(session)
        paid_for_march = [
            line for line in final.lines if line.month == MARCH or line.correction_for == MARCH
        ]
        assert sum(line.visits for line in paid_for_march) == 5 + 10
        assert sum(line.amount_minor for line in paid_for_march) == (3 + 10) * 850 + 2 * 600

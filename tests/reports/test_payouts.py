"""Payout statements equal the brute force and add up to the cent, in both models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import ClearingModel, ClearingPolicy, Payment, PaymentKind, PaymentStatus
from reports.payouts import NoClearingPolicy, largest_remainder, payout_statement, round_half_up
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.reports.dataset import PROGRAMME_ZONE, Dataset, brute_payouts, datasets, load

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestAgainstBruteForce:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_operator_and_institution_statements(
        self, session: AsyncSession, dataset: Dataset
    ) -> None:
        loaded = await load(session, dataset)
        product_index = {p.id: i for i, p in enumerate(loaded.products)}
        statement = await payout_statement(
            session, year=2026, currency="EUR", timezone=PROGRAMME_ZONE
        )
        got = {
            (
                line.month.month,
                loaded.by_id[line.institution_id],
                None if line.product_id is None else product_index[line.product_id],
            ): (line.visits, line.amount_minor)
            for line in statement.lines
        }
        assert got == brute_payouts(dataset, 2026)
        assert len(got) == len(statement.lines)
        total = sum(line.amount_minor for line in statement.lines)
        assert statement.total_minor == total
        assert sum(m.amount_minor for m in statement.months) == total
        assert sum(i.amount_minor for i in statement.institutions) == total
        assert sum(p.amount_minor for p in statement.products) == total
        assert statement.visits == sum(line.visits for line in statement.lines)

        for institution in loaded.institutions:
            own = await payout_statement(
                session,
                year=2026,
                currency="EUR",
                timezone=PROGRAMME_ZONE,
                institution_id=institution.id,
            )
            assert own.lines == [
                line for line in statement.lines if line.institution_id == institution.id
            ]
            assert own.total_minor == sum(line.amount_minor for line in own.lines)
            assert [m.model for m in own.months] == [m.model for m in statement.months]


class TestWorkedExample:
    """The example of docs/reports.md, to the cent."""

    def test_pool_with_fractional_cents(self) -> None:
        rate = Fraction(300_000, 736_000)
        weights = [350_000, 180_000, 200_000, 6_000]
        shares = [rate * w for w in weights]
        total = round_half_up(rate * sum(weights))
        assert total == 300_000
        assert largest_remainder(total, shares) == [142_663, 73_369, 81_522, 2_446]

    def test_floor_binds(self) -> None:
        rate = max(Fraction(300_000, 736_000), Fraction(5000, 10_000))
        shares = [rate * w for w in (350_000, 180_000, 200_000, 6_000)]
        assert largest_remainder(round_half_up(sum(shares)), shares) == [
            175_000,
            90_000,
            100_000,
            3_000,
        ]


class TestLargestRemainder:
    @settings(max_examples=300, deadline=None)
    @given(
        weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=30),
        numerator=st.integers(0, 10**9),
        denominator=st.integers(1, 10**6),
    )
    def test_adds_up_and_stays_within_a_cent(
        self, weights: list[int], numerator: int, denominator: int
    ) -> None:
        rate = Fraction(numerator, denominator)
        shares = [rate * w for w in weights]
        total = round_half_up(sum(shares, Fraction(0)))
        amounts = largest_remainder(total, shares)
        assert sum(amounts) == total
        assert all(abs(amount - share) < 1 for amount, share in zip(amounts, shares, strict=True))

    def test_refuses_a_total_that_is_not_the_rounded_sum(self) -> None:
        with pytest.raises(ValueError, match="rounded sum"):
            largest_remainder(5, [Fraction(1, 2), Fraction(1, 2)])


async def test_a_month_with_visits_needs_a_policy(session: AsyncSession) -> None:
    institution = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    member = await create_member(session)
    await create_checkin(
        session, venue=venue, member=member, scanned_at=datetime(2026, 6, 1, 12, tzinfo=UTC)
    )
    session.add(ClearingPolicy(valid_from=date(2026, 7, 1), model=ClearingModel.TARIFF))
    await session.commit()
    with pytest.raises(NoClearingPolicy):
        await payout_statement(session, year=2026, currency="EUR", timezone=PROGRAMME_ZONE)


async def test_pool_revenue_is_split_at_local_midnight_between_open_months(
    session: AsyncSession,
) -> None:
    """Revenue is summed only for the open pool months, each from its local midnight: in
    Amsterdam 23:30 on 31 March is March's (a tariff month), 00:30 on 1 April is April's,
    23:30 on 30 April is April's and 01:30 on 1 May is May's."""
    institution = await create_institution(session, admission_price_minor=1000)
    venue = await create_venue(session, institution=institution)
    member = await create_member(session)
    membership = await create_membership(
        session, product=await create_product(session), holders=[member]
    )
    for day in (date(2026, 3, 10), date(2026, 4, 10), date(2026, 5, 10)):
        await create_checkin(
            session,
            venue=venue,
            member=member,
            scanned_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        )
    session.add_all(
        [
            ClearingPolicy(valid_from=date(2015, 1, 1), model=ClearingModel.TARIFF),
            ClearingPolicy(
                valid_from=date(2026, 4, 1),
                model=ClearingModel.POOL,
                payout_share_bp=10_000,
                floor_bp=0,
            ),
        ]
    )
    for n, (paid_at, amount) in enumerate(
        [
            (datetime(2026, 3, 31, 21, 30, tzinfo=UTC), 700),
            (datetime(2026, 3, 31, 22, 30, tzinfo=UTC), 300),
            (datetime(2026, 4, 30, 21, 30, tzinfo=UTC), 5_000),
            (datetime(2026, 4, 30, 23, 30, tzinfo=UTC), 10_000),
        ]
    ):
        session.add(
            Payment(
                reference=f"PAY{n}",
                membership_id=membership.id,
                kind=PaymentKind.PURCHASE,
                status=PaymentStatus.SUCCEEDED,
                provider="local",
                provider_payment_id=f"pp{n}",
                amount_minor=amount,
                currency="EUR",
                paid_at=paid_at,
            )
        )
    await session.commit()
    statement = await payout_statement(session, year=2026, currency="EUR", timezone=PROGRAMME_ZONE)
    march, april, may = statement.months[2:5]
    assert (march.model, march.revenue_minor, march.amount_minor) == ("tariff", None, 850)
    assert (april.model, april.revenue_minor, april.amount_minor) == ("pool", 5_300, 5_300)
    assert (may.model, may.revenue_minor, may.amount_minor) == ("pool", 10_000, 10_000)

"""Every visit figure equals the brute-force answer of docs/reports.md, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from hypothesis import HealthCheck, given, settings
from sqlalchemy.ext.asyncio import AsyncSession

from membership import demographics, rollups
from membership.clock import local_date
from membership.models import Checkin, CheckinResult, Product, Venue
from reports.common import Period
from reports.visits import visits_report
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_product,
    create_venue,
)
from tests.reports.dataset import Dataset, age, brute_visits, datasets, load

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestAgainstBruteForce:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_every_figure(self, session: AsyncSession, dataset: Dataset) -> None:
        loaded = await load(session, dataset)
        start, end = dataset.period
        for index, institution in enumerate(loaded.institutions):
            report = await visits_report(
                session, institution_id=institution.id, period=Period(start, end), k=dataset.k
            )
            expected = brute_visits(dataset, index)
            assert report.visits == expected["visits"]
            assert report.visitors == expected["visitors"]
            assert report.new_visitors == expected["new_visitors"]
            assert report.repeat_visitors == expected["repeat_visitors"]
            assert report.repeat_visit_rate == expected["repeat_visit_rate"]
            for name in ("by_day", "by_week", "by_month"):
                got = [(b.start, b.visits, b.visitors) for b in getattr(report, name)]
                assert got == expected[name], name
            assert [(c.weekday, c.hour, c.visits) for c in report.heatmap] == expected["heatmap"]
            assert [(r.result, r.reason, r.checkins) for r in report.not_counted] == expected[
                "not_counted"
            ]
            assert [
                (b.visits, b.or_more, b.visitors) for b in report.visits_per_visitor
            ] == expected["visits_per_visitor"]
            assert {p.product_code: (p.visits, p.visitors) for p in report.product_mix} == expected[
                "product_mix"
            ]
            assert [(g.group, g.visitors) for g in report.age_bands] == expected["age_bands"]
            assert [(g.group, g.visitors) for g in report.regions] == expected["regions"]
            for group in report.age_bands + report.regions:
                assert group.suppressed == (group.visitors is None)
                assert group.visitors is None or group.visitors >= dataset.k


class TestTimeZoneBoundary:
    async def test_a_visit_at_half_past_eleven_local_counts_on_that_local_day(
        self, session: AsyncSession
    ) -> None:
        """23:30 in Amsterdam on 31 March is 21:30 UTC; in New York it is 03:30 UTC next day."""
        amsterdam = await create_institution(session, timezone="Europe/Amsterdam")
        new_york = await create_institution(session, timezone="America/New_York")
        member = await create_member(session)
        product = await create_product(session)
        for institution, instant in (
            (amsterdam, datetime(2026, 3, 31, 21, 30, tzinfo=UTC)),
            (new_york, datetime(2026, 4, 1, 3, 30, tzinfo=UTC)),
        ):
            venue = await create_venue(session, institution=institution)
            await create_checkin(
                session,
                venue=venue,
                member=member,
                product=product,
                scanned_at=instant,
                timezone=institution.timezone,
            )
        await session.commit()
        for institution in (amsterdam, new_york):
            march = await visits_report(
                session,
                institution_id=institution.id,
                period=Period(date(2026, 3, 31), date(2026, 3, 31)),
                k=1,
            )
            april = await visits_report(
                session,
                institution_id=institution.id,
                period=Period(date(2026, 4, 1), date(2026, 4, 1)),
                k=1,
            )
            assert (march.visits, april.visits) == (1, 0)
            assert [(c.weekday, c.hour) for c in march.heatmap] == [(1, 23)]
            assert [m.start for m in march.by_month] == [date(2026, 3, 1)]

    async def test_reentries_and_refusals_are_not_visits(self, session: AsyncSession) -> None:
        institution = await create_institution(session)
        venue = await create_venue(session, institution=institution)
        member = await create_member(session)
        at = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
        await create_checkin(session, venue=venue, member=member, scanned_at=at)
        await create_checkin(
            session, venue=venue, member=member, scanned_at=at, result=CheckinResult.REENTRY
        )
        await create_checkin(
            session, venue=venue, member=member, scanned_at=at, result=CheckinResult.REFUSED
        )
        await session.commit()
        report = await visits_report(
            session,
            institution_id=institution.id,
            period=Period(date(2026, 5, 4), date(2026, 5, 4)),
            k=1,
        )
        assert (report.visits, report.visitors) == (1, 1)
        assert [(r.result, r.checkins) for r in report.not_counted] == [
            ("reentry", 1),
            ("refused", 1),
        ]


class TestAgeBands:
    def test_age_agrees_with_the_yyyymmdd_rule_around_leap_days(self) -> None:
        births = [date(2000, 2, 29), date(2000, 2, 28), date(2000, 3, 1), date(1999, 12, 31)]
        days = [date(2018, 2, 28), date(2018, 3, 1), date(2020, 2, 29), date(2025, 12, 31)]
        for birth in births:
            for day in days:
                assert demographics.age_on(birth, day) == age(birth, day)


async def _visit_without_visitor_key(
    session: AsyncSession, *, venue: Venue, product: Product, scanned_at: datetime
) -> None:
    """A counted check-in whose visitor key is missing (the column allows it): a visit that
    belongs to no visitor, so no visitor row either."""
    day = local_date(scanned_at, "Europe/Amsterdam")
    checkin = Checkin(
        client_scan_id=uuid.uuid4().hex,
        institution_id=venue.institution_id,
        venue_id=venue.id,
        product_id=product.id,
        visitor_key=None,
        scanned_at=scanned_at,
        received_at=scanned_at,
        local_date=day,
        result=CheckinResult.ADMITTED,
        reason="ok",
        counted=True,
    )
    session.add(checkin)
    await session.flush()
    rollups.count_checkin(session, checkin, timezone="Europe/Amsterdam")


class TestVisitorEdges:
    """Figures the one ordered pass and the visitor rows must get right at their edges."""

    async def test_earlier_visitor_keyless_visit_and_week_and_month_boundaries(
        self, session: AsyncSession
    ) -> None:
        institution = await create_institution(session)
        venue = await create_venue(session, institution=institution)
        product = await create_product(session)
        regular, newcomer = await create_member(session), await create_member(session)

        def noon(day: date) -> datetime:
            return datetime(day.year, day.month, day.day, 11, tzinfo=UTC)

        # The regular's first visit ever is before the period; in it: Sunday 31 May, then
        # Monday 1 June (a new week and a new month), then Friday 5 June (same week and month).
        for day in (date(2026, 4, 20), date(2026, 5, 31), date(2026, 6, 1), date(2026, 6, 5)):
            await create_checkin(
                session, venue=venue, member=regular, product=product, scanned_at=noon(day)
            )
        # The newcomer's first visit ever is in the period, on Friday 5 June too.
        await create_checkin(
            session,
            venue=venue,
            member=newcomer,
            product=product,
            scanned_at=noon(date(2026, 6, 5)),
        )
        await _visit_without_visitor_key(
            session, venue=venue, product=product, scanned_at=noon(date(2026, 6, 5))
        )
        # Not committed: the report sees this session's own scans (pending notes applied).
        report = await visits_report(
            session,
            institution_id=institution.id,
            period=Period(date(2026, 5, 25), date(2026, 6, 30)),
            k=1,
        )
        assert (report.visits, report.visitors, report.new_visitors) == (5, 2, 1)
        assert [(b.start, b.visits, b.visitors) for b in report.by_week] == [
            (date(2026, 5, 25), 1, 1),
            (date(2026, 6, 1), 4, 2),
        ]
        assert [(b.start, b.visits, b.visitors) for b in report.by_month] == [
            (date(2026, 5, 1), 1, 1),
            (date(2026, 6, 1), 4, 2),
        ]
        assert [(b.visits, b.visitors) for b in report.visits_per_visitor] == [(1, 1), (3, 1)]
        assert (report.repeat_visitors, report.repeat_visit_rate) == (1, 0.5)
        assert [(p.product_code, p.visits, p.visitors) for p in report.product_mix] == [
            (product.code, 5, 2)
        ]
        assert sum(g.visitors or 0 for g in report.age_bands) == 2
        assert sum(g.visitors or 0 for g in report.regions) == 2

    async def test_a_visitor_with_only_earlier_visits_is_neither_visitor_nor_new(
        self, session: AsyncSession
    ) -> None:
        institution = await create_institution(session)
        venue = await create_venue(session, institution=institution)
        member = await create_member(session)
        await create_checkin(
            session, venue=venue, member=member, scanned_at=datetime(2026, 1, 5, 11, tzinfo=UTC)
        )
        await session.commit()
        report = await visits_report(
            session,
            institution_id=institution.id,
            period=Period(date(2026, 2, 1), date(2026, 2, 28)),
            k=1,
        )
        assert (report.visits, report.visitors, report.new_visitors) == (0, 0, 0)
        assert report.visits_per_visitor == []
        assert report.by_week == report.by_month == report.product_mix == []

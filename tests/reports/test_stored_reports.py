"""Stored visits and flows reports equal the live ones, and are never served once they are stale."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck, given
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership import card_numbers, history
from membership.audit import Actor
from membership.checkins import override
from membership.db import create_sessionmaker
from membership.models import (
    Checkin,
    CheckinResult,
    Institution,
    Member,
    PeriodKind,
    StoredReport,
    StoredReportKind,
    Venue,
)
from membership.settings import Settings
from reports.affinity import FlowRow, FlowsReport, affinity_report, flows_report
from reports.common import Period, counted_visits
from reports.periods import refresh, standard_kind
from reports.stored import from_payload, payload, stored_report
from reports.visits import (
    FrequencyBucket,
    GroupCount,
    HeatmapCell,
    ProductMix,
    ReasonCount,
    TimeBucket,
    VisitsReport,
    visits_report,
)
from tests.factories import (
    create_card,
    create_checkin,
    create_institution,
    create_member,
    create_product,
    create_venue,
)
from tests.helpers import create_staff_world
from tests.reports.dataset import (
    BASE,
    Dataset,
    brute_flows,
    brute_visits,
    datasets,
    load,
    visits_of,
)

EXAMPLES = hypothesis.settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The datasets lie around the end of March 2026: by AFTER every month, quarter and the year
# 2026 are closed; on TWELVE_NOW the latest closed month is April, so the twelve months from
# May 2025 are stored too.
AFTER = datetime(2027, 1, 10, tzinfo=UTC)
TWELVE_NOW = datetime(2026, 5, 5, tzinfo=UTC)
STANDARD = {
    "march": Period(date(2026, 3, 1), date(2026, 3, 31)),
    "april": Period(date(2026, 4, 1), date(2026, 4, 30)),
    "q1": Period(date(2026, 1, 1), date(2026, 3, 31)),
    "year": Period(date(2026, 1, 1), date(2026, 12, 31)),
    "twelve months": Period(date(2025, 5, 1), date(2026, 4, 30)),
}
MARCH = STANDARD["march"]
K = 1
_WITH_MARCH = {
    (PeriodKind.MONTH, MARCH.start),
    (PeriodKind.QUARTER, MARCH.start.replace(month=1)),
    (PeriodKind.YEAR, MARCH.start.replace(month=1)),
}


def _over(dataset: Dataset, period: Period) -> Dataset:
    """The same data, asked about `period` (the brute force reads the dataset's period)."""
    return dataclasses.replace(dataset, start=(period.start - BASE).days, length=period.days)


R = TypeVar("R", VisitsReport, FlowsReport)


def _as_live(report: R) -> R:
    """The report with its figures only, to compare stored with live field by field."""
    return dataclasses.replace(report, source="live", computed_at=None)


class TestPayload:
    def test_a_visits_report_round_trips_exactly(self) -> None:
        report = VisitsReport(
            institution_id=uuid.uuid4(),
            start=date(2025, 12, 1),
            end=date(2026, 11, 30),
            timezone="America/New_York",
            k=10,
            visits=7,
            visitors=3,
            new_visitors=2,
            repeat_visitors=1,
            repeat_visit_rate=round(1 / 3, 6),
            by_day=[TimeBucket(date(2026, 2, 28), 2, 2)],
            by_week=[TimeBucket(date(2026, 2, 23), 2, 2)],
            by_month=[TimeBucket(date(2026, 2, 1), 7, 3)],
            heatmap=[HeatmapCell(5, 23, 1)],
            not_counted=[ReasonCount("refused", "already_used", 4)],
            visits_per_visitor=[FrequencyBucket(10, True, 1)],
            product_mix=[ProductMix(None, None, 1, 1), ProductMix(uuid.uuid4(), "YOUTH", 6, 2)],
            age_bands=[GroupCount("25-34", None, True), GroupCount("unknown", 3, False)],
            regions=[],
        )
        again = from_payload(VisitsReport, payload(report))
        assert again == report
        assert isinstance(again.by_day[0].start, date)
        assert isinstance(again.product_mix[1].product_id, uuid.UUID)

    def test_a_flows_report_round_trips_exactly(self) -> None:
        row = FlowRow(uuid.uuid4(), "=CODE", 'Museum, "quoted"', None, None, True)
        report = FlowsReport(uuid.uuid4(), date(2026, 3, 1), date(2026, 3, 31), 3, [row], [])
        assert from_payload(FlowsReport, payload(report)) == report


class TestEqualToLive:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_every_standard_kind(
        self, session: AsyncSession, engine: AsyncEngine, dataset: Dataset
    ) -> None:
        assert {standard_kind(p) for p in STANDARD.values()} == {
            PeriodKind.MONTH,
            PeriodKind.QUARTER,
            PeriodKind.YEAR,
            PeriodKind.TWELVE_MONTHS,
        }
        loaded = await load(session, dataset)
        ids = [institution.id for institution in loaded.institutions]
        live = {
            (name, institution_id): (
                await visits_report(
                    session, institution_id=institution_id, period=period, k=dataset.k
                ),
                await flows_report(
                    session, institution_id=institution_id, period=period, k=dataset.k
                ),
            )
            for name, period in STANDARD.items()
            for institution_id in ids
        }
        await session.rollback()  # SQLite: a new read snapshot after the refreshes write
        sessionmaker = create_sessionmaker(engine)
        await refresh(sessionmaker, now=AFTER, k=dataset.k)
        result = await refresh(sessionmaker, now=TWELVE_NOW, k=dataset.k)
        assert {p.kind for p in result.computed} <= {PeriodKind.TWELVE_MONTHS}
        for name, period in STANDARD.items():
            asked = _over(dataset, period)
            for i, institution_id in enumerate(ids):
                visits = await visits_report(
                    session, institution_id=institution_id, period=period, k=dataset.k
                )
                flows = await flows_report(
                    session, institution_id=institution_id, period=period, k=dataset.k
                )
                visited = bool(visits_of(asked, i))
                expected = "stored" if visited else "live"
                assert (visits.source, flows.source) == (expected, expected), name
                assert (visits.computed_at is not None) == visited
                live_visits, live_flows = live[name, institution_id]
                assert live_visits.source == live_flows.source == "live"
                assert _as_live(visits) == live_visits, name
                assert _as_live(flows) == live_flows, name
                brute = brute_visits(asked, i)
                assert (visits.visits, visits.visitors, visits.new_visitors) == (
                    brute["visits"],
                    brute["visitors"],
                    brute["new_visitors"],
                )
                got_flows = {
                    direction: {
                        loaded.by_id[row.institution_id]: (
                            None if row.suppressed else (row.visitors, row.visits)
                        )
                        for row in rows
                    }
                    for direction, rows in (("before", flows.before), ("after", flows.after))
                }
                assert got_flows == brute_flows(asked, i)


@dataclasses.dataclass
class _March:
    a: Institution
    b: Institution
    venue_a: Venue
    venue_b: Venue
    members: list[Member]


async def _march(session: AsyncSession, *, visitors: int = 3) -> _March:
    """`visitors` members visit A and then B on 10 March 2026 (Amsterdam)."""
    a = await create_institution(session, code="A")
    b = await create_institution(session, code="B")
    venue_a = await create_venue(session, institution=a, code="MAIN")
    venue_b = await create_venue(session, institution=b)
    members = [await create_member(session) for _ in range(visitors)]
    for n, member in enumerate(members):
        at = datetime(2026, 3, 10, 9, tzinfo=UTC) + timedelta(minutes=n)
        await create_checkin(session, venue=venue_a, member=member, scanned_at=at)
        await create_checkin(
            session, venue=venue_b, member=member, scanned_at=at + timedelta(hours=2)
        )
    await session.commit()
    return _March(a, b, venue_a, venue_b, members)


async def _reports(
    session: AsyncSession, world: _March, *, period: Period = MARCH, k: int = K
) -> tuple[VisitsReport, FlowsReport]:
    visits = await visits_report(session, institution_id=world.a.id, period=period, k=k)
    flows = await flows_report(session, institution_id=world.a.id, period=period, k=k)
    return visits, flows


async def _refreshed(session: AsyncSession, engine: AsyncEngine) -> None:
    await session.commit()
    await refresh(create_sessionmaker(engine), now=AFTER, k=K)


class TestStaleness:
    async def test_served_after_the_refresh(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        live = await _reports(session, world)
        await _refreshed(session, engine)
        visits, flows = await _reports(session, world)
        assert (visits.source, visits.computed_at) == ("stored", AFTER)
        assert (flows.source, flows.computed_at) == ("stored", AFTER)
        assert (_as_live(visits), _as_live(flows)) == live
        assert (visits.visits, visits.new_visitors) == (3, 3)
        assert [(r.visitors, r.visits) for r in flows.after] == [(3, 3)]

    async def test_a_late_counted_scan_in_the_period(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        await _refreshed(session, engine)
        late = await create_member(session)
        for venue, hour in ((world.venue_a, 9), (world.venue_b, 12)):
            await create_checkin(
                session,
                venue=venue,
                member=late,
                scanned_at=datetime(2026, 3, 20, hour, tzinfo=UTC),
            )
        await session.commit()
        visits, flows = await _reports(session, world)
        assert (visits.source, flows.source) == ("live", "live")
        assert (visits.visits, visits.visitors, visits.new_visitors) == (4, 4, 4)
        assert [(r.visitors, r.visits) for r in flows.after] == [(4, 4)]
        await _refreshed(session, engine)
        served = await _reports(session, world)
        assert [r.source for r in served] == ["stored", "stored"]
        assert (_as_live(served[0]), _as_live(served[1])) == (visits, flows)

    async def test_a_late_refused_scan_in_the_period(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        await _refreshed(session, engine)
        await create_checkin(
            session,
            venue=world.venue_a,
            member=await create_member(session),
            scanned_at=datetime(2026, 3, 21, 9, tzinfo=UTC),
            result=CheckinResult.REFUSED,
            reason="card_blocked",
        )
        await session.commit()
        visits, _ = await _reports(session, world)
        assert visits.source == "live"
        assert visits.visits == 3
        assert [(r.result, r.reason, r.checkins) for r in visits.not_counted] == [
            ("refused", "card_blocked", 1)
        ]
        await _refreshed(session, engine)
        served, _ = await _reports(session, world)
        assert served.source == "stored"
        assert _as_live(served) == visits

    async def test_an_override(self, session: AsyncSession, engine: AsyncEngine) -> None:
        world = await _march(session)
        refused = await create_checkin(
            session,
            venue=world.venue_a,
            member=await create_member(session),
            scanned_at=datetime(2026, 3, 11, 9, tzinfo=UTC),
            result=CheckinResult.REFUSED,
            reason="card_blocked",
        )
        await _refreshed(session, engine)
        assert (await _reports(session, world))[0].visits == 3
        await override(
            session,
            checkin_id=refused.id,
            reason="card found valid at the desk",
            institution_scope=None,
            actor=Actor(label="test"),
            now=AFTER,
        )
        await session.commit()
        visits, flows = await _reports(session, world)
        assert (visits.source, flows.source) == ("live", "live")
        assert (visits.visits, visits.visitors, visits.not_counted) == (4, 4, [])
        await _refreshed(session, engine)
        served, _ = await _reports(session, world)
        assert served.source == "stored"
        assert _as_live(served) == visits

    async def test_an_imported_visit_before_the_period(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        """An earlier visit makes a March visitor no longer new in March."""
        world = await _march(session)
        card = await create_card(session, member=world.members[0], membership=None)
        await _refreshed(session, engine)
        assert (await _reports(session, world))[0].new_visitors == 3
        number = card_numbers.display(card.number)
        data = (
            "card_or_holder,institution_code,venue_code,scanned_at,product_code\n"
            f"{number},A,MAIN,2026-02-15T10:00:00+01:00,\n"
        ).encode()
        await history.import_checkins(session, data=data, actor=Actor(label="cli"), now=AFTER)
        await session.commit()
        visits, _ = await _reports(session, world)
        assert visits.source == "live"
        assert (visits.visits, visits.visitors, visits.new_visitors) == (3, 3, 2)
        # Affinity shares the period's marks and its definition of a change.
        assert (
            await affinity_report(session, institution_id=world.a.id, period=MARCH, k=K)
        ).source == "live"
        await _refreshed(session, engine)
        served, _ = await _reports(session, world)
        assert (served.source, served.new_visitors) == ("stored", 2)

    async def test_a_scan_after_the_period_leaves_it_served(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        await _refreshed(session, engine)
        await create_checkin(
            session,
            venue=world.venue_a,
            member=await create_member(session),
            scanned_at=datetime(2026, 4, 2, 9, tzinfo=UTC),
        )
        await session.commit()
        visits, flows = await _reports(session, world)
        assert (visits.source, flows.source) == ("stored", "stored")
        assert (await _reports(session, world, period=STANDARD["april"]))[0].source == "live"

    async def test_labels_read_as_they_are_now(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        card, museum = (
            await create_product(session, code="CARD"),
            await create_product(session, code="MUSEUM"),
        )
        for product, visitors in ((card, 2), (museum, 1)):
            for _ in range(visitors):
                await create_checkin(
                    session,
                    venue=world.venue_a,
                    member=await create_member(session),
                    scanned_at=datetime(2026, 3, 11, 9, tzinfo=UTC),
                    product=product,
                )
        await _refreshed(session, engine)
        card.code, museum.code = "ZCARD", "AMUSEUM"
        world.b.code, world.b.name = "NEWB", "Museum B, renamed"
        await session.commit()
        visits, flows = await _reports(session, world)
        assert (visits.source, flows.source) == ("stored", "stored")
        assert [(p.product_code, p.visits) for p in visits.product_mix] == [
            (None, 3),
            ("ZCARD", 2),
            ("AMUSEUM", 1),
        ]
        assert [(r.institution_code, r.institution_name) for r in flows.after] == [
            ("NEWB", "Museum B, renamed")
        ]
        live = await _reports(session, world, k=K + 1)
        assert [p.product_code for p in live[0].product_mix] == [
            p.product_code for p in visits.product_mix
        ]

    async def test_another_k_is_counted_live(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        await _refreshed(session, engine)
        for report in (StoredReportKind.VISITS, StoredReportKind.FLOWS):
            assert (
                await stored_report(
                    session,
                    VisitsReport if report is StoredReportKind.VISITS else FlowsReport,
                    report=report,
                    institution_id=world.a.id,
                    period=MARCH,
                    k=K + 4,
                )
                is None
            )
        visits, flows = await _reports(session, world, k=K + 4)
        assert (visits.source, flows.source) == ("live", "live")
        assert (visits.k, flows.k) == (K + 4, K + 4)
        assert flows.after[0].suppressed

    async def test_a_refresh_for_another_k_recomputes(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        await _refreshed(session, engine)
        await session.commit()
        sessionmaker = create_sessionmaker(engine)
        result = await refresh(sessionmaker, now=AFTER, k=K + 4)
        # Unchanged, but without reports for this k; April to December had no visit.
        assert {(p.kind, p.period.start) for p in result.computed} == _WITH_MARCH
        visits, flows = await _reports(session, world, k=K + 4)
        assert (visits.source, flows.source) == ("stored", "stored")
        assert flows.after[0].suppressed
        assert (await _reports(session, world))[0].source == "live"

    async def test_rollups_stored_before_the_reports_existed_get_them(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        world = await _march(session)
        await _refreshed(session, engine)
        await session.execute(delete(StoredReport))
        await session.commit()
        assert (await _reports(session, world))[0].source == "live"
        result = await refresh(create_sessionmaker(engine), now=AFTER, k=K)
        assert {(p.kind, p.period.start) for p in result.computed} == _WITH_MARCH
        assert [r.source for r in await _reports(session, world)] == ["stored", "stored"]


class TestOverHttp:
    async def test_the_api_says_where_figures_come_from(
        self,
        session: AsyncSession,
        engine: AsyncEngine,
        client: httpx.AsyncClient,
        settings: Settings,
    ) -> None:
        world = await create_staff_world(session)
        venue = await create_venue(session, institution=world.institution_a)
        for n in range(3):
            await create_checkin(
                session,
                venue=venue,
                member=await create_member(session),
                scanned_at=datetime(2026, 3, 10, 9, n, tzinfo=UTC),
            )
        await session.commit()
        url = f"/v1/institutions/{world.institution_a.id}/reports"
        params = {"start": "2026-03-01", "end": "2026-03-31"}
        headers = world.headers["staff_a"]
        before = await client.get(f"{url}/visits", params=params, headers=headers)
        assert before.status_code == 200, before.text
        assert (before.json()["source"], before.json()["computed_at"]) == ("live", None)
        await refresh(create_sessionmaker(engine), now=AFTER, k=settings.suppression_k)
        for report in ("visits", "flows"):
            body = (await client.get(f"{url}/{report}", params=params, headers=headers)).json()
            assert body["source"] == "stored"
            assert datetime.fromisoformat(body["computed_at"]) == AFTER
        stored = (await client.get(f"{url}/visits", params=params, headers=headers)).json()
        assert {**stored, "source": "live", "computed_at": None} == before.json()
        as_csv = await client.get(
            f"{url}/visits", params={**params, "format": "csv"}, headers=headers
        )
        assert as_csv.status_code == 200
        assert "total,,3,3,false" in as_csv.text


async def _counted_at(session: AsyncSession, institution_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Checkin).where(counted_visits(MARCH, institution_id))
        )
        or 0
    )


@pytest.mark.postgres
class TestConcurrentRefresh:
    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_a_served_visits_report_holds_every_committed_visit(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        """A stored report served while scans arrive and refreshes run holds every visit
        committed before it was read, and none that was not committed yet."""
        world = await _march(session)
        members = [await create_member(session) for _ in range(12)]
        await session.commit()
        sessionmaker = create_sessionmaker(engine)

        async def scan(n: int) -> None:
            async with sessionmaker() as writer:
                await create_checkin(
                    writer,
                    venue=world.venue_a,
                    member=members[n],
                    scanned_at=datetime(2026, 3, 15, 9, tzinfo=UTC) + timedelta(minutes=n),
                )
                await asyncio.sleep(0.05 * (n % 4))
                await writer.commit()

        served: list[int] = []

        async def check() -> None:
            for _ in range(20):
                async with sessionmaker() as reader:
                    before = await _counted_at(reader, world.a.id)
                    stored = await stored_report(
                        reader,
                        VisitsReport,
                        report=StoredReportKind.VISITS,
                        institution_id=world.a.id,
                        period=MARCH,
                        k=K,
                    )
                    after = await _counted_at(reader, world.a.id)
                    if stored is not None:
                        assert before <= stored.visits <= after
                        assert stored.visitors == stored.visits
                        served.append(stored.visits)
                await asyncio.sleep(0.03)

        await asyncio.gather(
            *(scan(n) for n in range(12)),
            refresh(sessionmaker, now=AFTER, k=K),
            refresh(sessionmaker, now=AFTER, k=K),
            check(),
        )
        await refresh(sessionmaker, now=AFTER, k=K)
        visits, _ = await _reports(session, world)
        assert (visits.source, visits.visits) == ("stored", 3 + 12)

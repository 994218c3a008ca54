"""Rollups of closed periods give the live figures, and are never served once they are stale."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typer.testing import CliRunner

import migrations
from api import cli
from membership.audit import Actor
from membership.checkins import override
from membership.db import create_engine, create_sessionmaker
from membership.models import (
    Checkin,
    CheckinResult,
    Institution,
    PeriodKind,
    ReportPeriod,
    StoredReport,
    Venue,
)
from reports import periods
from reports.affinity import affinity_report
from reports.common import Period
from reports.network import network_report
from reports.periods import (
    StandardPeriod,
    closed_before,
    closed_periods,
    high_water,
    programme_visitors,
    refresh,
    standard_kind,
    stored_affinity,
    stored_network,
)
from tests.factories import create_checkin, create_institution, create_member, create_venue
from tests.reports.dataset import BASE, Dataset, brute_affinity, brute_network, datasets, load

EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The datasets lie around the end of March 2026; everything of 2026 is closed by then.
AFTER = datetime(2027, 1, 10, tzinfo=UTC)
STANDARD = {
    "march": Period(date(2026, 3, 1), date(2026, 3, 31)),
    "april": Period(date(2026, 4, 1), date(2026, 4, 30)),
    "q1": Period(date(2026, 1, 1), date(2026, 3, 31)),
    "q2": Period(date(2026, 4, 1), date(2026, 6, 30)),
    "year": Period(date(2026, 1, 1), date(2026, 12, 31)),
}


def _over(dataset: Dataset, period: Period) -> Dataset:
    """The same data, asked about `period` (the brute force reads the dataset's period)."""
    return dataclasses.replace(dataset, start=(period.start - BASE).days, length=period.days)


class TestStandardPeriods:
    @pytest.mark.parametrize(
        ("start", "end", "kind"),
        [
            (date(2026, 2, 1), date(2026, 2, 28), PeriodKind.MONTH),
            (date(2024, 2, 1), date(2024, 2, 29), PeriodKind.MONTH),
            (date(2026, 4, 1), date(2026, 6, 30), PeriodKind.QUARTER),
            (date(2026, 1, 1), date(2026, 12, 31), PeriodKind.YEAR),
            (date(2025, 12, 1), date(2026, 11, 30), PeriodKind.TWELVE_MONTHS),
            (date(2025, 3, 1), date(2026, 2, 28), PeriodKind.TWELVE_MONTHS),
            (date(2023, 3, 1), date(2024, 2, 29), PeriodKind.TWELVE_MONTHS),
            (date(2025, 3, 1), date(2026, 2, 27), None),
            (date(2025, 3, 2), date(2026, 2, 28), None),
            (date(2025, 2, 1), date(2026, 2, 28), None),
            (date(2025, 4, 1), date(2026, 2, 28), None),
            (date(2026, 2, 1), date(2026, 2, 27), None),
            (date(2026, 2, 2), date(2026, 2, 28), None),
            (date(2026, 2, 1), date(2026, 4, 30), None),
            (date(2025, 12, 1), date(2026, 1, 31), None),
            (date(2026, 1, 1), date(2026, 6, 30), None),
        ],
    )
    def test_kind(self, start: date, end: date, kind: PeriodKind | None) -> None:
        assert standard_kind(Period(start, end)) is kind

    def test_closed_periods_are_over_in_every_time_zone(self) -> None:
        now = datetime(2026, 4, 1, 23, 0, tzinfo=UTC)
        assert closed_before(now) == date(2026, 3, 30)
        periods = {(p.kind, p.period.start) for p in closed_periods(date(2026, 1, 15), now)}
        assert periods == {
            (PeriodKind.MONTH, date(2026, 1, 1)),
            (PeriodKind.MONTH, date(2026, 2, 1)),
            (PeriodKind.TWELVE_MONTHS, date(2025, 3, 1)),
        }
        later = {(p.kind, p.period.start) for p in closed_periods(date(2025, 12, 31), AFTER)}
        assert (PeriodKind.YEAR, date(2025, 1, 1)) in later
        assert (PeriodKind.MONTH, date(2025, 11, 1)) not in later
        assert (PeriodKind.QUARTER, date(2026, 10, 1)) in later
        # Twelve months ending with December are the year, not a second period.
        assert len(later) == 1 + 1 + 1 + 12 + 4 + 1

    @pytest.mark.parametrize(
        ("now", "window"),
        [
            # Two days before UTC today is the last day over everywhere: 31 October.
            (datetime(2026, 11, 2, 0, 30, tzinfo=UTC), (date(2025, 11, 1), date(2026, 10, 31))),
            (datetime(2026, 11, 25, tzinfo=UTC), (date(2025, 11, 1), date(2026, 10, 31))),
            (datetime(2026, 11, 1, 23, tzinfo=UTC), (date(2025, 10, 1), date(2026, 9, 30))),
            (datetime(2027, 3, 2, tzinfo=UTC), (date(2026, 3, 1), date(2027, 2, 28))),
            (datetime(2027, 1, 10, tzinfo=UTC), None),
        ],
    )
    def test_only_the_latest_twelve_months_are_kept(
        self, now: datetime, window: tuple[date, date] | None
    ) -> None:
        twelve = [
            (p.period.start, p.period.end)
            for p in closed_periods(date(2025, 1, 1), now)
            if p.kind is PeriodKind.TWELVE_MONTHS
        ]
        assert twelve == ([] if window is None else [window])
        for start, end in twelve:
            assert standard_kind(Period(start, end)) is PeriodKind.TWELVE_MONTHS

    def test_twelve_months_before_the_first_visit_are_not_kept(self) -> None:
        now = datetime(2026, 11, 25, tzinfo=UTC)
        kinds = {p.kind for p in closed_periods(date(2026, 11, 1), now)}
        assert PeriodKind.TWELVE_MONTHS not in kinds


class TestEqualToLive:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_affinity_and_matrix_from_the_rollup(
        self, session: AsyncSession, engine: AsyncEngine, dataset: Dataset
    ) -> None:
        loaded = await load(session, dataset)
        result = await refresh(create_sessionmaker(engine), now=AFTER, k=dataset.k)
        assert result.computed, "the closed periods of 2026 are computed"
        index = {f"I{i}": i for i in range(len(dataset.zones))}
        for period in STANDARD.values():
            asked = _over(dataset, period)
            for i, institution in enumerate(loaded.institutions):
                assert await stored_affinity(
                    session, institution_id=institution.id, period=period
                ), "served from the rollup"
                report = await affinity_report(
                    session, institution_id=institution.id, period=period, k=dataset.k
                )
                got = {
                    loaded.by_id[row.institution_id]: (
                        None if row.suppressed else (row.both, row.share, row.lift, row.jaccard)
                    )
                    for row in report.by_lift
                }
                assert got == brute_affinity(asked, i)
                assert all(row.both is None or row.both >= dataset.k for row in report.by_lift)
            assert await stored_network(session, period=period), "served from the rollup"
            network = await network_report(session, period=period, k=dataset.k)
            matrix, flows = brute_network(asked)
            assert {
                (index[c.a_code], index[c.b_code]): (
                    None if c.suppressed else (c.both, c.share_ab, c.share_ba, c.lift, c.jaccard)
                )
                for c in network.matrix
            } == matrix
            assert [
                (index[f.from_code], index[f.to_code], f.visitors, f.visits)
                for f in network.top_flows
            ] == flows
            for row in network.institutions:
                assert row.visitors is None or row.visitors >= dataset.k
        again = await refresh(create_sessionmaker(engine), now=AFTER, k=dataset.k)
        assert again.computed == []
        assert again.unchanged == len(result.computed)


async def _two_institutions(
    session: AsyncSession, *, visitors: int
) -> tuple[Institution, Institution, Venue, Venue]:
    """`visitors` members visit A and B on 10 March 2026 (Amsterdam)."""
    a = await create_institution(session, code="A")
    b = await create_institution(session, code="B")
    venue_a = await create_venue(session, institution=a)
    venue_b = await create_venue(session, institution=b)
    for n in range(visitors):
        member = await create_member(session)
        at = datetime(2026, 3, 10, 9, tzinfo=UTC) + timedelta(minutes=n)
        await create_checkin(session, venue=venue_a, member=member, scanned_at=at)
        await create_checkin(
            session, venue=venue_b, member=member, scanned_at=at + timedelta(hours=2)
        )
    await session.commit()
    return a, b, venue_a, venue_b


MARCH = STANDARD["march"]
K = 1


class TestStaleness:
    async def test_a_late_scan_makes_the_period_fall_back_until_recomputed(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        a, b, venue_a, venue_b = await _two_institutions(session, visitors=3)
        sessionmaker = create_sessionmaker(engine)
        await refresh(sessionmaker, now=AFTER, k=K)
        stored = await stored_affinity(session, institution_id=a.id, period=MARCH)
        assert stored is not None
        assert stored.visitors_a == 3
        assert stored.others == [(b.id, 3, 3)]

        late = await create_member(session)
        for venue in (venue_a, venue_b):
            await create_checkin(
                session, venue=venue, member=late, scanned_at=datetime(2026, 3, 20, 12, tzinfo=UTC)
            )
        await session.commit()
        assert await stored_affinity(session, institution_id=a.id, period=MARCH) is None
        assert await stored_network(session, period=MARCH) is None
        live = await affinity_report(session, institution_id=a.id, period=MARCH, k=1)
        assert (live.visitors, live.by_lift[0].both) == (4, 4)
        assert live.source == "live"
        # April's visits report counts new visitors against March, so April has changed too.
        assert await stored_network(session, period=STANDARD["april"]) is None

        result = await refresh(sessionmaker, now=AFTER, k=K)
        recomputed = {(p.kind, p.period.start) for p in result.computed}
        assert recomputed == {
            *((PeriodKind.MONTH, date(2026, month, 1)) for month in range(3, 13)),
            *((PeriodKind.QUARTER, date(2026, month, 1)) for month in (1, 4, 7, 10)),
            (PeriodKind.YEAR, date(2026, 1, 1)),
        }
        stored = await stored_affinity(session, institution_id=a.id, period=MARCH)
        assert stored is not None
        assert (stored.visitors_a, stored.others) == (4, [(b.id, 4, 4)])
        report = await affinity_report(session, institution_id=a.id, period=MARCH, k=1)
        assert report.source == "stored"
        assert dataclasses.replace(report, source="live", computed_at=None) == live

    async def test_an_override_after_the_refresh_makes_the_period_fall_back(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        _, _, venue_a, _ = await _two_institutions(session, visitors=2)
        refused = await create_checkin(
            session,
            venue=venue_a,
            member=await create_member(session),
            scanned_at=datetime(2026, 3, 11, 9, tzinfo=UTC),
            result=CheckinResult.REFUSED,
            reason="card_blocked",
        )
        await session.commit()
        await refresh(create_sessionmaker(engine), now=AFTER, k=K)
        assert await stored_network(session, period=MARCH) is not None
        await override(
            session,
            checkin_id=refused.id,
            reason="card found valid at the desk",
            institution_scope=None,
            actor=Actor(label="test"),
            now=AFTER,
        )
        await session.commit()
        assert await stored_network(session, period=MARCH) is None
        network = await network_report(session, period=MARCH, k=1)
        assert network.visitors == 3
        await refresh(create_sessionmaker(engine), now=AFTER, k=K)
        stored = await stored_network(session, period=MARCH)
        assert stored is not None
        assert stored.visitors_any == 3
        served = await network_report(session, period=MARCH, k=1)
        assert (served.source, network.source) == ("stored", "live")
        assert dataclasses.replace(served, source="live", computed_at=None) == network

    async def test_a_scan_in_an_open_period_is_not_rolled_up(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        a, *_ = await _two_institutions(session, visitors=1)
        result = await refresh(
            create_sessionmaker(engine), now=datetime(2026, 3, 31, tzinfo=UTC), k=K
        )
        assert result.computed == []
        assert await stored_affinity(session, institution_id=a.id, period=MARCH) is None

    async def test_a_non_standard_period_is_counted_live(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        a, *_ = await _two_institutions(session, visitors=2)
        await refresh(create_sessionmaker(engine), now=AFTER, k=K)
        odd = Period(date(2026, 3, 1), date(2026, 3, 30))
        assert await stored_affinity(session, institution_id=a.id, period=odd) is None
        report = await affinity_report(session, institution_id=a.id, period=odd, k=1)
        assert report.visitors == 2


@pytest.mark.postgres
class TestConcurrentRefresh:
    """A refresh racing with writers never stores figures that the change probe calls fresh
    while they miss a committed visit (the race `received_at` would lose)."""

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_a_writer_in_flight_below_the_mark_is_waited_for(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        _, _, venue_a, venue_b = await _two_institutions(session, visitors=2)
        sessionmaker = create_sessionmaker(engine)
        late, early = await create_member(session), await create_member(session)
        await session.commit()
        # A late offline scan draws its id now and commits only after the refresh has begun;
        # meanwhile another scan with a higher id commits. Trusting the highest committed id
        # (or `received_at`) would store March without the first scan and call it fresh.
        async with sessionmaker() as writer:
            await create_checkin(
                writer,
                venue=venue_a,
                member=late,
                scanned_at=datetime(2026, 3, 25, 9, tzinfo=UTC),
            )
            await create_checkin(
                session,
                venue=venue_b,
                member=early,
                scanned_at=datetime(2026, 3, 25, 9, tzinfo=UTC),
            )
            await session.commit()
            refreshing = asyncio.create_task(refresh(sessionmaker, now=AFTER, k=K))
            await asyncio.sleep(0.5)
            waited = not refreshing.done()
            await writer.commit()
        await refreshing
        assert waited, "the refresh waits for the writer"
        stored = await stored_network(session, period=MARCH)
        assert stored is not None
        assert stored.visitors_any == 4

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_a_writer_that_drew_its_id_before_its_transaction_id_is_waited_for(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        # An INSERT locks the table and draws its id before PostgreSQL gives its transaction an
        # xid (when the row is written). Marks taken in between must still wait for it: the
        # snapshot does not list it as in progress, yet its row lands below the mark.
        _, _, venue_a, venue_b = await _two_institutions(session, visitors=2)
        sessionmaker = create_sessionmaker(engine)
        late, early = await create_member(session), await create_member(session)
        await session.commit()
        async with sessionmaker() as writer, sessionmaker() as reader:
            await writer.execute(text("LOCK TABLE checkins IN ROW EXCLUSIVE MODE"))
            drawn = await writer.scalar(
                text("SELECT nextval(pg_get_serial_sequence('checkins', 'id'))")
            )
            await create_checkin(
                session,
                venue=venue_b,
                member=early,
                scanned_at=datetime(2026, 3, 25, 9, tzinfo=UTC),
            )
            await session.commit()
            marking = asyncio.create_task(high_water(reader))
            await asyncio.sleep(0.5)
            waited = not marking.done()
            await create_checkin(
                writer,
                venue=venue_a,
                member=late,
                scanned_at=datetime(2026, 3, 25, 9, tzinfo=UTC),
                checkin_id=drawn,
            )
            await writer.commit()
            marks = await marking
            assert waited, "the marks wait for the writer"
            assert drawn < marks.checkin
            seen = await reader.scalar(select(func.count()).where(Checkin.id <= marks.checkin))
            assert seen == await session.scalar(select(func.count()).select_from(Checkin))

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_figures_served_while_scans_arrive_are_exact(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        a, _, venue_a, venue_b = await _two_institutions(session, visitors=3)
        members = [await create_member(session) for _ in range(12)]
        await session.commit()
        sessionmaker = create_sessionmaker(engine)

        async def scan(n: int) -> None:
            async with sessionmaker() as writer:
                await create_checkin(
                    writer,
                    venue=venue_a if n % 2 else venue_b,
                    member=members[n],
                    scanned_at=datetime(2026, 3, 15, 9, tzinfo=UTC) + timedelta(minutes=n),
                )
                await asyncio.sleep(0.05 * (n % 4))
                await writer.commit()

        async def live(reader: AsyncSession) -> int:
            return int((await reader.execute(programme_visitors(MARCH))).scalar_one())

        async def check() -> None:
            """A served figure holds every visit committed before it was read (not stale), and
            none that was not committed yet."""
            for _ in range(20):
                async with sessionmaker() as reader:
                    before = await live(reader)
                    stored = await stored_network(reader, period=MARCH)
                    after = await live(reader)
                    if stored is not None:
                        assert before <= stored.visitors_any <= after
                        served.append(stored.visitors_any)
                await asyncio.sleep(0.03)

        served: list[int] = []

        await asyncio.gather(
            *(scan(n) for n in range(12)),
            refresh(sessionmaker, now=AFTER, k=K),
            refresh(sessionmaker, now=AFTER, k=K),
            check(),
        )
        await refresh(sessionmaker, now=AFTER, k=K)
        stored = await stored_network(session, period=MARCH)
        assert stored is not None
        assert stored.visitors_any == 3 + 12
        assert (
            await affinity_report(session, institution_id=a.id, period=MARCH, k=1)
        ).visitors == 9


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_refreshes_at_once_compute_each_period_once(
    session: AsyncSession, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _two_institutions(session, visitors=3)
    sessionmaker = create_sessionmaker(engine)
    computed: list[StandardPeriod] = []
    compute = periods.compute_period

    async def counted(session: AsyncSession, *, standard: StandardPeriod, **kwargs: Any) -> None:
        computed.append(standard)
        await compute(session, standard=standard, **kwargs)

    monkeypatch.setattr(periods, "compute_period", counted)
    first, second = await asyncio.gather(
        refresh(sessionmaker, now=AFTER, k=K), refresh(sessionmaker, now=AFTER, k=K)
    )
    assert len(computed) == len(set(computed)) == len(first.computed) + len(second.computed)
    assert sorted(len(r.computed) for r in (first, second))[0] == 0
    assert {r.unchanged for r in (first, second)} == {0, len(computed)}


class TestRefreshCommand:
    """`membership reports refresh` against a migrated SQLite file."""

    def test_computes_then_confirms(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
        migrations.upgrade(url)
        monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
        monkeypatch.setenv("MEMBERSHIP_DATABASE_URL", url)

        async def one_visit() -> None:
            engine = create_engine(url)
            try:
                async with create_sessionmaker(engine)() as session:
                    await _two_institutions(session, visitors=1)
            finally:
                await engine.dispose()

        asyncio.run(one_visit())
        first = CliRunner().invoke(cli.app, ["reports", "refresh"])
        assert first.exit_code == 0, first.output
        computed = re.search(r"(\d+) periods computed, 0 unchanged", first.output)
        assert computed, first.output
        # March to October 2026 and the first three quarters, at least (today is later).
        assert int(computed.group(1)) >= 11
        again = CliRunner().invoke(cli.app, ["reports", "refresh"])
        assert f"0 periods computed, {computed.group(1)} unchanged" in again.output


async def test_the_refresh_keeps_only_the_latest_twelve_months(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    """A month later the window has moved on; the older one, no longer refreshed, is dropped
    (with its institution reports) and a request for it is counted live."""
    a, *_ = await _two_institutions(session, visitors=2)
    sessionmaker = create_sessionmaker(engine)
    may = Period(date(2025, 5, 1), date(2026, 4, 30))
    june = Period(date(2025, 6, 1), date(2026, 5, 31))
    await refresh(sessionmaker, now=datetime(2026, 5, 5, tzinfo=UTC), k=K)
    assert (await affinity_report(session, institution_id=a.id, period=may, k=K)).source == (
        "stored"
    )
    await session.commit()

    await refresh(sessionmaker, now=datetime(2026, 6, 5, tzinfo=UTC), k=K)
    windows = await session.execute(
        select(ReportPeriod.first_day, ReportPeriod.last_day).where(
            ReportPeriod.kind == PeriodKind.TWELVE_MONTHS
        )
    )
    assert windows.all() == [(june.start, june.end)]
    # A's visits and flows reports of March, the first quarter and the new window; none left
    # of the dropped one.
    stored = await session.scalar(
        select(func.count()).select_from(StoredReport).where(StoredReport.institution_id == a.id)
    )
    assert stored == 6
    old = await affinity_report(session, institution_id=a.id, period=may, k=K)
    assert (old.source, old.visitors) == ("live", 2)
    assert (await affinity_report(session, institution_id=a.id, period=june, k=K)).source == (
        "stored"
    )

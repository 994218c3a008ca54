"""The retention cut (rule 5): links older than the retention period go, every figure stays."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from membership import jobs, retention
from membership.cards import TEMPORARY_DAYS
from membership.db import create_sessionmaker
from membership.models import (
    Card,
    Checkin,
    CheckinResult,
    ClearingModel,
    ClearingPolicy,
    Institution,
    Member,
    Product,
    Venue,
)
from membership.settings import Settings
from reports.affinity import AffinityReport, FlowsReport, affinity_report, flows_report
from reports.common import Period
from reports.export import ExportFormat, Visit, VisitExport, institution_id_key, visit_batches
from reports.network import network_report
from reports.payouts import PayoutStatement, payout_statement
from reports.segments import segments_report
from reports.visits import VisitsReport, visits_report
from tests.factories import (
    create_card,
    create_checkin,
    create_institution,
    create_member,
    create_product,
    create_venue,
)
from tests.visitor_rows import brute_visitor_rows, visitor_rows

# 00:30 on 3 June in Amsterdam, the programme's zone, while still 2 June in UTC: with 32 days
# of retention (the least the settings allow) the cut-off is 2 May, where a UTC "today" would
# give 1 May.
NOW = datetime(2026, 6, 2, 22, 30, tzinfo=UTC)
RETENTION_DAYS = 32
CUT_OFF = date(2026, 5, 2)
PERIOD = Period(date(2026, 4, 1), date(2026, 5, 31))
ZONES = ("Europe/Amsterdam", "America/New_York", "Asia/Kolkata")
K = 2
UNLINKED = date(2026, 5, 20)


@pytest.fixture
def retention_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"retention_days": RETENTION_DAYS})


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


def at(day: date, zone: str, hour: int, minute: int = 0) -> datetime:
    """A moment on the wall clock of `zone`, in UTC as the check-ins store it."""
    return datetime.combine(day, time(hour, minute), ZoneInfo(zone)).astimezone(UTC)


@dataclass
class Programme:
    institutions: list[Institution]
    venues: list[Venue]
    members: list[Member]
    cards: list[Card]
    products: list[Product]
    counted: set[tuple[int, int, date]]

    async def visit(
        self,
        session: AsyncSession,
        *,
        member: int,
        place: int,
        moment: datetime,
        refused: bool = False,
        **kw: Any,
    ) -> Checkin:
        """A scan as the door would store it: the day's first admission is the counted visit,
        later ones are re-entries; a refusal counts nothing."""
        zone = ZONES[place]
        key = (member, place, moment.astimezone(ZoneInfo(zone)).date())
        if refused:
            result = CheckinResult.REFUSED
        elif key in self.counted:
            result = CheckinResult.REENTRY
        else:
            result = CheckinResult.ADMITTED
            self.counted.add(key)
        return await create_checkin(
            session,
            venue=self.venues[place],
            member=self.members[member],
            card=self.cards[member] if kw.get("linked", True) else None,
            scanned_at=moment,
            timezone=zone,
            result=result,
            **kw,
        )


async def programme(session: AsyncSession) -> Programme:
    """Three institutions in three zones and twelve members visiting over April and May, with
    same-day visits elsewhere (flows), re-entries, refusals and a visit without link."""
    institutions = [
        await create_institution(session, timezone=zone, visit_tariff_minor=500 + 100 * i)
        for i, zone in enumerate(ZONES)
    ]
    venues = [await create_venue(session, institution=i) for i in institutions]
    products = [await create_product(session), await create_product(session)]
    members = [
        await create_member(
            session,
            birth_date=date(1950 + 6 * i, 1 + i % 12, 1 + i),
            postal_code=f"{10 + i % 3}{i:02d} AB",
        )
        for i in range(13)
    ]
    session.add(ClearingPolicy(valid_from=date(2020, 1, 1), model=ClearingModel.TARIFF))
    cards = [await create_card(session, member=member, membership=None) for member in members]
    world = Programme(institutions, venues, members, cards, products, set())
    for i in range(12):
        for j in range(6):
            place = (i + j) % 3
            day = PERIOD.start + timedelta(days=(4 * i + 11 * j) % 61)
            moment = at(day, ZONES[place], 10 + j, 7 * i % 60)
            await world.visit(
                session, member=i, place=place, moment=moment, product=products[(i + j) % 2]
            )
            if j % 2 == 0:
                await world.visit(
                    session,
                    member=i,
                    place=(place + 1) % 3,
                    moment=moment + timedelta(hours=2),
                    product=products[i % 2],
                )
            if j == 5:
                await world.visit(
                    session,
                    member=i,
                    place=place,
                    moment=moment + timedelta(minutes=5),
                    refused=True,
                )
    # Member 12's latest visit has no link (as after an import of unlinked history), so the
    # visitor row's link is an older visit, before the cut-off.
    await world.visit(session, member=12, place=0, moment=at(date(2026, 4, 10), ZONES[0], 12))
    await world.visit(session, member=12, place=0, moment=at(UNLINKED, ZONES[0], 12), linked=False)
    await session.commit()
    return world


async def links(session: AsyncSession) -> list[tuple[date, bool]]:
    """Each check-in's day and whether it still links to its member; the card, which names
    the member too, goes with the member link."""
    rows = (
        await session.execute(
            select(Checkin.local_date, Checkin.member_id.is_not(None), Checkin.card_id.is_not(None))
        )
    ).all()
    assert all(member == card for _, member, card in rows)
    return sorted((day, bool(linked)) for day, linked, _ in rows)


async def linked_before_cut_off(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """How many check-ins the cut should unlink: the linked ones dated before the cut-off."""
    async with sessionmaker() as before:
        return sum(1 for day, linked in await links(before) if linked and day < CUT_OFF)


async def assert_cut_exactly(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Links before the cut-off gone, the rest kept; visitor rows as recomputed."""
    async with sessionmaker() as after:
        assert all(
            linked == (day >= CUT_OFF) for day, linked in await links(after) if day != UNLINKED
        )
        assert await visitor_rows(after) == await brute_visitor_rows(after)


async def every_report(session: AsyncSession, world: Programme) -> dict[str, object]:
    """Every figure a report gives over the period, and every row of the visit exports."""
    figures: dict[str, object] = {
        "network": await network_report(session, period=PERIOD, k=K),
        "payouts": await payout_statement(
            session, year=2026, currency="EUR", timezone="Europe/Amsterdam"
        ),
    }
    for n, institution in enumerate(world.institutions):
        ref = {"institution_id": institution.id, "period": PERIOD, "k": K}
        figures[f"visits {n}"] = await visits_report(session, **ref)
        figures[f"flows {n}"] = await flows_report(session, **ref)
        figures[f"affinity {n}"] = await affinity_report(session, **ref)
        figures[f"payouts {n}"] = await payout_statement(
            session,
            year=2026,
            currency="EUR",
            timezone="Europe/Amsterdam",
            institution_id=institution.id,
        )
        segments = await segments_report(
            session, institution_id=institution.id, as_of=date(2026, 6, 1)
        )
        figures[f"segment population {n}"] = segments.visitors
        export = VisitExport(
            institution_id=institution.id,
            institution_code=institution.code,
            timezone=institution.timezone,
            period=PERIOD,
            format=ExportFormat.CSV,
            id_key=institution_id_key(b"retention test secret " * 2, institution.id),
        )
        figures[f"export {n}"] = [
            row async for batch in visit_batches(session, export) for row in batch
        ]
    return figures


class TestCut:
    async def test_links_before_the_cut_off_go_and_the_rest_stay(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        retention_settings: Settings,
    ) -> None:
        world = await programme(session)
        amsterdam, new_york = ZONES[0], ZONES[1]
        # The boundary in each zone: the day before the cut-off loses its link, the cut-off
        # day keeps it. 23:30 on 1 May in New York is already 2 May in UTC and in Amsterdam.
        edges = [
            await world.visit(
                session, member=1, place=0, moment=at(date(2026, 5, 1), amsterdam, 23, 59)
            ),
            await world.visit(session, member=2, place=0, moment=at(CUT_OFF, amsterdam, 0, 1)),
            await world.visit(
                session, member=3, place=1, moment=at(date(2026, 5, 1), new_york, 23, 30)
            ),
            await world.visit(session, member=4, place=1, moment=at(CUT_OFF, new_york, 0, 1)),
        ]
        await session.commit()
        assert [c.local_date for c in edges] == [date(2026, 5, 1), CUT_OFF] * 2
        assert retention.cut_off(settings=retention_settings, now=NOW) == CUT_OFF
        async with sessionmaker() as before:
            stored = await links(before)
            rows = await visitor_rows(before)
        assert all(linked for day, linked in stored if day != UNLINKED)

        cut = await retention.cut_links(sessionmaker, settings=retention_settings, now=NOW)

        async with sessionmaker() as after:
            assert await links(after) == sorted(
                (day, linked and day >= CUT_OFF) for day, linked in stored
            )
            after_rows = await visitor_rows(after)
            assert after_rows == await brute_visitor_rows(after)
            edge_links = [
                (await after.get(Checkin, c.id)).member_id is not None  # type: ignore[union-attr]
                for c in edges
            ]
        assert edge_links == [False, True, False, True]
        assert cut.checkins == sum(1 for day, linked in stored if linked and day < CUT_OFF)
        stale = [row for row in rows.values() if row[-1] is not None and row[-1] < CUT_OFF]
        assert cut.visitors == len(stale)
        first = world.institutions[0].id
        # Member 0 visited the first institution on 1 April and 4 May: the row keeps the later
        # link. Member 12's latest visit there is unlinked, so the row's link was 10 April.
        assert [rows[(first, world.members[m].visitor_key)][-2:] for m in (0, 12)] == [
            (world.members[0].id, date(2026, 5, 4)),
            (world.members[12].id, date(2026, 4, 10)),
        ]
        assert [after_rows[(first, world.members[m].visitor_key)][-2:] for m in (0, 12)] == [
            (world.members[0].id, date(2026, 5, 4)),
            (None, None),
        ]

    async def test_a_second_run_removes_nothing(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        retention_settings: Settings,
    ) -> None:
        await programme(session)
        first = await retention.cut_links(sessionmaker, settings=retention_settings, now=NOW)
        assert first.checkins > 0
        assert first.visitors > 0
        again = await retention.cut_links(sessionmaker, settings=retention_settings, now=NOW)
        assert again == retention.Cut(0, 0)

    async def test_tiny_batches_cut_the_same(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        retention_settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await programme(session)
        expected = await linked_before_cut_off(sessionmaker)
        batches: list[int] = []
        cut_batch = retention.cut_batch

        async def counted(*args: Any, **kwargs: Any) -> retention.Batch:
            batch = await cut_batch(*args, **kwargs)
            batches.append(batch.cut.checkins)
            return batch

        monkeypatch.setattr(retention, "cut_batch", counted)
        cut = await retention.cut_links(
            sessionmaker, settings=retention_settings, now=NOW, batch_size=3
        )
        assert cut.checkins == expected
        # Full batches until the last, which is short (empty when the count divides by 3).
        assert batches == [3] * (expected // 3) + [expected % 3]
        await assert_cut_exactly(sessionmaker)

    async def test_a_pass_limited_to_some_batches_leaves_the_rest_to_the_next(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        retention_settings: Settings,
    ) -> None:
        await programme(session)
        expected = await linked_before_cut_off(sessionmaker)
        passes = []
        while not passes or passes[-1]:
            cut = await retention.cut_links(
                sessionmaker, settings=retention_settings, now=NOW, batch_size=3, max_batches=2
            )
            passes.append(cut.checkins)
        assert passes[:-1] == [6] * (expected // 6) + ([expected % 6] if expected % 6 else [])
        assert (sum(passes), passes[-1]) == (expected, 0)
        await assert_cut_exactly(sessionmaker)

    async def test_racing_runners_cut_each_link_once(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        retention_settings: Settings,
        backend: str,
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        await programme(session)
        expected = await linked_before_cut_off(sessionmaker)
        async with sessionmaker() as before:
            rows = await visitor_rows(before)
        stale = sum(1 for row in rows.values() if row[-1] is not None and row[-1] < CUT_OFF)
        cuts = await asyncio.gather(
            *(
                retention.cut_links(
                    sessionmaker, settings=retention_settings, now=NOW, batch_size=2
                )
                for _ in range(4)
            )
        )
        assert sum(cut.checkins for cut in cuts) == expected
        assert sum(cut.visitors for cut in cuts) == stale
        await assert_cut_exactly(sessionmaker)

    async def test_nothing_is_cut_within_the_retention_period(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        await programme(session)
        assert settings.retention_days == 3 * 365
        cut = await retention.cut_links(sessionmaker, settings=settings, now=NOW)
        assert cut == retention.Cut(0, 0)


async def test_every_report_gives_the_same_figures(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    retention_settings: Settings,
) -> None:
    """Rule 5's test: the cut removes links only; no visit, visitor key, band or region moves."""
    world = await programme(session)
    async with sessionmaker() as reading:
        before = await every_report(reading, world)
    # Figures worth comparing: visits, shown (not withheld) overlaps and flows, paid visits.
    assert cast(VisitsReport, before["visits 0"]).visits > 10
    assert any(row.both for row in cast(AffinityReport, before["affinity 0"]).by_lift)
    flows = cast(FlowsReport, before["flows 0"])
    assert any(row.visitors for row in flows.before + flows.after)
    assert cast(PayoutStatement, before["payouts"]).visits > 10
    assert len(cast(list[Visit], before["export 0"])) > 10

    cut = await retention.cut_links(sessionmaker, settings=retention_settings, now=NOW)
    assert cut.checkins > 0

    async with sessionmaker() as reading:
        after = await every_report(reading, world)
    assert after == before


async def test_the_job_runner_reports_the_cut(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    retention_settings: Settings,
) -> None:
    await programme(session)
    expected = await linked_before_cut_off(sessionmaker)
    async with sessionmaker() as before:
        rows = await visitor_rows(before)
    stale = sum(1 for row in rows.values() if row[-1] is not None and row[-1] < CUT_OFF)

    report = await jobs.run_once(sessionmaker, settings=retention_settings, now=NOW)

    assert (report.links_cut_checkins, report.links_cut_visitors) == (expected, stale)
    assert f"links cut: check-ins {expected}, visitor rows {stale}" in report.summary()
    again = await jobs.run_once(sessionmaker, settings=retention_settings, now=NOW)
    assert (again.links_cut_checkins, again.links_cut_visitors) == (0, 0)


def test_the_retention_period_outlasts_a_temporary_card() -> None:
    # The door counts a temporary card's visits by the card link, which the cut removes.
    with pytest.raises(ValidationError):
        Settings(_env_file=None, retention_days=TEMPORARY_DAYS)  # type: ignore[call-arg]
    assert Settings(_env_file=None, retention_days=RETENTION_DAYS).retention_days == 32  # type: ignore[call-arg]

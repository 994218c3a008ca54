"""`membership import checkins`: a previous system's scans become counted visits, all or nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

import migrations
from api import cli
from membership import card_numbers, history
from membership.audit import Actor
from membership.db import create_engine, create_sessionmaker
from membership.models import AuditEntry, Card, CardStatus, Checkin, CheckinResult, Member, Venue
from tests import factories
from tests.helpers import table_counts

CLI = Actor(label="cli")
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T = TypeVar("T")
HEADER = "card_or_holder,institution_code,venue_code,scanned_at,product_code"


@dataclass(frozen=True)
class World:
    card: Card
    member: Member
    venue: Venue
    product_id: uuid.UUID
    new_number: str


async def create_world(session: AsyncSession) -> World:
    institution = await factories.create_institution(session, code="RIJKS")
    venue = await factories.create_venue(session, institution=institution, code="MAIN")
    product = await factories.create_product(session, code="ANNUAL", accepted_at=[institution])
    member = await factories.create_member(session)
    membership = await factories.create_membership(session, product=product, holders=[member])
    card = await factories.create_card(session, member=member, membership=membership)
    await session.commit()
    return World(card, member, venue, product.id, card_numbers.generate())


def good_file(world: World) -> bytes:
    spaced = card_numbers.display(world.card.number)
    return "\n".join(
        [
            HEADER,
            f"{spaced},RIJKS,MAIN,2025-03-01T10:00:00+01:00,",
            f"{world.card.number},RIJKS,MAIN,2025-03-01T14:00:00,",
            "OLD-42,RIJKS,MAIN,2025-03-02T11:00:00,ANNUAL",
            "OLD-42,RIJKS,MAIN,2025-03-03T11:00:00,ANNUAL",
            f"{world.new_number},RIJKS,MAIN,2025-03-02T09:00:00Z,",
            "",
        ]
    ).encode()


async def count(session: AsyncSession, *where: ColumnElement[bool]) -> int:
    return await session.scalar(select(func.count()).select_from(Checkin).where(*where)) or 0


class TestGoodFile:
    async def test_rows_become_visits_reentries_and_imported_holders(
        self, session: AsyncSession
    ) -> None:
        world = await create_world(session)

        summary = await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
        await session.commit()

        assert summary == history.ImportSummary(
            rows=5, already_imported=0, counted=4, reentries=1, holders_created=2, cards_created=2
        )
        assert await count(session, Checkin.imported.is_(True), Checkin.counted.is_(True)) == 4
        assert await count(session, Checkin.result == CheckinResult.REENTRY) == 1
        assert await count(session, Checkin.device_id.is_not(None)) == 0
        own = list(await session.scalars(select(Checkin).where(Checkin.card_id == world.card.id)))
        assert {c.visitor_key for c in own} == {world.member.visitor_key}
        assert {c.product_id for c in own} == {world.product_id}
        kept = await session.scalar(select(Card).where(Card.number == world.new_number))
        assert kept is not None
        assert (kept.imported, kept.status) == (True, CardStatus.EXPIRED)
        holder = await session.scalar(select(Member).where(Member.last_name == "holder OLD-42"))
        assert holder is not None
        assert holder.imported
        assert await count(session, Checkin.member_id == holder.id, Checkin.counted.is_(True)) == 2
        entry = await session.scalar(select(AuditEntry))
        assert entry is not None
        assert (entry.action, entry.actor) == ("checkins.import", "cli")

    async def test_a_visit_already_counted_that_day_makes_the_row_a_reentry(
        self, session: AsyncSession
    ) -> None:
        world = await create_world(session)
        await factories.create_checkin(
            session,
            venue=world.venue,
            member=world.member,
            card=world.card,
            scanned_at=datetime(2025, 3, 1, 16, 0, tzinfo=UTC),
        )
        await session.commit()

        summary = await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
        await session.commit()

        assert (summary.counted, summary.reentries) == (3, 2)
        assert await count(session, Checkin.counted.is_(True)) == 4

    async def test_reimport_changes_nothing(self, session: AsyncSession) -> None:
        world = await create_world(session)
        await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
        await session.commit()
        before = await table_counts(session)

        again = await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
        await session.commit()

        assert (again.already_imported, again.counted, again.holders_created) == (5, 0, 0)
        assert await table_counts(session) == before

    async def test_a_later_file_finds_the_same_imported_holders(
        self, session: AsyncSession
    ) -> None:
        world = await create_world(session)
        await history.import_checkins(session, data=good_file(world), actor=CLI, now=NOW)
        await session.commit()
        later = "\n".join(
            [
                HEADER,
                "OLD-42,RIJKS,MAIN,2025-03-03T15:00:00,",
                f"{world.new_number},RIJKS,MAIN,2025-04-01T09:00:00,",
            ]
        ).encode()

        summary = await history.import_checkins(session, data=later, actor=CLI, now=NOW)
        await session.commit()

        assert (summary.holders_created, summary.counted, summary.reentries) == (0, 1, 1)
        assert await session.scalar(select(func.count()).select_from(Member)) == 3


class TestLocalDate:
    @pytest.mark.parametrize(
        ("scanned_at", "expected_utc", "expected_day"),
        [
            ("2025-03-01T23:30:00", datetime(2025, 3, 1, 22, 30, tzinfo=UTC), date(2025, 3, 1)),
            ("2025-06-30T23:30:00", datetime(2025, 6, 30, 21, 30, tzinfo=UTC), date(2025, 6, 30)),
            (
                "2025-03-01T23:30:00+00:00",
                datetime(2025, 3, 1, 23, 30, tzinfo=UTC),
                date(2025, 3, 2),
            ),
        ],
    )
    async def test_the_day_is_the_institutions(
        self, session: AsyncSession, scanned_at: str, expected_utc: datetime, expected_day: date
    ) -> None:
        await create_world(session)
        data = f"{HEADER}\nOLD-7,RIJKS,MAIN,{scanned_at},\n".encode()

        await history.import_checkins(session, data=data, actor=CLI, now=NOW)
        await session.commit()

        checkin = await session.scalar(select(Checkin))
        assert checkin is not None
        assert (checkin.scanned_at, checkin.local_date) == (expected_utc, expected_day)


class TestBadFile:
    async def test_each_bad_row_is_reported_and_nothing_is_written(
        self, session: AsyncSession
    ) -> None:
        world = await create_world(session)
        bad_luhn = world.new_number[:-1] + str((int(world.new_number[-1]) + 1) % 10)
        data = "\n".join(
            [
                HEADER,
                "OLD-1,RIJKS,MAIN,2025-03-01T10:00:00,",
                "OLD-2,NOPE,MAIN,2025-03-01T10:00:00,",
                "OLD-3,RIJKS,MAIN,yesterday,",
                f"{bad_luhn},RIJKS,MAIN,2025-03-01T10:00:00,",
                "OLD-5,RIJKS,MAIN,2025-03-01T10:00:00,NOPE",
                "OLD-6,RIJKS,SIDE,2025-03-01T10:00:00,",
                "OLD-7,RIJKS,MAIN",
                "OLD-8,RIJKS,MAIN,2025-03-01T10:00:00,ANNUAL",
            ]
        ).encode()
        before = await table_counts(session)

        with pytest.raises(history.ImportRejected) as caught:
            await history.import_checkins(session, data=data, actor=CLI, now=NOW)
        await session.commit()

        assert caught.value.code == "import-rejected"
        assert [error.line for error in caught.value.errors] == [3, 4, 5, 6, 7, 8]
        assert await table_counts(session) == before

    @pytest.mark.parametrize(
        "header",
        [
            "card,institution_code,venue_code,scanned_at",
            "card_or_holder,institution_code,venue_code",
            f"{HEADER},extra",
            "",
        ],
    )
    async def test_a_wrong_header_is_line_one(self, session: AsyncSession, header: str) -> None:
        await create_world(session)
        before = await table_counts(session)

        with pytest.raises(history.ImportRejected) as caught:
            await history.import_checkins(
                session,
                data=f"{header}\nOLD-1,RIJKS,MAIN,2025-03-01T10:00:00\n".encode(),
                actor=CLI,
                now=NOW,
            )
        await session.commit()

        assert [error.line for error in caught.value.errors] == [1]
        assert await table_counts(session) == before


class TestImportCommand:
    """`membership import checkins FILE.csv` against a migrated SQLite file."""

    @pytest.fixture
    def database_file_url(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
        migrations.upgrade(url)
        monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
        monkeypatch.setenv("MEMBERSHIP_DATABASE_URL", url)
        return url

    @staticmethod
    def run(work: Callable[[AsyncSession], Awaitable[T]], url: str) -> T:
        async def go() -> T:
            engine = create_engine(url)
            try:
                async with create_sessionmaker(engine)() as session:
                    return await work(session)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def test_import_then_reimport(self, database_file_url: str, tmp_path: Path) -> None:
        world = self.run(create_world, database_file_url)
        path = tmp_path / "history.csv"
        path.write_bytes(good_file(world))

        first = CliRunner().invoke(cli.app, ["import", "checkins", str(path)])
        again = CliRunner().invoke(cli.app, ["import", "checkins", str(path)])

        assert first.exit_code == 0, first.output
        assert again.exit_code == 0, again.output

        async def counted(session: AsyncSession) -> int:
            return await count(session, Checkin.counted.is_(True))

        assert self.run(counted, database_file_url) == 4

    def test_a_bad_file_exits_non_zero_and_names_the_lines(
        self, database_file_url: str, tmp_path: Path
    ) -> None:
        self.run(create_world, database_file_url)
        path = tmp_path / "history.csv"
        path.write_text(f"{HEADER}\nOLD-1,RIJKS,MAIN,2025-03-01T10:00:00,\nOLD-2,NOPE,MAIN,x,\n")

        result = CliRunner().invoke(cli.app, ["import", "checkins", str(path)])

        assert result.exit_code == 1
        assert "line 3:" in result.output

        async def rows(session: AsyncSession) -> int:
            return await count(session)

        assert self.run(rows, database_file_url) == 0

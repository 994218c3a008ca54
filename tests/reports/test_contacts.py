"""The consenting-contacts export: rows equal the brute force, the segment filter, a streamed
body in batches with a BOM and no formula, the audit row committed before the first byte, and
only managers of the institution get it."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import AuditEntry, Institution, Member
from reports import contacts
from reports.contacts import COLUMNS, ContactExport, csv_chunks
from reports.segments import Segment
from tests.factories import create_checkin, create_member, create_venue
from tests.helpers import StaffWorld, asgi_get, assert_problem, create_staff_world
from tests.reports.dataset import Dataset, Loaded, brute_contacts, datasets, load, records

EXAMPLES = hypothesis_settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DAY = date(2026, 5, 12)
FILTERS = [(Segment.LAPSED,), (Segment.NEW, Segment.LOYAL), (Segment.RENEWAL_AT_RISK,)]


def export_of(
    institution: Institution, as_of: date, segments: tuple[Segment, ...] = tuple(Segment)
) -> ContactExport:
    return ContactExport(institution.id, institution.code, as_of, segments)


async def gather(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


def csv_rows(data: bytes) -> list[tuple[str, ...]]:
    assert data.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert tuple(lines[0]) == COLUMNS
    return [tuple(line) for line in lines[1:]]


def brute_rows(
    dataset: Dataset, loaded: Loaded, index: int, segments: tuple[Segment, ...] = tuple(Segment)
) -> list[tuple[str, ...]]:
    """Each consenting visitor of the population in the chosen segments, as CSV cells, by last
    name, first name and member id, straight from the definitions."""
    as_of = dataset.as_of_date
    last_visit: dict[int, date] = {}
    for record in records(dataset):
        if record.counted and record.institution == index and record.local <= as_of:
            last_visit[record.visitor] = max(
                last_visit.get(record.visitor, record.local), record.local
            )
    chosen = {segment.value for segment in segments}
    rows: list[tuple[str, str, str, tuple[str, ...]]] = []
    for visitor, segment in brute_contacts(dataset, index).items():
        if segment not in chosen:
            continue
        member = loaded.members[visitor]
        assert member.share_contact_at is not None
        cells = (
            str(member.id),
            member.first_name,
            member.last_name,
            member.email or "",
            member.language,
            member.postal_code or "",
            segment,
            last_visit[visitor].isoformat(),
            member.share_contact_at.isoformat(),
        )
        rows.append((member.last_name, member.first_name, str(member.id), cells))
    return [cells for *_, cells in sorted(rows)]


class TestAgainstBruteForce:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_every_row_and_each_segment_filter(
        self, session: AsyncSession, dataset: Dataset
    ) -> None:
        loaded = await load(session, dataset)
        for index, institution in enumerate(loaded.institutions):
            export = export_of(institution, dataset.as_of_date)
            # Two rows a batch: most institutions' exports take several batches.
            chunks = await gather(csv_chunks(session, export, fetch_rows=2))
            expected = brute_rows(dataset, loaded, index)
            assert csv_rows(b"".join(chunks)) == expected
            assert len(chunks) == 1 + -(-len(expected) // 2)
            for segments in FILTERS:
                filtered = export_of(institution, dataset.as_of_date, segments)
                data = b"".join(await gather(csv_chunks(session, filtered)))
                assert csv_rows(data) == brute_rows(dataset, loaded, index, segments)


class TestCsv:
    async def test_bom_header_and_no_formula(self, session: AsyncSession) -> None:
        world = await _world(session)
        rows = csv_rows(b"".join(await gather(csv_chunks(session, export_of(world.a, DAY)))))
        names = {row[1:3] for row in rows}
        assert ('\'=HYPERLINK("http://example.org")', "'-2+3") in names
        assert ("Zoë", "Ørsted") in names

    async def test_batches_are_sent_as_they_are_read(self, session: AsyncSession) -> None:
        world = await _world(session)
        chunks = await gather(csv_chunks(session, export_of(world.a, DAY), fetch_rows=2))
        # The header alone, then the five consenting visitors two at a time.
        assert csv_rows(chunks[0]) == []
        assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 2, 2, 1]


# ---------------------------------------------------------------- over HTTP


class _World:
    def __init__(self, staff: StaffWorld, lapsed: Member, new: list[Member]) -> None:
        self.staff = staff
        self.a = staff.institution_a
        self.lapsed = lapsed
        self.new = new


async def _world(session: AsyncSession) -> _World:
    """At A, on 12 May 2026: one lapsed consenting visitor (last here 400 days before), four new
    ones (two with names a spreadsheet would run), and one new visitor who did not consent."""
    staff = await create_staff_world(session)
    venue = await create_venue(session, institution=staff.institution_a)
    at = datetime(2026, 5, 12, 9, tzinfo=UTC)
    lapsed = await create_member(session, share_contact=True, last_name="Bakker")
    await create_checkin(session, venue=venue, member=lapsed, scanned_at=at - timedelta(days=400))
    new = [
        await create_member(
            session,
            first_name='=HYPERLINK("http://example.org")',
            last_name="-2+3",
            share_contact=True,
        ),
        await create_member(session, first_name="Zoë", last_name="Ørsted", share_contact=True),
        await create_member(session, last_name="Jansen", share_contact=True),
        await create_member(session, last_name="Visser", share_contact=True),
    ]
    silent = await create_member(session, last_name="Smit")
    for n, member in enumerate([*new, silent]):
        await create_checkin(
            session, venue=venue, member=member, scanned_at=at + timedelta(minutes=n)
        )
    await session.commit()
    return _World(staff, lapsed, new)


def _url(institution: Institution) -> str:
    return f"/v1/institutions/{institution.id}/reports/segments/contacts.csv"


async def _audit_rows(session: AsyncSession) -> list[tuple[dict[str, Any], uuid.UUID | None]]:
    """The committed contacts audit rows: what each says was taken, and by whom."""
    rows = (
        await session.execute(
            select(AuditEntry.changes, AuditEntry.actor_staff_id).where(
                AuditEntry.action == "report.contacts.exported"
            )
        )
    ).all()
    await session.commit()  # ends the read, so the next look sees what was committed since
    return [(changes, actor) for changes, actor in rows]


class TestApi:
    async def test_a_manager_downloads_the_segments_asked_for(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session)
        headers = world.staff.headers["manager_a"]
        every = await client.get(_url(world.a), params={"as_of": DAY.isoformat()}, headers=headers)
        assert every.status_code == 200, every.text
        assert every.headers["content-type"] == "text/csv; charset=utf-8"
        assert every.headers["content-disposition"] == (
            'attachment; filename="contacts-RIJKS-2026-05-12.csv"'
        )
        rows = csv_rows(every.content)
        # In the database's collation: where "Ø" sorts differs between PostgreSQL and SQLite.
        assert sorted(row[2] for row in rows) == ["'-2+3", "Bakker", "Jansen", "Visser", "Ørsted"]
        lapsed = await client.get(
            _url(world.a), params={"as_of": DAY.isoformat(), "segment": "lapsed"}, headers=headers
        )
        assert [(row[0], row[6]) for row in csv_rows(lapsed.content)] == [
            (str(world.lapsed.id), "lapsed")
        ]
        both = await client.get(
            _url(world.a),
            params=[("as_of", DAY.isoformat()), ("segment", "new"), ("segment", "lapsed")],
            headers=headers,
        )
        assert csv_rows(both.content) == rows
        audit = await _audit_rows(session)
        # How many members matched, counted before the first contact left.
        assert sorted(
            (changes["as_of"], tuple(changes["segments"]), changes["members"])
            for changes, _ in audit
        ) == [
            ("2026-05-12", ("lapsed",), 1),
            ("2026-05-12", ("lapsed", "new"), 5),
            ("2026-05-12", tuple(segment.value for segment in Segment), 5),
        ]
        assert {actor for _, actor in audit} == {world.staff.manager_a.id}

    @pytest.mark.parametrize(
        "params",
        [{"segment": "vip"}, {"segment": ""}, {"as_of": "yesterday"}],
    )
    async def test_a_bad_filter_is_a_problem_and_leaves_no_audit_row(
        self, session: AsyncSession, client: httpx.AsyncClient, params: dict[str, str]
    ) -> None:
        world = await _world(session)
        response = await client.get(
            _url(world.a), params=params, headers=world.staff.headers["manager_a"]
        )
        assert_problem(response, 422, "validation-error")
        assert await _audit_rows(session) == []

    @pytest.mark.parametrize(
        ("who", "whose", "status", "slug"),
        [
            ("staff_a", "a", 403, "forbidden"),
            ("manager_b", "a", 403, "forbidden"),
            ("manager_a", "b", 403, "forbidden"),
            (None, "a", 401, "invalid-token"),
        ],
    )
    async def test_only_managers_of_the_institution(
        self,
        session: AsyncSession,
        client: httpx.AsyncClient,
        who: str | None,
        whose: str,
        status: int,
        slug: str,
    ) -> None:
        world = await _world(session)
        institution = world.a if whose == "a" else world.staff.institution_b
        headers = world.staff.headers[who] if who else {}
        response = await client.get(_url(institution), headers=headers)
        assert_problem(response, status, slug)
        assert await _audit_rows(session) == []


class TestStreaming:
    async def test_the_audit_row_is_committed_before_the_first_chunk(
        self, session: AsyncSession, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        world = await _world(session)
        monkeypatch.setattr(contacts, "FETCH_ROWS", 2)
        seen: list[int] = []

        async def count_audit_rows() -> None:
            # Another connection than the app's: it sees only what is committed.
            seen.append(len(await _audit_rows(session)))

        messages = await asgi_get(
            app,
            _url(world.a),
            f"as_of={DAY.isoformat()}",
            world.staff.headers["manager_a"],
            count_audit_rows,
        )
        assert messages[0]["status"] == 200
        assert seen == [1]

    async def test_a_full_download_arrives_in_batches(
        self, session: AsyncSession, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        world = await _world(session)
        monkeypatch.setattr(contacts, "FETCH_ROWS", 2)
        messages = await asgi_get(
            app, _url(world.a), f"as_of={DAY.isoformat()}", world.staff.headers["manager_a"]
        )
        assert messages[0]["status"] == 200
        chunks = [m["body"] for m in messages[1:] if m["type"] == "http.response.body"]
        # The header, the five consenting visitors two at a time, and the end of the body.
        chunks.pop()
        assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 2, 2, 1]
        assert len(csv_rows(b"".join(chunks))) == 5

"""The visit export: rows equal the brute force, ids keyed per institution, CSV and Parquet agree,
the response is streamed, and only managers of the institution get it."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from membership.models import AuditEntry, CardStatus, Checkin, CheckinResult, Institution
from membership.settings import Settings
from reports.common import Period
from reports.export import (
    COLUMNS,
    ExportFormat,
    VisitExport,
    csv_chunks,
    institution_id_key,
    parquet_chunks,
)
from tests.factories import (
    create_card,
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.helpers import StaffWorld, asgi_get, assert_problem, create_staff_world
from tests.reports.dataset import Dataset, Loaded, age, band_of, datasets, load, visits_of

SECRET = "a test secret of at least thirty-two characters"
EXAMPLES = hypothesis_settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"export_id_secret": SecretStr(SECRET)})


def expected_id(institution: Institution, visitor_key: str, secret: str = SECRET) -> str:
    """The scheme of docs/reports.md, written out with the textbook hashlib and hmac APIs."""
    label = b"membership visitor-id v1 institution " + institution.id.bytes
    key = hmac.new(secret.encode(), label, hashlib.sha256).digest()
    return hashlib.blake2b(visitor_key.encode(), key=key, digest_size=8).hexdigest()


def export_of(
    institution: Institution,
    start: date,
    end: date,
    *,
    format: ExportFormat = ExportFormat.CSV,
    secret: str = SECRET,
) -> VisitExport:
    return VisitExport(
        institution_id=institution.id,
        institution_code=institution.code,
        timezone=institution.timezone,
        period=Period(start, end),
        format=format,
        id_key=institution_id_key(secret.encode(), institution.id),
    )


async def gather(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


def csv_rows(data: bytes) -> list[tuple[str, ...]]:
    assert data.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert tuple(lines[0]) == COLUMNS
    return [tuple(line) for line in lines[1:]]


def parquet_table(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def parquet_rows(data: bytes) -> list[tuple[str, ...]]:
    """The Parquet rows written as the CSV writes them: null is an empty cell."""
    return [
        (
            row["visitor_id"] or "",
            row["visited_at"].isoformat(),
            row["local_date"].isoformat(),
            row["local_time"].isoformat(),
            row["venue_code"],
            row["venue_name"],
            row["product_code"] or "",
            row["age_band"] or "",
            row["region"] or "",
        )
        for row in parquet_table(data).to_pylist()
    ]


async def export_csv(session: AsyncSession, export: VisitExport) -> list[tuple[str, ...]]:
    return csv_rows(b"".join(await gather(csv_chunks(session, export))))


async def export_parquet(session: AsyncSession, export: VisitExport) -> list[tuple[str, ...]]:
    return parquet_rows(b"".join(await gather(parquet_chunks(session, export))))


def brute_export(dataset: Dataset, loaded: Loaded, index: int) -> list[tuple[str, ...]]:
    """Each counted visit of the period, in time order, straight from the definitions."""
    institution, venue = loaded.institutions[index], loaded.venues[index]
    zone = ZoneInfo(dataset.zones[index])
    rows: list[tuple[str, ...]] = []
    for record in visits_of(dataset, index):
        local = record.at.astimezone(zone)
        visitor_key = loaded.members[record.visitor].visitor_key
        assert visitor_key is not None
        spec = dataset.members[record.visitor]
        rows.append(
            (
                expected_id(institution, visitor_key),
                local.isoformat(),
                record.local.isoformat(),
                local.strftime("%H:%M:%S"),
                venue.code,
                venue.name,
                "" if record.product is None else f"P{record.product}",
                "" if spec.birth is None else band_of(age(spec.birth, record.local)),
                (spec.postal or "")[:2],
            )
        )
    return rows


class TestAgainstBruteForce:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_every_row(self, session: AsyncSession, dataset: Dataset) -> None:
        loaded = await load(session, dataset)
        start, end = dataset.period
        for index, institution in enumerate(loaded.institutions):
            expected = brute_export(dataset, loaded, index)
            got = await export_csv(session, export_of(institution, start, end))
            assert got == expected
            parquet = export_of(institution, start, end, format=ExportFormat.PARQUET)
            assert await export_parquet(session, parquet) == got


async def _visit(
    session: AsyncSession,
    institution: Institution,
    at: datetime,
    **kwargs: Any,
) -> Checkin:
    venue = await create_venue(session, institution=institution)
    return await create_checkin(
        session, venue=venue, scanned_at=at, timezone=institution.timezone, **kwargs
    )


class TestLocalTime:
    @pytest.mark.parametrize(
        ("zone", "instant", "shown"),
        [
            ("Europe/Amsterdam", datetime(2026, 3, 31, 21, 30, tzinfo=UTC), "+02:00"),
            ("America/New_York", datetime(2026, 4, 1, 3, 30, tzinfo=UTC), "-04:00"),
        ],
    )
    async def test_half_past_eleven_local_is_on_that_local_day(
        self, session: AsyncSession, zone: str, instant: datetime, shown: str
    ) -> None:
        institution = await create_institution(session, timezone=zone)
        await _visit(session, institution, instant, member=await create_member(session))
        [row] = await export_csv(
            session, export_of(institution, date(2026, 3, 31), date(2026, 3, 31))
        )
        assert row[1:4] == (f"2026-03-31T23:30:00{shown}", "2026-03-31", "23:30:00")
        assert (
            await export_csv(session, export_of(institution, date(2026, 4, 1), date(2026, 4, 1)))
            == []
        )

    async def test_seconds_are_kept_and_fractions_dropped(self, session: AsyncSession) -> None:
        institution = await create_institution(session, timezone="Europe/Amsterdam")
        at = datetime(2026, 7, 1, 8, 15, 42, 987654, tzinfo=UTC)
        await _visit(session, institution, at, member=await create_member(session))
        [row] = await export_csv(
            session, export_of(institution, date(2026, 7, 1), date(2026, 7, 1))
        )
        assert row[1] == "2026-07-01T10:15:42+02:00"
        table = parquet_table(
            b"".join(
                await gather(
                    parquet_chunks(
                        session,
                        export_of(
                            institution,
                            date(2026, 7, 1),
                            date(2026, 7, 1),
                            format=ExportFormat.PARQUET,
                        ),
                    )
                )
            )
        )
        assert table.column("visited_at")[0].as_py() == at.replace(microsecond=0)
        assert table.column("local_time")[0].as_py() == time(10, 15, 42)


class TestVisitorIds:
    async def test_a_replaced_card_keeps_the_visitor_and_only_visits_count(
        self, session: AsyncSession
    ) -> None:
        institution = await create_institution(session)
        venue = await create_venue(session, institution=institution)
        product = await create_product(session)
        member = await create_member(session)
        membership = await create_membership(session, product=product, holders=[member])
        old = await create_card(
            session, member=member, membership=membership, status=CardStatus.REPLACED
        )
        new = await create_card(session, member=member, membership=membership, version=2)
        day = datetime(2026, 6, 1, 10, tzinfo=UTC)
        await create_checkin(session, venue=venue, member=member, card=old, scanned_at=day)
        second = day + timedelta(days=1)
        for at, result in (
            (second, CheckinResult.ADMITTED),
            (second + timedelta(minutes=5), CheckinResult.REFUSED),
            (second + timedelta(hours=2), CheckinResult.REENTRY),
        ):
            await create_checkin(
                session, venue=venue, member=member, card=new, scanned_at=at, result=result
            )
        await session.commit()
        rows = await export_csv(session, export_of(institution, date(2026, 6, 1), date(2026, 6, 2)))
        assert [row[2] for row in rows] == ["2026-06-01", "2026-06-02"]
        assert member.visitor_key is not None
        assert {row[0] for row in rows} == {expected_id(institution, member.visitor_key)}

    async def test_one_visitor_two_institutions_two_ids_stable_across_exports(
        self, session: AsyncSession
    ) -> None:
        a = await create_institution(session)
        b = await create_institution(session)
        member = await create_member(session)
        at = datetime(2026, 6, 1, 10, tzinfo=UTC)
        await _visit(session, a, at, member=member)
        await _visit(session, b, at + timedelta(hours=3), member=member)
        await session.commit()
        day = date(2026, 6, 1)
        [first] = await export_csv(session, export_of(a, day, day))
        [again] = await export_csv(session, export_of(a, date(2026, 5, 1), date(2026, 6, 30)))
        [at_b] = await export_csv(session, export_of(b, day, day))
        [other_secret] = await export_csv(session, export_of(a, day, day, secret="another" * 6))
        assert first[0] == again[0]
        assert len({first[0], at_b[0], other_secret[0]}) == 3
        assert all(len(row[0]) == 16 for row in (first, at_b, other_secret))

    async def test_an_erasure_changes_no_row(self, session: AsyncSession) -> None:
        """Age band and region are the visit's own, stored at scan time (rule 5)."""
        institution = await create_institution(session)
        member = await create_member(session, birth_date=date(2008, 6, 2), postal_code="3511 AA")
        for day in (1, 2):
            await _visit(
                session, institution, datetime(2026, 6, day, 10, tzinfo=UTC), member=member
            )
        await session.commit()
        export = export_of(institution, date(2026, 6, 1), date(2026, 6, 2))
        before = await export_csv(session, export)
        assert [row[7:] for row in before] == [("13-17", "35"), ("18-24", "35")]
        for checkin in await session.scalars(select(Checkin)):
            checkin.member_id = None
        member.birth_date, member.postal_code = None, None
        await session.commit()
        assert await export_csv(session, export) == before

    async def test_a_visit_without_visitor_key_has_an_empty_id(self, session: AsyncSession) -> None:
        institution = await create_institution(session)
        checkin = await _visit(
            session,
            institution,
            datetime(2026, 6, 1, 10, tzinfo=UTC),
            member=await create_member(session),
        )
        checkin.visitor_key = None
        await session.commit()
        day = date(2026, 6, 1)
        [row] = await export_csv(session, export_of(institution, day, day))
        assert row[0] == ""
        parquet = export_of(institution, day, day, format=ExportFormat.PARQUET)
        data = b"".join(await gather(parquet_chunks(session, parquet)))
        assert parquet_table(data).column("visitor_id").to_pylist() == [None]


class TestFiles:
    async def test_csv_is_safe_for_excel(self, session: AsyncSession) -> None:
        institution = await create_institution(session)
        venue = await create_venue(session, institution=institution, code="CAFE")
        venue.name = "Café 't Hoekje — ingang Noord"
        other = await create_venue(session, institution=institution, code="ZUID")
        other.name = '=HYPERLINK("http://example.org")'
        member = await create_member(session)
        at = datetime(2026, 6, 1, 10, tzinfo=UTC)
        await create_checkin(session, venue=venue, member=member, scanned_at=at)
        await create_checkin(
            session, venue=other, member=await create_member(session), scanned_at=at
        )
        await session.commit()
        rows = await export_csv(session, export_of(institution, at.date(), at.date()))
        assert sorted(row[5] for row in rows) == [
            '\'=HYPERLINK("http://example.org")',
            "Café 't Hoekje — ingang Noord",
        ]

    async def test_parquet_is_typed_and_written_in_row_groups(self, session: AsyncSession) -> None:
        institution = await create_institution(session, timezone="Europe/Amsterdam")
        venue = await create_venue(session, institution=institution)
        product = await create_product(session, code="ANNUAL")
        for n in range(7):
            await create_checkin(
                session,
                venue=venue,
                member=await create_member(session),
                product=product,
                scanned_at=datetime(2026, 6, 1, 9, tzinfo=UTC) + timedelta(minutes=n),
            )
        await session.commit()
        export = export_of(
            institution, date(2026, 6, 1), date(2026, 6, 1), format=ExportFormat.PARQUET
        )
        chunks = await gather(parquet_chunks(session, export, fetch_rows=2, row_group_rows=3))
        assert len(chunks) == 3  # each row group as soon as it is written, then the footer
        data = b"".join(chunks)
        metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
        assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [4, 3]
        schema = parquet_table(data).schema
        assert schema.field("visited_at").type == pa.timestamp("ms", tz="Europe/Amsterdam")
        assert schema.field("local_date").type == pa.date32()
        assert schema.field("local_time").type == pa.time32("ms")
        for name in ("venue_code", "venue_name", "product_code", "age_band", "region"):
            assert schema.field(name).type == pa.dictionary(pa.int32(), pa.string()), name
        assert schema.metadata[b"institution_code"] == institution.code.encode()
        assert schema.metadata[b"visitor_id_scheme"] == b"blake2b-64/v1"
        csv_export = export_of(institution, date(2026, 6, 1), date(2026, 6, 1))
        assert parquet_rows(data) == await export_csv(session, csv_export)

    async def test_an_empty_period_is_a_valid_file(self, session: AsyncSession) -> None:
        institution = await create_institution(session)
        day = date(2026, 6, 1)
        assert await export_csv(session, export_of(institution, day, day)) == []
        parquet = export_of(institution, day, day, format=ExportFormat.PARQUET)
        table = parquet_table(b"".join(await gather(parquet_chunks(session, parquet))))
        assert table.num_rows == 0
        assert table.column_names == list(COLUMNS)


# ---------------------------------------------------------------- over HTTP

MAY = {"start": "2026-05-01", "end": "2026-05-31"}


async def _world(session: AsyncSession, visits: int = 3) -> StaffWorld:
    world = await create_staff_world(session)
    venue = await create_venue(session, institution=world.institution_a)
    for n in range(visits):
        await create_checkin(
            session,
            venue=venue,
            member=await create_member(session),
            scanned_at=datetime(2026, 5, 12, 9, tzinfo=UTC) + timedelta(minutes=n),
        )
    await session.commit()
    return world


def _url(institution: Institution) -> str:
    return f"/v1/institutions/{institution.id}/reports/visits/export"


class TestApi:
    async def test_a_manager_downloads_csv_and_parquet_with_the_same_rows(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session)
        url = _url(world.institution_a)
        headers = world.headers["manager_a"]
        as_csv = await client.get(url, params=MAY, headers=headers)
        assert as_csv.status_code == 200, as_csv.text
        assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
        assert as_csv.headers["content-disposition"] == (
            'attachment; filename="visits-RIJKS-2026-05-01-2026-05-31.csv"'
        )
        rows = csv_rows(as_csv.content)
        assert len(rows) == 3
        as_parquet = await client.get(url, params={**MAY, "format": "parquet"}, headers=headers)
        assert as_parquet.status_code == 200, as_parquet.text
        assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
        assert as_parquet.headers["content-disposition"].endswith('-2026-05-31.parquet"')
        assert parquet_rows(as_parquet.content) == rows
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "report.visits.exported")
            )
        ).all()
        assert sorted(entry.changes["format"] for entry in audit) == ["csv", "parquet"]
        assert {entry.actor_staff_id for entry in audit} == {world.manager_a.id}

    async def test_the_operator_may_export(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session)
        response = await client.get(
            _url(world.institution_a), params=MAY, headers=world.headers["operator"]
        )
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        ("who", "whose", "status", "slug"),
        [
            ("manager_b", "a", 403, "forbidden"),
            ("manager_a", "b", 403, "forbidden"),
            ("staff_a", "a", 403, "forbidden"),
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
        institution = world.institution_a if whose == "a" else world.institution_b
        headers = world.headers[who] if who else {}
        response = await client.get(_url(institution), params=MAY, headers=headers)
        assert_problem(response, status, slug)

    @pytest.mark.parametrize(
        ("params", "slug"),
        [
            ({"start": "2026-05-31", "end": "2026-05-01"}, "invalid-period"),
            ({"start": "2020-01-01", "end": "2026-05-01"}, "invalid-period"),
            ({**MAY, "format": "xlsx"}, "validation-error"),
            ({"start": "2026-05-01"}, "validation-error"),
        ],
    )
    async def test_a_bad_request_is_a_problem_and_leaves_no_audit_row(
        self,
        session: AsyncSession,
        client: httpx.AsyncClient,
        params: dict[str, str],
        slug: str,
    ) -> None:
        world = await _world(session)
        response = await client.get(
            _url(world.institution_a), params=params, headers=world.headers["manager_a"]
        )
        assert_problem(response, 422, slug)
        assert (await session.scalars(select(AuditEntry.id))).all() == []

    async def test_an_unknown_institution_is_404(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        world = await _world(session)
        response = await client.get(
            f"/v1/institutions/{uuid.uuid4()}/reports/visits/export",
            params=MAY,
            headers=world.headers["operator"],
        )
        assert_problem(response, 404, "institution-not-found")

    async def test_without_a_secret_only_the_development_database_exports(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        world = await _world(session)
        app = create_app(settings.model_copy(update={"export_id_secret": None}))
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.get(
                    _url(world.institution_a), params=MAY, headers=world.headers["manager_a"]
                )
        finally:
            await app.state.engine.dispose()
        if settings.is_sqlite:
            assert response.status_code == 200, response.text
        else:
            assert_problem(response, 503, "export-secret-missing")


class TestStreaming:
    async def test_a_long_export_arrives_in_several_chunks(
        self, session: AsyncSession, app: FastAPI
    ) -> None:
        world = await create_staff_world(session)
        venue = await create_venue(session, institution=world.institution_a)
        start = datetime(2026, 5, 1, 7, tzinfo=UTC)
        rows = 12_000
        await session.execute(
            insert(Checkin),
            [
                {
                    "client_scan_id": f"bulk-{n}",
                    "institution_id": world.institution_a.id,
                    "venue_id": venue.id,
                    "visitor_key": f"{n:032x}",
                    "scanned_at": start + timedelta(seconds=n),
                    "received_at": start + timedelta(seconds=n),
                    "local_date": date(2026, 5, 1),
                    "result": CheckinResult.ADMITTED,
                    "reason": "ok",
                    "counted": True,
                }
                for n in range(rows)
            ],
        )
        await session.commit()
        messages = await asgi_get(
            app,
            _url(world.institution_a),
            "start=2026-05-01&end=2026-05-31",
            world.headers["manager_a"],
        )
        assert messages[0]["status"] == 200
        bodies = [m["body"] for m in messages[1:] if m["type"] == "http.response.body"]
        # The header, then one chunk per 5,000 rows, sent as they are read.
        assert len([body for body in bodies if body]) == 4
        exported = csv_rows(b"".join(bodies))
        assert len(exported) == rows
        assert len({row[0] for row in exported}) == rows

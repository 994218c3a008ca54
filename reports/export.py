"""The visit export: one institution's own counted visits, one row each, as CSV or Parquet.

Its marketing team continues in Excel, Power BI or pandas, so the rows carry a visitor id that is
stable within the institution but useless elsewhere: an HMAC of the check-in's pseudonymous
visitor key under a key that belongs to this institution alone (docs/reports.md, "Export").
Two institutions holding each other's files cannot join them, and the member behind an id
cannot be looked up from the export.

Periods of a large museum run to millions of rows, so nothing here holds the export: rows come
from a server-side cursor in batches, each batch is rendered and handed on, and the Parquet
writer's output is drained after every row group.
"""

from __future__ import annotations

import csv
import enum
import functools
import hmac
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership import audit
from membership.audit import Actor
from membership.errors import DomainError
from membership.models import Checkin, Product, Venue
from membership.settings import Settings
from reports.common import Period, counted_visits, get_institution
from reports.csv import BOM, spreadsheet_text

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# Rows fetched (and rendered) at a time, and rows per Parquet row group: both bound the memory
# of an export. A row group of this size is a few megabytes in Arrow and reads efficiently.
FETCH_ROWS = 5_000
ROW_GROUP_ROWS = 100_000

VISITOR_ID_HEX = 16
ID_SCHEME = "blake2b-64/v1"
_ID_KEY_LABEL = b"membership visitor-id v1 institution "
# Used only on SQLite, the embedded development database; ids made with it are not secret.
_DEVELOPMENT_SECRET = b"membership development export id secret: set MEMBERSHIP_EXPORT_ID_SECRET"

COLUMNS = (
    "visitor_id",
    "visited_at",
    "local_date",
    "local_time",
    "venue_code",
    "venue_name",
    "product_code",
    "age_band",
    "region",
)


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
}


class ExportSecretMissing(DomainError):
    code = "export-secret-missing"
    title = "The visit export needs MEMBERSHIP_EXPORT_ID_SECRET to be set"
    status = 503


def id_secret(settings: Settings) -> bytes:
    """The programme secret behind every visitor id.

    A production deployment (PostgreSQL) must set its own: with the development key anyone who
    has the source and a visitor key could recompute ids, and a later change of key would change
    every id the institutions already hold.
    """
    if settings.export_id_secret is not None:
        return settings.export_id_secret.get_secret_value().encode()
    if settings.is_sqlite:
        return _DEVELOPMENT_SECRET
    raise ExportSecretMissing(
        "Set MEMBERSHIP_EXPORT_ID_SECRET (at least 32 characters) once for this deployment."
    )


def institution_id_key(secret: bytes, institution_id: uuid.UUID) -> bytes:
    """The institution's own key (HMAC-SHA256 of the secret), so that no two share one."""
    return hmac.digest(secret, _ID_KEY_LABEL + institution_id.bytes, "sha256")


def visitor_id(key: bytes, visitor_key: str | None) -> str:
    """Keyed BLAKE2b, a MAC by design and one C call per row (HMAC costs about three times as
    much here); 64 bits keep collisions negligible for a programme's millions of visitors."""
    if visitor_key is None:
        return ""
    return blake2b(visitor_key.encode(), key=key, digest_size=VISITOR_ID_HEX // 2).hexdigest()


class Visit(NamedTuple):
    """One exported row; `visited_at` is on the institution's wall clock, to the second.

    Age band and region are those stored on the check-in at scan time, so an erasure or the
    retention cut of the member link changes no export (rule 5).
    """

    visitor_id: str
    visited_at: datetime
    local_date: date
    venue_code: str
    venue_name: str
    product_code: str | None
    age_band: str | None
    region: str | None


@dataclass(frozen=True, slots=True)
class VisitExport:
    """What one export covers, settled and audited while the request's transaction is open."""

    institution_id: uuid.UUID
    institution_code: str
    timezone: str
    period: Period
    format: ExportFormat
    id_key: bytes = field(repr=False)

    @property
    def filename(self) -> str:
        return (
            f"visits-{self.institution_code}-{self.period.start.isoformat()}-"
            f"{self.period.end.isoformat()}.{self.format.value}"
        )

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


async def start_export(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    period: Period,
    format: ExportFormat,
    secret: bytes,
    actor: Actor,
) -> VisitExport:
    """Check the institution and leave an audit row: row-level visit data is personal data."""
    institution = await get_institution(session, institution_id)
    await audit.record(
        session,
        actor=actor,
        action="report.visits.exported",
        entity_type="institution",
        entity_id=institution_id,
        institution_id=institution_id,
        changes={
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "format": format.value,
        },
    )
    return VisitExport(
        institution_id=institution.id,
        institution_code=institution.code,
        timezone=institution.timezone,
        period=period,
        format=format,
        id_key=institution_id_key(secret, institution.id),
    )


async def visit_batches(
    session: AsyncSession, export: VisitExport, *, fetch_rows: int = FETCH_ROWS
) -> AsyncIterator[list[Visit]]:
    """The export's rows in order, `fetch_rows` at a time from a server-side cursor."""
    # Ordered along ix_checkins_institution_id_local_date, so PostgreSQL sorts one day at a time
    # (incremental sort) instead of the whole period before the first row.
    query = (
        select(
            Checkin.visitor_key,
            Checkin.scanned_at,
            Checkin.local_date,
            Venue.code,
            Venue.name,
            Product.code,
            Checkin.age_band,
            Checkin.region,
        )
        .join(Venue, Venue.id == Checkin.venue_id)
        .outerjoin(Product, Product.id == Checkin.product_id)
        .where(counted_visits(export.period, export.institution_id))
        .order_by(Checkin.local_date, Checkin.scanned_at, Checkin.id)
        .execution_options(yield_per=fetch_rows)
    )
    zone = ZoneInfo(export.timezone)
    key = export.id_key
    result = await session.stream(query)
    try:
        async for partition in result.partitions():
            yield [
                Visit(
                    visitor_id(key, visitor_key),
                    scanned_at.replace(microsecond=0).astimezone(zone),
                    day,
                    venue_code,
                    venue_name,
                    product_code,
                    age_band,
                    region,
                )
                for (
                    visitor_key,
                    scanned_at,
                    day,
                    venue_code,
                    venue_name,
                    product_code,
                    age_band,
                    region,
                ) in partition
            ]
    finally:
        # A client that disconnects stops the stream early; the cursor must not outlive it.
        await result.close()


# The text columns hold few distinct values (venues, products, bands, regions), so their
# spreadsheet-safe form is computed once per value instead of once per row.
_few_values_text = functools.lru_cache(maxsize=4096)(spreadsheet_text)


def _csv_row(visit: Visit) -> tuple[str, ...]:
    text = _few_values_text
    return (
        visit.visitor_id,
        visit.visited_at.isoformat(),
        visit.local_date.isoformat(),
        visit.visited_at.time().isoformat(),
        text(visit.venue_code),
        text(visit.venue_name),
        text(visit.product_code),
        text(visit.age_band),
        text(visit.region),
    )


async def csv_chunks(
    session: AsyncSession, export: VisitExport, *, fetch_rows: int = FETCH_ROWS
) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a header and a BOM, one chunk per fetched batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield (BOM + buffer.getvalue()).encode()
    async for batch in visit_batches(session, export, fetch_rows=fetch_rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_csv_row(visit) for visit in batch)
        yield buffer.getvalue().encode()


def parquet_schema(export: VisitExport) -> pa.Schema:
    """Typed columns, so pandas and Power BI need no parsing: the few-valued text columns are
    dictionary-encoded (pandas reads them as categoricals), `visited_at` is an instant shown in
    the institution's time zone, `local_date` and `local_time` the wall clock there."""
    few_values = pa.dictionary(pa.int32(), pa.string())
    fields: list[pa.Field[Any]] = [
        pa.field("visitor_id", pa.string()),
        pa.field("visited_at", pa.timestamp("ms", tz=export.timezone), nullable=False),
        pa.field("local_date", pa.date32(), nullable=False),
        pa.field("local_time", pa.time32("ms"), nullable=False),
        pa.field("venue_code", few_values, nullable=False),
        pa.field("venue_name", few_values, nullable=False),
        pa.field("product_code", few_values),
        pa.field("age_band", few_values),
        pa.field("region", few_values),
    ]
    return pa.schema(
        fields,
        metadata={
            "institution_code": export.institution_code,
            "period_start": export.period.start.isoformat(),
            "period_end": export.period.end.isoformat(),
            "visitor_id_scheme": ID_SCHEME,
        },
    )


def _record_batch(batch: Sequence[Visit], schema: pa.Schema) -> pa.RecordBatch:
    def few(values: Sequence[str | None]) -> pa.DictionaryArray[Any, Any]:
        return pa.array(values, pa.string()).dictionary_encode()

    ids, moments, days, venue_codes, venue_names, products, bands, regions = zip(
        *batch, strict=True
    )
    return pa.RecordBatch.from_arrays(
        [
            # No visitor key (never the case for a visit counted at a door) is null, not "".
            pa.array([value or None for value in ids], pa.string()),
            pa.array(moments, schema.field("visited_at").type),
            pa.array(days, pa.date32()),
            pa.array([moment.time() for moment in moments], pa.time32("ms")),
            few(venue_codes),
            few(venue_names),
            few(products),
            few(bands),
            few(regions),
        ],
        schema=schema,
    )


class _Drain(io.RawIOBase):
    """A write-only file for ParquetWriter whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


async def parquet_chunks(
    session: AsyncSession,
    export: VisitExport,
    *,
    fetch_rows: int = FETCH_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> AsyncIterator[bytes]:
    """A Parquet file sent row group by row group; the footer (the index) comes last."""
    schema = parquet_schema(export)
    sink = _Drain()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="snappy")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        async for batch in visit_batches(session, export, fetch_rows=fetch_rows):
            pending.append(_record_batch(batch, schema))
            pending_rows += len(batch)
            if pending_rows >= row_group_rows:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
                pending.clear()
                pending_rows = 0
                yield sink.take()
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
    finally:
        writer.close()
    yield sink.take()


RENDERERS: dict[ExportFormat, Callable[[AsyncSession, VisitExport], AsyncIterator[bytes]]] = {
    ExportFormat.CSV: csv_chunks,
    ExportFormat.PARQUET: parquet_chunks,
}


async def stream_export(
    sessionmaker: async_sessionmaker[AsyncSession], export: VisitExport
) -> AsyncIterator[bytes]:
    """The export's bytes, read in a session of its own: the request's session is committed
    and closed before a streamed body is sent."""
    async with sessionmaker() as session:
        async for chunk in RENDERERS[export.format](session, export):
            yield chunk

"""The consenting-contacts export: who among an institution's visitors may be written to.

Only members with `share_contact` set and not erased, and only if they visited here: a consent
to share with institutions is not a licence to hand out the whole member list (rule 5).

A large museum has hundreds of thousands of such visitors, so, as the visit export does, nothing
here holds the export: rows come from a server-side cursor in batches and each batch is rendered
and handed on. The audit row is written while the request's transaction is still open, so it is
committed before the first contact leaves the server (docs/reports.md, "Contacts").
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership import audit
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.models import Member
from reports.common import analytic_memory, get_institution
from reports.csv import BOM, spreadsheet_text
from reports.segments import Segment, segment_rows

# Rows fetched and rendered at a time: bounds the memory of an export (a few megabytes).
FETCH_ROWS = 5_000

COLUMNS = (
    "member_id",
    "first_name",
    "last_name",
    "email",
    "language",
    "postal_code",
    "segment",
    "last_visit",
    "share_contact_at",
)


class ContactRow(NamedTuple):
    member_id: uuid.UUID
    first_name: str
    last_name: str
    email: str | None
    language: str
    postal_code: str | None
    segment: str
    last_visit: date
    share_contact_at: datetime | None


@dataclass(frozen=True, slots=True)
class ContactExport:
    """What one export covers, settled and audited while the request's transaction is open.

    `segments` is never empty: no filter means every segment, so the audit row says which
    visitors were taken in as many words.
    """

    institution_id: uuid.UUID
    institution_code: str
    as_of: date
    segments: tuple[Segment, ...]

    @property
    def filename(self) -> str:
        return f"contacts-{self.institution_code}-{self.as_of.isoformat()}.csv"


async def start_export(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    actor: Actor,
    as_of: date | None = None,
    segments: Collection[Segment] = (),
) -> ContactExport:
    """Check the institution, fix the reference day and leave an audit row: who took whose
    personal data, and when.

    The row must be committed before the first contact leaves, so it says what is known then:
    the reference day, the segments and how many members matched. The count is one more query
    (0.3-0.6 s for the largest institution of the national seed, where the first contacts take
    1.7 s; docs/reports.md, "Contacts"); the stream reads in a later transaction, so a consent
    given or withdrawn in between can make the rows sent differ from it by that one member.
    """
    institution = await get_institution(session, institution_id)
    export = ContactExport(
        institution_id=institution.id,
        institution_code=institution.code,
        as_of=as_of or local_date(utcnow(), institution.timezone),
        segments=tuple(segment for segment in Segment if not segments or segment in segments),
    )
    members = await count_contacts(session, export)
    await audit.record(
        session,
        actor=actor,
        action="report.contacts.exported",
        entity_type="institution",
        entity_id=institution_id,
        institution_id=institution_id,
        changes={
            "as_of": export.as_of.isoformat(),
            "segments": [segment.value for segment in export.segments],
            "members": members,
        },
    )
    return export


async def count_contacts(session: AsyncSession, export: ContactExport) -> int:
    """How many members the export holds. Without a segment filter PostgreSQL leaves out the
    members at risk, which only the segment needs, so this is a fraction of the export's
    query."""
    await analytic_memory(session)
    query = (await _contacts_query(session, export)).order_by(None).subquery()
    return await session.scalar(select(func.count()).select_from(query)) or 0


async def _contacts_query(session: AsyncSession, export: ContactExport) -> Select[Any]:
    """The consenting, not erased members of the population in the export's segments."""
    rows = await segment_rows(session, export.institution_id, export.as_of)
    query = (
        select(
            Member.id,
            Member.first_name,
            Member.last_name,
            Member.email,
            Member.language,
            Member.postal_code,
            rows.c.segment,
            rows.c.last_visit,
            Member.share_contact_at,
        )
        .select_from(rows)
        .join(Member, Member.id == rows.c.member_id)
        .where(Member.share_contact.is_(True), Member.erased_at.is_(None))
        .order_by(Member.last_name, Member.first_name, Member.id)
    )
    if len(export.segments) < len(Segment):
        query = query.where(rows.c.segment.in_([segment.value for segment in export.segments]))
    return query


async def contact_batches(
    session: AsyncSession, export: ContactExport, *, fetch_rows: int = FETCH_ROWS
) -> AsyncIterator[list[ContactRow]]:
    """The export's rows by last name, first name and member id, `fetch_rows` at a time from
    a server-side cursor."""
    await analytic_memory(session)
    query = (await _contacts_query(session, export)).execution_options(yield_per=fetch_rows)
    # Read through the session's connection, not the ORM: these are plain columns, and the
    # ORM's row handling cost 1.8 s of the largest institution's 190 744 rows.
    result = await (await session.connection()).stream(query)
    try:
        async for partition in result.partitions():
            yield [ContactRow._make(row) for row in partition]
    finally:
        # A client that disconnects stops the stream early; the cursor must not outlive it.
        await result.close()


def _csv_row(contact: ContactRow) -> tuple[str, ...]:
    """Every text a member typed made spreadsheet-safe: a name starting with "=" stays text."""
    text = spreadsheet_text
    return (
        str(contact.member_id),
        text(contact.first_name),
        text(contact.last_name),
        text(contact.email),
        text(contact.language),
        text(contact.postal_code),
        contact.segment,
        contact.last_visit.isoformat(),
        text(contact.share_contact_at),
    )


async def csv_chunks(
    session: AsyncSession, export: ContactExport, *, fetch_rows: int = FETCH_ROWS
) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM and a header, one chunk per fetched batch.

    The header goes out before the query runs, so the download starts at once rather than
    after the segments of a large population are worked out.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield (BOM + buffer.getvalue()).encode()
    async for batch in contact_batches(session, export, fetch_rows=fetch_rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_csv_row(contact) for contact in batch)
        yield buffer.getvalue().encode()


async def stream_export(
    sessionmaker: async_sessionmaker[AsyncSession], export: ContactExport
) -> AsyncIterator[bytes]:
    """The export's bytes, read in a session of its own: the request's session is committed
    and closed before a streamed body is sent."""
    async with sessionmaker() as session:
        async for chunk in csv_chunks(session, export, fetch_rows=FETCH_ROWS):
            yield chunk

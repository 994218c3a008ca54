"""Import a previous system's scans as counted visits, so reports start with the past.

The file is checked whole before anything is written, and written in one transaction: a bad
row is reported with its line number and nothing of a failed file is half-imported (rule 6).
Re-importing the same file is harmless: every row's client scan id is derived from the file's
SHA-256 and its line number. Imports run one at a time (a PostgreSQL advisory lock held to the
commit; SQLite serialises writers anyway), so two imports of one file, or two files naming the
same unknown holder, cannot both write: the second sees what the first committed.

Each row gets its holder's age band and region, and the day counters and visitor rows are
added to in the same transaction (membership.rollups), so reports read an import like live scans.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, String, Uuid, bindparam, column, func, insert, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit, card_numbers, demographics, rollups
from membership.errors import InvalidValue
from membership.models import (
    NO_PRODUCT,
    Card,
    CardStatus,
    Checkin,
    CheckinResult,
    Institution,
    Member,
    Membership,
    Product,
    Venue,
)
from membership.models.members import new_visitor_key

REQUIRED_COLUMNS = ("card_or_holder", "institution_code", "venue_code", "scanned_at")
OPTIONAL_COLUMNS = ("product_code",)
CHUNK = 1000
# Bound parameters per IN list: far below SQLite's and asyncpg's limits.
_LOOKUP_CHUNK = 500
_MAX_REFERENCE = 80
_HOLDER_PREFIX = "holder "
# Prefix + 32 hex digits (128 bits of the file's SHA-256) + ":" + line fits String(64).
_SCAN_ID_DIGITS = 32
_CHECKIN_COLUMNS = (
    "client_scan_id",
    "device_id",
    "institution_id",
    "venue_id",
    "card_id",
    "card_version",
    "member_id",
    "visitor_key",
    "product_id",
    "scanned_at",
    "received_at",
    "local_date",
    "result",
    "reason",
    "counted",
    "offline",
    "flagged",
    "imported",
    "age_band",
    "region",
)
# Any constant: every import takes the same lock, whatever its file.
_IMPORT_LOCK = 0x6D656D_696D7074


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


class ImportRejected(InvalidValue):
    """The file has bad rows; nothing was imported."""

    code = "import-rejected"
    title = "The file has bad rows; nothing was imported"

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} bad row(s)", errors=list(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    already_imported: int
    counted: int
    reentries: int
    holders_created: int
    cards_created: int


@dataclass(frozen=True)
class _Row:
    line: int
    card_number: str | None
    holder_ref: str
    institution: Institution
    venue_id: uuid.UUID
    product_id: uuid.UUID | None
    scanned_at: datetime
    local_date: date


@dataclass
class _Holder:
    member_id: uuid.UUID
    visitor_key: str | None
    card_id: uuid.UUID
    card_version: int
    product_id: uuid.UUID | None
    birth_date: date | None = None
    postal_code: str | None = None


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _card_number(reference: str) -> str | None:
    """A reference of 12 digits (separators allowed) is a card number; anything else a holder."""
    digits = reference.replace(" ", "").replace("-", "")
    if len(digits) == card_numbers.LENGTH and digits.isascii() and digits.isdigit():
        return card_numbers.normalise(reference)
    return None


async def import_checkins(
    session: AsyncSession, *, data: bytes, actor: audit.Actor, now: datetime
) -> ImportSummary:
    """Load a CSV of past scans (columns in docs/import.md) as counted visits and re-entries.

    Raises `ImportRejected` listing every bad row before anything is written. Never commits:
    the caller commits once, so the whole file is one transaction.
    """
    digest = hashlib.sha256(data).hexdigest()[:_SCAN_ID_DIGITS]
    rows = await _parse(session, data)
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_IMPORT_LOCK)))
    scan_ids = {row.line: f"import:{digest}:{row.line}" for row in rows}
    done = await _already_imported(session, digest)
    pending = [row for row in rows if scan_ids[row.line] not in done]
    holders, holders_created, cards_created = await _resolve_holders(session, pending)

    pending.sort(key=lambda row: (row.scanned_at, row.line))
    counted_keys = await _counted_visits(session, pending, holders)
    records: list[tuple[Any, ...]] = []
    counted = 0
    for row in pending:
        holder = holders[row.card_number or row.holder_ref]
        key = (holder.visitor_key, row.institution.id, row.local_date)
        # Rule 1: one counted visit per visitor, institution and local day; later ones re-enter.
        is_counted = key not in counted_keys
        counted_keys.add(key)
        counted += is_counted
        # In _CHECKIN_COLUMNS order: COPY takes tuples, and building dicts costs a third more.
        records.append(
            (
                scan_ids[row.line],
                None,
                row.institution.id,
                row.venue_id,
                holder.card_id,
                holder.card_version,
                holder.member_id,
                holder.visitor_key,
                row.product_id or holder.product_id,
                row.scanned_at,
                now,
                row.local_date,
                (CheckinResult.ADMITTED if is_counted else CheckinResult.REENTRY).value,
                "ok",
                is_counted,
                False,
                False,
                True,
                demographics.age_band(holder.birth_date, row.local_date),
                demographics.region(holder.postal_code),
            )
        )
    inserted, counted = await _insert_checkins(session, records, counted=counted)
    summary = ImportSummary(
        rows=len(rows),
        already_imported=len(rows) - len(pending),
        counted=counted,
        reentries=inserted - counted,
        holders_created=holders_created,
        cards_created=cards_created,
    )
    if inserted or holders_created:
        # It creates cards and visit history, so it leaves a trail; a harmless re-import does not.
        await audit.record(
            session,
            actor=actor,
            action="checkins.import",
            entity_type="checkin_import",
            entity_id=digest,
            changes=asdict(summary),
        )
    return summary


async def _parse(session: AsyncSession, data: bytes) -> list[_Row]:
    """Every row checked against the database's codes; all errors at once, with line numbers."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected([RowError(1, "the file is not UTF-8")]) from exc
    reader = csv.reader(io.StringIO(content, newline=""))
    header = [name.strip() for name in next(reader, [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        raise ImportRejected(
            [RowError(1, f"header must be {', '.join(REQUIRED_COLUMNS)}[, product_code]")]
        )
    raw_rows: list[tuple[int, dict[str, str]]] = []
    errors: list[RowError] = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            errors.append(RowError(reader.line_num, f"{len(fields)} fields, not {len(header)}"))
            continue
        raw_rows.append(
            (reader.line_num, {k: v.strip() for k, v in zip(header, fields, strict=True)})
        )

    institutions = {
        i.code: i
        for i in await session.scalars(
            select(Institution).where(
                Institution.code.in_({values["institution_code"] for _, values in raw_rows})
            )
        )
    }
    venues = {
        (venue.institution_id, venue.code): venue.id
        for venue in await session.scalars(
            select(Venue).where(Venue.institution_id.in_([i.id for i in institutions.values()]))
        )
    }
    product_codes = {values.get("product_code", "") for _, values in raw_rows} - {""}
    products = {
        product.code: product.id
        for product in await session.scalars(select(Product).where(Product.code.in_(product_codes)))
    }

    rows: list[_Row] = []
    for line, values in raw_rows:
        problems: list[str] = []
        reference = values["card_or_holder"]
        card_number: str | None = None
        if not reference or len(reference) > _MAX_REFERENCE:
            problems.append(f"card_or_holder must be 1 to {_MAX_REFERENCE} characters")
        else:
            try:
                card_number = _card_number(reference)
            except card_numbers.InvalidCardNumber:
                problems.append("card number fails its check digit")
        institution = institutions.get(values["institution_code"])
        venue_id = None
        if institution is None:
            problems.append(f"unknown institution_code {values['institution_code']!r}")
        else:
            venue_id = venues.get((institution.id, values["venue_code"]))
            if venue_id is None:
                problems.append(f"unknown venue_code {values['venue_code']!r}")
        product_code = values.get("product_code", "")
        product_id = products.get(product_code) if product_code else None
        if product_code and product_id is None:
            problems.append(f"unknown product_code {product_code!r}")
        try:
            scanned_at: datetime | None = datetime.fromisoformat(values["scanned_at"])
        except ValueError:
            scanned_at = None
            problems.append("scanned_at is not an ISO 8601 time")
        if problems or institution is None or venue_id is None or scanned_at is None:
            errors.append(RowError(line, "; ".join(problems)))
            continue
        zone = ZoneInfo(institution.timezone)
        if scanned_at.tzinfo is None:
            # A naive time is the institution's wall clock, as its old scanners showed it.
            scanned_at = scanned_at.replace(tzinfo=zone)
        rows.append(
            _Row(
                line=line,
                card_number=card_number,
                holder_ref=reference,
                institution=institution,
                venue_id=venue_id,
                product_id=product_id,
                scanned_at=scanned_at.astimezone(ZoneInfo("UTC")),
                local_date=scanned_at.astimezone(zone).date(),
            )
        )
    if errors:
        raise ImportRejected(sorted(errors, key=lambda error: error.line))
    return rows


async def _already_imported(session: AsyncSession, digest: str) -> set[str]:
    # Imported rows have no device, so the (device_id, client_scan_id) constraint cannot catch
    # a second import (NULLs differ): look the file's scan ids up instead.
    found = await session.scalars(
        select(Checkin.client_scan_id).where(
            Checkin.device_id.is_(None), Checkin.client_scan_id.like(f"import:{digest}:%")
        )
    )
    return set(found)


async def _resolve_holders(
    session: AsyncSession, rows: Sequence[_Row]
) -> tuple[dict[str, _Holder], int, int]:
    """Map every reference to a member and card, creating imported ones for unknown references.

    A card-number reference is kept as the imported card's number; any other reference is kept
    as the imported member's last name ("holder <ref>"), so the next file finds the same holder.
    """
    numbers = sorted({row.card_number for row in rows if row.card_number})
    refs = sorted({row.holder_ref for row in rows if row.card_number is None})
    holders: dict[str, _Holder] = {}
    for chunk in _chunks(numbers, _LOOKUP_CHUNK):
        result = await session.execute(
            select(
                Card.number,
                Card.id,
                Card.version,
                Member.id,
                Member.visitor_key,
                Member.birth_date,
                Member.postal_code,
                Membership,
            )
            .join(Member, Member.id == Card.member_id)
            .outerjoin(Membership, Membership.id == Card.membership_id)
            .where(Card.number.in_(chunk))
        )
        for number, card_id, version, member_id, visitor_key, birth, postal, membership in result:
            product_id = membership.product_id if membership is not None else None
            holders[number] = _Holder(
                member_id, visitor_key, card_id, version, product_id, birth, postal
            )
    for chunk in _chunks(refs, _LOOKUP_CHUNK):
        names = [_HOLDER_PREFIX + ref for ref in chunk]
        imported = await session.execute(
            select(Member.last_name, Member.id, Member.visitor_key, Card.id, Card.version)
            .join(Card, Card.member_id == Member.id)
            .where(Member.imported, Card.imported, Member.last_name.in_(names))
            .order_by(Card.version)
        )
        for last_name, member_id, visitor_key, card_id, version in imported:
            holders[last_name.removeprefix(_HOLDER_PREFIX)] = _Holder(
                member_id, visitor_key, card_id, version, None
            )

    first_scan: dict[str, datetime] = {}
    for row in rows:
        ref = row.card_number or row.holder_ref
        if ref not in holders:
            first_scan[ref] = min(first_scan.get(ref, row.scanned_at), row.scanned_at)
    new_numbers = await _free_numbers(
        session, sum(1 for ref in first_scan if not card_numbers.is_valid(ref))
    )
    members: list[dict[str, Any]] = []
    cards: list[dict[str, Any]] = []
    for ref, issued_at in first_scan.items():
        member_id, card_id, visitor_key = uuid.uuid4(), uuid.uuid4(), new_visitor_key()
        members.append(
            {
                "id": member_id,
                "first_name": "Imported",
                "last_name": _HOLDER_PREFIX + ref,
                "visitor_key": visitor_key,
                "imported": True,
            }
        )
        cards.append(
            {
                "id": card_id,
                "number": ref if card_numbers.is_valid(ref) else new_numbers.pop(),
                "version": 1,
                "status": CardStatus.EXPIRED,
                "member_id": member_id,
                "issued_at": issued_at,
                "imported": True,
            }
        )
        holders[ref] = _Holder(member_id, visitor_key, card_id, 1, None)
    for member_chunk in _chunks(members, CHUNK):
        await session.execute(insert(Member), member_chunk)
    for card_chunk in _chunks(cards, CHUNK):
        await session.execute(insert(Card), card_chunk)
    return holders, len(members), len(cards)


async def _free_numbers(session: AsyncSession, count: int) -> list[str]:
    """Fresh random numbers, none in use: a collision is rare but possible, so look them up."""
    numbers: set[str] = set()
    while len(numbers) < count:
        candidates = sorted(
            {card_numbers.generate() for _ in range(count - len(numbers))} - numbers
        )
        for chunk in _chunks(candidates, _LOOKUP_CHUNK):
            taken = set(await session.scalars(select(Card.number).where(Card.number.in_(chunk))))
            numbers.update(number for number in chunk if number not in taken)
    return sorted(numbers)


async def _counted_visits(
    session: AsyncSession, rows: Sequence[_Row], holders: dict[str, _Holder]
) -> set[tuple[str | None, uuid.UUID, date]]:
    """Visits already counted in the database on the file's days, which make a row a re-entry."""
    if not rows:
        return set()
    keys = sorted({holders[row.card_number or row.holder_ref].visitor_key or "" for row in rows})
    first = min(row.local_date for row in rows)
    last = max(row.local_date for row in rows)
    found: set[tuple[str | None, uuid.UUID, date]] = set()
    for chunk in _chunks(keys, _LOOKUP_CHUNK):
        result = await session.execute(
            select(Checkin.visitor_key, Checkin.institution_id, Checkin.local_date).where(
                Checkin.counted,
                Checkin.visitor_key.in_(chunk),
                Checkin.local_date.between(first, last),
            )
        )
        found.update((key, institution_id, day) for key, institution_id, day in result)
    return found


async def _insert_checkins(
    session: AsyncSession, records: list[tuple[Any, ...]], *, counted: int
) -> tuple[int, int]:
    """COPY into a staging table on PostgreSQL, chunked Core inserts elsewhere.

    Returns the rows inserted and how many of them count. On PostgreSQL the final INSERT ...
    ON CONFLICT DO NOTHING lets the partial unique index have the last word should a live scan
    count the same visit while the import runs; the counts are then those really inserted.
    """
    if not records:
        return 0, 0
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        zones = await _zones(session, {record[_COLUMN["institution_id"]] for record in records})
        for chunk in _chunks(records, CHUNK):
            rows = [dict(zip(_CHECKIN_COLUMNS, record, strict=True)) for record in chunk]
            await session.execute(insert(Checkin), rows)
            for row in rows:
                rollups.note(session, _counter_key(row, zones), 1)
                rollups.note_visit(session, Checkin(**row))
        return len(records), counted
    columns = ", ".join(_CHECKIN_COLUMNS)
    await session.execute(text("DROP TABLE IF EXISTS checkin_import"))
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE checkin_import ON COMMIT DROP AS "
            f"SELECT {columns} FROM checkins WITH NO DATA"
        )
    )
    await session.execute(text("DROP TABLE IF EXISTS visit_import"))
    await session.execute(
        text(
            "CREATE TEMPORARY TABLE visit_import ON COMMIT DROP AS "
            "SELECT institution_id, visitor_key, local_date, member_id FROM checkins WITH NO DATA"
        )
    )
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(
        "checkin_import",
        records=records,
        columns=list(_CHECKIN_COLUMNS),
    )
    # The counters get exactly the rows inserted, in the same statement; in key order, as the
    # check-in service writes them, so a concurrent batch cannot deadlock with the import.
    hour = "CAST(extract(hour FROM timezone(i.timezone, x.scanned_at)) AS INTEGER)"
    key = (
        f"x.institution_id, x.local_date, {hour}, COALESCE(x.product_id, :no_product), "
        "x.result, x.reason, x.counted"
    )
    inserted = await session.execute(
        text(
            f"WITH inserted AS (INSERT INTO checkins ({columns}) SELECT {columns} "
            f"FROM checkin_import ON CONFLICT DO NOTHING "
            f"RETURNING institution_id, local_date, scanned_at, product_id, result, reason, "
            f"counted, visitor_key, member_id), "
            f"visits AS (INSERT INTO visit_import SELECT institution_id, visitor_key, "
            f"local_date, member_id FROM inserted WHERE counted AND visitor_key IS NOT NULL), "
            f"counters AS (INSERT INTO institution_day_counts (institution_id, local_date, "
            f"hour, product_id, result, reason, counted, checkins) "
            f"SELECT {key}, count(*) FROM inserted x "
            f"JOIN institutions i ON i.id = x.institution_id GROUP BY {key} ORDER BY {key} "
            f"ON CONFLICT (institution_id, local_date, hour, product_id, result, reason, "
            f"counted) DO UPDATE SET checkins = institution_day_counts.checkins "
            f"+ excluded.checkins) "
            f"SELECT count(*), count(*) FILTER (WHERE counted) FROM inserted"
        ).bindparams(bindparam("no_product", NO_PRODUCT, type_=Uuid()))
    )
    total, inserted_counted = inserted.one()
    await session.execute(text("DROP TABLE checkin_import"))
    # The visitor rows take the visits really inserted; merged in SQL, as a door would.
    await rollups.merge_visits(session, _VISIT_IMPORT)
    await session.execute(text("DROP TABLE visit_import"))
    return int(total), int(inserted_counted)


_COLUMN = {name: index for index, name in enumerate(_CHECKIN_COLUMNS)}
_VISIT_IMPORT = table(
    "visit_import",
    column("institution_id", Uuid()),
    column("visitor_key", String()),
    column("local_date", Date()),
    column("member_id", Uuid()),
)


async def _zones(session: AsyncSession, institution_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    result = await session.execute(
        select(Institution.id, Institution.timezone).where(Institution.id.in_(institution_ids))
    )
    return dict(result.all())


def _counter_key(row: dict[str, Any], zones: dict[uuid.UUID, str]) -> rollups.CounterKey:
    return rollups.CounterKey(
        institution_id=row["institution_id"],
        local_date=row["local_date"],
        hour=row["scanned_at"].astimezone(ZoneInfo(zones[row["institution_id"]])).hour,
        product_id=row["product_id"] or NO_PRODUCT,
        result=row["result"],
        reason=row["reason"],
        counted=row["counted"],
    )

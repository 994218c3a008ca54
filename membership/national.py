"""National-scale data: a believable programme of 1.5 million members to measure the reports on.

`membership seed --scale national` (issue 8) fills an empty PostgreSQL database with 500
institutions in 40 Dutch cities, 1.5 million members and a year of about 12 million check-ins:

- popularity skewed like real museums (Zipf: a few institutions get a large share of the visits,
  a long tail gets a few thousand each), a few theatres with evening hours and gardens that peak
  in summer;
- members live in a city (postal code, so a region) and mostly visit institutions in or near it,
  with some day trips across the country and same-day visits to a neighbouring institution;
- seasonality, school and public holidays, weekday and hour patterns;
- re-entries later on the day of a counted visit, `already_used` refusals inside the
  anti-passback window, and refusals of expired, refunded, replaced and club cards;
- memberships with paid terms (purchases, renewals, refunds), duo cards with two holders, club
  cards accepted at one institution, auto-renew on or off (so some memberships are renewal at
  risk), lost cards replaced, consents to share contact details, and clearing terms that switch
  from the tariff model to the pool model half-way through the year.

Every row keeps the database rules: one counted visit per visitor, institution and local day; a
re-entry or an `already_used` refusal only after a counted visit that day; a visit only on a day
a paid term covers; one live card per holder; each check-in's age band and region as the
check-in service would have fixed them (membership.demographics).

The content is a pure function of (seed, factor, today): generation is vectorised with numpy and
holds no database state, so it is tested on its own. Loading streams PostgreSQL's binary COPY
format built straight from the arrays; the bulk tables are truncated and loaded with FREEZE, with
their keys, indexes and foreign keys dropped for the load and re-created from their own catalogue
definitions afterwards (so the schema ends exactly as the migrations made it, and every foreign
key is validated once, set-based). All of it is one transaction: a failed seed leaves nothing.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from faker.providers.person.nl_NL import Provider as DutchNames
from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.schema import CreateIndex

from membership import rollups
from membership.demographics import AGE_BANDS, REGION_PREFIX_LENGTH
from membership.door import Reason
from membership.errors import Conflict, DomainError
from membership.models import Base, CardStatus, CheckinResult, MembershipStatus

Array: TypeAlias = npt.NDArray[Any]

NATIONAL_MEMBERS = 1_500_000
NATIONAL_INSTITUTIONS = 500
TIMEZONE = "Europe/Amsterdam"
CURRENCY = "EUR"
VAT_BP = 900
GRACE_DAYS = 14
DEFAULT_SEED = 2024

# PostgreSQL's binary dates and timestamps count from this day; 10 957 days after 1970-01-01.
_EPOCH = date(2000, 1, 1)
_EPOCH_FROM_UNIX = 10_957
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000
_COPY_CHUNK = 200_000

# The tables loaded in bulk: truncated, loaded with FREEZE, their keys and indexes rebuilt once.
BULK_TABLES = (
    "members",
    "memberships",
    "membership_holders",
    "membership_terms",
    "payments",
    "cards",
    "checkins",
)
# A seed goes into an empty programme only; staff accounts made beforehand may stay.
_MUST_BE_EMPTY = (*BULK_TABLES, "institutions", "products", "clearing_policies")


class NationalScaleNeedsPostgres(DomainError):
    code = "national-scale-needs-postgresql"
    title = "The national-scale seed runs on PostgreSQL only"


class ProgrammeNotEmpty(Conflict):
    code = "programme-not-empty"
    title = "The database already holds a programme"


# name, postal-code prefix (two digits: the region), latitude, longitude, inhabitants (thousands)
CITIES: tuple[tuple[str, str, float, float, int], ...] = (
    ("Amsterdam", "10", 52.37, 4.90, 920),
    ("Rotterdam", "30", 51.92, 4.48, 660),
    ("Den Haag", "25", 52.08, 4.30, 560),
    ("Utrecht", "35", 52.09, 5.12, 370),
    ("Eindhoven", "56", 51.44, 5.47, 240),
    ("Groningen", "97", 53.22, 6.57, 240),
    ("Tilburg", "50", 51.56, 5.09, 225),
    ("Almere", "13", 52.37, 5.21, 220),
    ("Breda", "48", 51.59, 4.78, 185),
    ("Nijmegen", "65", 51.84, 5.86, 180),
    ("Apeldoorn", "73", 52.21, 5.97, 165),
    ("Arnhem", "68", 51.98, 5.91, 165),
    ("Haarlem", "20", 52.38, 4.64, 165),
    ("Enschede", "75", 52.22, 6.89, 160),
    ("Amersfoort", "38", 52.16, 5.39, 160),
    ("Zaandam", "15", 52.44, 4.83, 160),
    ("'s-Hertogenbosch", "52", 51.69, 5.30, 160),
    ("Zwolle", "80", 52.51, 6.09, 130),
    ("Leiden", "23", 52.16, 4.49, 125),
    ("Maastricht", "62", 50.85, 5.69, 120),
    ("Dordrecht", "33", 51.81, 4.67, 120),
    ("Zoetermeer", "27", 52.06, 4.49, 125),
    ("Ede", "67", 52.04, 5.66, 120),
    ("Leeuwarden", "89", 53.20, 5.80, 125),
    ("Alkmaar", "18", 52.63, 4.75, 110),
    ("Delft", "26", 52.01, 4.36, 105),
    ("Emmen", "78", 52.79, 6.90, 107),
    ("Venlo", "59", 51.37, 6.17, 102),
    ("Deventer", "74", 52.25, 6.16, 101),
    ("Helmond", "57", 51.48, 5.66, 93),
    ("Hilversum", "12", 52.23, 5.17, 92),
    ("Heerlen", "64", 50.89, 5.98, 87),
    ("Roermond", "60", 51.19, 5.99, 59),
    ("Gouda", "28", 52.01, 4.71, 74),
    ("Hoorn", "16", 52.64, 5.06, 74),
    ("Lelystad", "82", 52.52, 5.47, 80),
    ("Assen", "94", 52.99, 6.56, 69),
    ("Middelburg", "43", 51.50, 3.61, 49),
    ("Den Helder", "17", 52.96, 4.76, 56),
    ("Bergen op Zoom", "46", 51.49, 4.29, 68),
)

# Institution kinds, their share of the institutions, and the last minute of a re-entry.
_MUSEUM, _THEATRE, _GARDEN = 0, 1, 2
_KIND_SHARE = (0.85, 0.07, 0.08)
_CLOSING = (17 * 60 + 30, 23 * 60, 18 * 60)
_MUSEUM_TYPES = (
    "Museum",
    "Stedelijk Museum",
    "Historisch Museum",
    "Kunstmuseum",
    "Kunsthal",
    "Fotomuseum",
    "Natuurmuseum",
    "Scheepvaartmuseum",
    "Textielmuseum",
    "Museum voor Moderne Kunst",
    "Stadsarchief",
    "Prentenkabinet",
    "Kindermuseum",
    "Openluchtmuseum",
    "Spoorwegmuseum",
    "Verzetsmuseum",
    "Designmuseum",
    "Wetenschapsmuseum",
)
_ENTRANCES = (("MAIN", "Hoofdingang"), ("GROUP", "Groepsingang"), ("SOUTH", "Zuidingang"))
_THEATRE_TYPES = ("Schouwburg", "Concertzaal", "Stadstheater", "Muziekgebouw")
_GARDEN_TYPES = ("Hortus", "Kasteel", "Landgoed", "Buitenplaats")

# Relative visits per month, per weekday (Monday first), and per hour, by institution kind.
_MONTH_WEIGHT = (
    (0.75, 0.85, 0.85, 1.0, 1.0, 0.85, 1.15, 1.3, 0.85, 1.05, 0.9, 1.2),
    (1.1, 1.1, 1.1, 1.0, 0.9, 0.6, 0.1, 0.15, 1.0, 1.1, 1.2, 1.3),
    (0.25, 0.3, 0.6, 1.4, 1.7, 1.7, 1.8, 1.8, 1.3, 0.9, 0.4, 0.5),
)
_WEEKDAY_WEIGHT = (
    (0.35, 0.85, 0.95, 1.0, 1.15, 2.1, 2.4),
    (0.1, 0.6, 0.8, 1.3, 2.0, 2.2, 1.3),
    (0.6, 0.8, 0.9, 0.9, 1.0, 1.9, 2.3),
)
_HOLIDAY_FACTOR = (2.2, 1.2, 2.0)
_SCHOOL_HOLIDAY_FACTOR = (1.5, 1.0, 1.3)
_MUSEUM_HOURS = {10: 1.0, 11: 1.6, 12: 1.4, 13: 1.5, 14: 1.7, 15: 1.2, 16: 0.5}
_GARDEN_HOURS = {9: 0.5, 10: 1.2, 11: 1.5, 12: 1.2, 13: 1.4, 14: 1.5, 15: 1.1, 16: 0.6}

# Products: code, name, kind, price, minimum and maximum age, holders, share of memberships.
_PRODUCTS: tuple[tuple[str, str, str, int, int | None, int | None, int, float], ...] = (
    ("MK-ADULT", "Museumkaart volwassene", "annual", 7500, 18, None, 1, 0.72),
    ("MK-YOUTH", "Museumkaart jongeren", "youth", 3750, None, 17, 1, 0.13),
    ("MK-DUO", "Museumkaart duo", "duo", 13500, 18, None, 2, 0.11),
)
_CLUB_SHARE = 0.04
_CLUBS = 3  # club cards of the three busiest theatres (or institutions)
_CLUB_PRICE = 4500

_AUTO_RENEW_SHARE = 0.55
_MANUAL_RENEWAL_RATE = 0.72
_REFUND_SHARE = 0.005
_REPLACED_CARD_SHARE = 0.02
_OUTINGS_PER_YEAR = 10.0
_ENGAGEMENT_SHAPE = 0.8
_DUO_TOGETHER = 0.8
_SECOND_STOP = 0.13
_REENTRY = 0.05
_SHARED_CARD = 0.012
_OFFLINE = 0.015
_POSTAL_LETTERS = np.frombuffer(b"ABCDEFGHJKLMNPRTVWXZ", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_REFERENCE_ALPHABET = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", dtype=np.uint8)

_RESULTS = (CheckinResult.ADMITTED, CheckinResult.REENTRY, CheckinResult.REFUSED)
# (result, reason) of each kind of check-in the seed makes, by code.
_OUTCOMES: tuple[tuple[CheckinResult, Reason], ...] = (
    (CheckinResult.ADMITTED, Reason.OK),
    (CheckinResult.REENTRY, Reason.REENTRY),
    (CheckinResult.REFUSED, Reason.ALREADY_USED),
    (CheckinResult.REFUSED, Reason.EXPIRED),
    (CheckinResult.REFUSED, Reason.BLOCKED),
    (CheckinResult.REFUSED, Reason.REPLACED),
    (CheckinResult.REFUSED, Reason.NOT_ACCEPTED_HERE),
)
_ADMIT, _REENTER, _ALREADY_USED, _EXPIRED, _BLOCKED, _REPLACED, _NOT_HERE = range(7)
# Membership status codes of the generator, in this order.
_MEMBERSHIP_STATUSES = (
    MembershipStatus.ACTIVE,
    MembershipStatus.IN_GRACE,
    MembershipStatus.EXPIRED,
    MembershipStatus.REFUNDED,
)
_ACTIVE, _IN_GRACE, _LAPSED, _REFUNDED = range(4)


@dataclass(frozen=True)
class NationalSize:
    """How much to make; `factor` shrinks members and check-ins, institutions less (√factor).

    Institutions shrink more slowly so that a small run still has a network to report on.
    """

    institutions: int
    members: int

    @classmethod
    def for_factor(cls, factor: float) -> NationalSize:
        if not 0 < factor <= 1:
            raise ValueError("factor must be in (0, 1]")
        return cls(
            institutions=max(24, round(NATIONAL_INSTITUTIONS * factor**0.5)),
            members=max(400, round(NATIONAL_MEMBERS * factor)),
        )


@dataclass
class NationalSummary:
    """What the seed wrote, and how long each phase took (seconds)."""

    institutions: int = 0
    venues: int = 0
    products: int = 0
    members: int = 0
    memberships: int = 0
    terms: int = 0
    payments: int = 0
    cards: int = 0
    checkins: int = 0
    visits: int = 0
    reentries: int = 0
    refusals: int = 0
    first_day: date | None = None
    last_day: date | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)


# --- dates as day numbers since 2000-01-01, vectorised -------------------------------------


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _ymd(days: Array) -> tuple[Array, Array, Array]:
    stamps = (days + _EPOCH_FROM_UNIX).astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    year = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _from_ymd(year: Array, month: Array, day: Array) -> Array:
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    return months.astype("datetime64[D]").astype(np.int64) + day - 1 - _EPOCH_FROM_UNIX


def _add_years(days: Array, years: Array | int) -> Array:
    """The same calendar day `years` later; 29 February becomes 28 February, as products count."""
    year, month, day = _ymd(days)
    year = year + years
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    day = np.where((month == 2) & (day == 29) & ~leap, 28, day)
    return _from_ymd(year, month, day)


def _yyyymmdd(days: Array) -> Array:
    year, month, day = _ymd(days)
    result: Array = year * 10_000 + month * 100 + day
    return result


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm): the movable Dutch holidays hang off it."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _public_holidays(year: int) -> set[date]:
    easter = _easter(year)
    kings_day = date(year, 4, 27) if date(year, 4, 27).weekday() != 6 else date(year, 4, 26)
    return {
        date(year, 1, 1),
        easter,
        easter + timedelta(days=1),
        kings_day,
        date(year, 5, 5),
        easter + timedelta(days=39),
        easter + timedelta(days=49),
        easter + timedelta(days=50),
        date(year, 12, 25),
        date(year, 12, 26),
    }


def _school_holiday(day: date) -> bool:
    md = (day.month, day.day)
    return (
        md >= (12, 21)
        or md <= (1, 5)
        or (2, 15) <= md <= (2, 23)
        or (4, 26) <= md <= (5, 4)
        or (7, 12) <= md <= (8, 31)
        or (10, 18) <= md <= (10, 26)
    )


# --- small vectorised helpers ---------------------------------------------------------------


def _hex(raw: Array) -> Array:
    """Bytes (n, k) as lowercase hex (n, 2k), as `secrets.token_hex` writes them."""
    pairs = np.stack([_HEX[raw >> 4], _HEX[raw & 15]], axis=2)
    return pairs.reshape(len(raw), -1)


def _uuid4(rng: np.random.Generator, n: int) -> Array:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw


def _unique_draws(draw: Callable[[int], Array], n: int) -> Array:
    """`n` distinct values of `draw`, in draw order, so the result stays seed-deterministic."""
    values = draw(n + n // 50 + 16)
    _, first = np.unique(values, return_index=True)
    if len(first) < n:
        raise RuntimeError("too many collisions drawing unique values")
    return values[np.sort(first)[:n]]


def _pick(cumulative: Array, roll: Array) -> Array:
    """Weighted choice by inverse CDF: `cumulative` ends with 1, `roll` is uniform in [0, 1)."""
    return np.minimum(np.searchsorted(cumulative, roll, side="right"), len(cumulative) - 1)


def _pick_by_row(cumulative: Array, row: Array, roll: Array) -> Array:
    """`_pick` with a CDF per row of `cumulative`, chosen by `row`: one search for all rows.

    Row r's CDF is shifted into (r, r + 1], which makes the whole matrix one sorted array.
    """
    width = cumulative.shape[1]
    shifted = (cumulative + np.arange(len(cumulative))[:, None]).ravel()
    found = np.searchsorted(shifted, row + roll, side="right") - row * width
    result: Array = np.clip(found, 0, width - 1)
    return result


def _byte_rank(rows: Array) -> Array:
    """Rank of each row of bytes by its first eight (memcmp order, as uuid and hex text sort).

    Rows equal in those (one in 2**64 for random ones) get an arbitrary but fixed order.
    """
    order = np.argsort(np.ascontiguousarray(rows[:, :8]).view(">u8").ravel(), kind="stable")
    rank = np.empty(len(rows), np.int64)
    rank[order] = np.arange(len(rows))
    return rank


def _cdf(weights: Array) -> Array:
    cumulative = np.cumsum(weights, axis=-1, dtype=np.float64)
    return cumulative / cumulative[..., -1:]


def _card_numbers(rng: np.random.Generator, n: int) -> Array:
    """Random 12-digit numbers with a Luhn check digit, first digit never 0 (card_numbers)."""

    def draw(count: int) -> Array:
        digits = rng.integers(0, 10, size=(count, 11), dtype=np.int64)
        digits[:, 0] = rng.integers(1, 10, size=count)
        doubled = digits[:, 0::2] * 2
        total = np.where(doubled > 9, doubled - 9, doubled).sum(axis=1) + digits[:, 1::2].sum(1)
        check = (10 - total % 10) % 10
        powers = 10 ** np.arange(10, -1, -1, dtype=np.int64)
        numbers: Array = (digits @ powers) * 10 + check
        return numbers

    return _unique_draws(draw, n).astype("S12")


def _references(rng: np.random.Generator, n: int, prefix: str) -> Array:
    def draw(count: int) -> Array:
        symbols = rng.integers(0, len(_REFERENCE_ALPHABET), size=(count, 10), dtype=np.int64)
        return symbols @ (32 ** np.arange(10, dtype=np.int64))

    codes = _unique_draws(draw, n)
    symbols = (codes[:, None] // (32 ** np.arange(10, dtype=np.int64))) % 32
    body = _REFERENCE_ALPHABET[symbols]
    head = np.frombuffer((prefix + "-").encode(), dtype=np.uint8)
    return np.concatenate([np.broadcast_to(head, (n, len(head))), body], axis=1)


def _vocabulary(words: Sequence[str], spell: Callable[[str], str] = str) -> Array:
    """Words as a UTF-8 bytes array, to be indexed by code: text columns without Python loops."""
    return np.array([spell(word).encode() for word in words], dtype=np.bytes_)


def _ascii(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(char for char in plain.lower() if char.isalnum())


# --- PostgreSQL binary COPY, built from arrays ----------------------------------------------

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class _Field:
    """One column of a chunk in binary COPY form: each row's bytes, left-aligned.

    `lengths` gives the bytes each row uses (-1 for NULL); None means every row uses all of them.
    """

    data: Array
    lengths: Array | None = None


def _fixed(values: Array, dtype: str) -> _Field:
    column = np.ascontiguousarray(np.asarray(values).astype(dtype))
    return _Field(column.view(np.uint8).reshape(len(column), -1))


def _int8(values: Array) -> _Field:
    return _fixed(values, ">i8")


def _int4(values: Array) -> _Field:
    return _fixed(values, ">i4")


def _bool(values: Array) -> _Field:
    return _fixed(values, "u1")


def _date(days: Array) -> _Field:
    return _int4(days)


def _timestamp(microseconds: Array) -> _Field:
    return _int8(microseconds)


def _bytes(data: Array) -> _Field:
    return _Field(np.ascontiguousarray(data))


def _text(values: Array) -> _Field:
    """A bytes array (dtype S): each value as long as it is, without numpy's padding."""
    column = np.ascontiguousarray(values)
    return _Field(
        column.view(np.uint8).reshape(len(column), -1),
        np.strings.str_len(column).astype(np.int32),
    )


def _labels(codes: Array, labels: Sequence[str]) -> _Field:
    """Text from a small vocabulary; code -1 is NULL."""
    vocabulary = np.array([label.encode() for label in labels], dtype=np.bytes_)
    field_ = _text(vocabulary[np.maximum(codes, 0)])
    assert field_.lengths is not None
    return _Field(field_.data, np.where(codes < 0, -1, field_.lengths).astype(np.int32))


def _nullable(field_: _Field, null: Array) -> _Field:
    width = field_.data.shape[1]
    lengths = np.full(len(null), width, np.int32) if field_.lengths is None else field_.lengths
    return _Field(field_.data, np.where(null, -1, lengths).astype(np.int32))


def _null(n: int) -> _Field:
    return _Field(np.zeros((n, 0), np.uint8), np.full(n, -1, np.int32))


def _encode(fields: Sequence[_Field]) -> list[bytes]:
    """Rows of the binary COPY format: field count, then length and bytes of each field.

    Rows whose variable fields have the same lengths share one layout, so each such group is a
    plain matrix written out in one piece. Rows leave grouped, which is no order COPY minds.
    """
    n = len(fields[0].data)
    lengths = np.stack(
        [np.full(n, f.data.shape[1], np.int32) if f.lengths is None else f.lengths for f in fields],
        axis=1,
    )
    variable = [i for i, f in enumerate(fields) if f.lengths is not None]
    groups = [np.arange(n)]
    if variable:
        # One integer per layout (lengths in base `base`); 2**62 leaves room for the sum.
        base = int(lengths.max()) + 2
        if base ** len(variable) < 2**62:
            layout = np.zeros(n, np.int64)
            for column in variable:
                layout = layout * base + lengths[:, column] + 1
        else:
            layout = np.unique(lengths[:, variable], axis=0, return_inverse=True)[1].ravel()
        order = np.argsort(layout, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(layout[order])) + 1)
    count = np.frombuffer(len(fields).to_bytes(2, "big"), np.uint8)
    out: list[bytes] = []
    for rows in groups:
        blocks: list[Array] = [np.broadcast_to(count, (len(rows), 2))]
        for field_, length in zip(fields, lengths[rows[0]].tolist(), strict=True):
            header = np.frombuffer(length.to_bytes(4, "big", signed=True), np.uint8)
            blocks.append(np.broadcast_to(header, (len(rows), 4)))
            if length > 0:
                blocks.append(field_.data[rows, :length])
        out.append(np.concatenate(blocks, axis=1).tobytes())
    return out


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    rows: int
    fields: Callable[[slice], list[_Field]]

    def encoded(self, chunk: slice) -> list[bytes]:
        return _encode(self.fields(chunk))

    def chunks(self) -> list[slice]:
        return [
            slice(start, min(start + _COPY_CHUNK, self.rows))
            for start in range(0, self.rows, _COPY_CHUNK)
        ]


async def _copy_stream(table: _Table) -> AsyncIterator[bytes]:
    """The table as binary COPY data; the next chunk is encoded in a thread while one is sent."""
    yield _COPY_HEADER
    pending: asyncio.Future[list[bytes]] | None = None
    try:
        for chunk in table.chunks():
            encoding = asyncio.ensure_future(asyncio.to_thread(table.encoded, chunk))
            if pending is not None:
                for part in await pending:
                    yield part
            pending = encoding
        if pending is not None:
            for part in await pending:
                yield part
            pending = None
    finally:
        if pending is not None:
            pending.cancel()
    yield _COPY_TRAILER


# --- the programme, generated ---------------------------------------------------------------


@dataclass(frozen=True)
class _ScanDetails:
    venue: Array
    offline: Array
    received: Array
    scan_id: Array
    card: Array
    age_band: Array


@dataclass
class Programme:
    """The generated rows as COPY-ready tables, and what they hold."""

    tables: list[_Table]
    summary: NationalSummary


def generate(
    *, today: date, factor: float = 1.0, seed: int = DEFAULT_SEED, programme_code: str = "MK"
) -> Programme:
    """The whole programme for the 365 local days before `today`; no I/O, so testable alone."""
    generator = _Generator(
        today=today, size=NationalSize.for_factor(factor), seed=seed, programme_code=programme_code
    )
    return generator.build()


class _Generator:
    """Draws every column in a fixed order from one seeded generator, so a seed is a dataset."""

    def __init__(self, *, today: date, size: NationalSize, seed: int, programme_code: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.age_band_lows = np.array([low for low, _ in AGE_BANDS])
        self.size = size
        self.programme_code = programme_code
        self.today = today
        self.today_n = _day_number(today)
        self.first_day = today - timedelta(days=365)
        self.first_n = _day_number(self.first_day)
        self.pool_from = (self.first_day + timedelta(days=190)).replace(day=1)
        # UTC offsets at noon of every local day a payment or scan can fall on.
        zone = ZoneInfo(TIMEZONE)
        self.offset_base = self.first_n - 4 * 366
        span = [_EPOCH + timedelta(days=n) for n in range(self.offset_base, self.today_n + 400)]
        self.offset_us = np.array(
            [
                int(
                    (
                        zone.utcoffset(datetime(d.year, d.month, d.day, 12)) or timedelta()
                    ).total_seconds()
                )
                * 1_000_000
                for d in span
            ],
            dtype=np.int64,
        )
        window = [self.first_day + timedelta(days=n) for n in range(365)]
        holidays = _public_holidays(self.first_day.year) | _public_holidays(today.year)
        weights = np.array(
            [
                [
                    _MONTH_WEIGHT[kind][d.month - 1]
                    * _WEEKDAY_WEIGHT[kind][d.weekday()]
                    * (_HOLIDAY_FACTOR[kind] if d in holidays else 1.0)
                    * (_SCHOOL_HOLIDAY_FACTOR[kind] if _school_holiday(d) else 1.0)
                    for d in window
                ]
                for kind in range(3)
            ]
        )
        # Per kind, the share of the year's visits before each window day (366 points).
        self.day_cdf = np.concatenate([np.zeros((3, 1)), _cdf(weights)], axis=1)
        self.weekday = np.array([d.weekday() for d in window])
        self.window_yyyymmdd = _yyyymmdd(np.arange(self.first_n, self.today_n))

    def _utc_us(self, days: Array, minutes: Array) -> Array:
        """Microseconds since 2000 (UTC) of a wall-clock minute on a local day."""
        local = days * _US_PER_DAY + np.round(minutes * _US_PER_MINUTE).astype(np.int64)
        result: Array = local - self.offset_us[days - self.offset_base]
        return result

    def build(self) -> Programme:
        self.build_holders()
        self.build_checkins()
        return Programme(tables=_tables(self), summary=self.summary())

    def build_holders(self) -> None:
        """Everything but the check-ins: institutions, products, members and their cards."""
        self._institutions()
        self._products()
        self._memberships()
        self._members()
        self._terms()
        self._cards()

    def build_checkins(self) -> None:
        """The check-ins, after `build_holders`; the rows of the other tables do not wait for it."""
        self._checkins()

    def summary(self) -> NationalSummary:
        visits = int((self.c_outcome == _ADMIT).sum())
        return NationalSummary(
            institutions=self.size.institutions,
            venues=len(self.venue_ids),
            products=len(self.product_codes),
            members=len(self.m_ids),
            memberships=len(self.ms_ids),
            terms=len(self.term_ids),
            payments=len(self.payment_ids),
            cards=len(self.card_ids),
            checkins=len(self.c_member),
            visits=visits,
            reentries=int((self.c_outcome == _REENTER).sum()),
            refusals=int((self.c_outcome >= _ALREADY_USED).sum()),
            first_day=self.first_day,
            last_day=self.today - timedelta(days=1),
        )

    # -- institutions and products -------------------------------------------------------

    def _institutions(self) -> None:
        rng, n = self.rng, self.size.institutions
        population = np.array([city[4] for city in CITIES], dtype=np.float64)
        share = population**0.85 / (population**0.85).sum() * n
        per_city = np.floor(share).astype(np.int64)
        per_city[np.argsort(-(share - per_city), kind="stable")[: n - per_city.sum()]] += 1
        city = np.repeat(np.arange(len(CITIES)), per_city)
        # Fame: the big cities hold the famous museums, but a small town can have a star too.
        fame = rng.gumbel(size=n) + 0.9 * np.log(population[city])
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(-fame, kind="stable")] = np.arange(n)
        kind = _pick(_cdf(np.array(_KIND_SHARE)), rng.random(n))
        kind[rank < 8] = _MUSEUM
        admission = np.round((900 + 1500 * (1 - rank / n) + rng.normal(0, 250, n)) / 50) * 50
        admission = np.clip(admission, 600, 2750).astype(np.int64)
        tariff = np.round(admission * rng.uniform(0.38, 0.5, n) / 5).astype(np.int64) * 5
        raise_ = 25 * rng.integers(1, 4, n)
        joined = _day_number(date(2015, 1, 1)) + rng.integers(0, self.first_n - 400 - 5479, n)
        venue_count = np.where(
            rank < 20, 3, _pick(_cdf(np.array([0.7, 0.22, 0.08])), rng.random(n)) + 1
        )
        codes: list[str] = []
        names: list[str] = []
        seen: dict[str, int] = {}
        for index in range(n):
            city_name = CITIES[city[index]][0]
            prefix = _ascii(city_name).upper()[:3]
            seen[prefix] = seen.get(prefix, 0) + 1
            number = seen[prefix] - 1
            codes.append(f"{prefix}-{number + 1:03d}")
            types = (_MUSEUM_TYPES, _THEATRE_TYPES, _GARDEN_TYPES)[kind[index]]
            again = number // len(types)
            names.append(
                f"{types[number % len(types)]} {city_name}" + (f" {again + 1}" if again else "")
            )
        self.i_ids = _uuid4(rng, n)
        self.i_codes, self.i_names, self.i_city, self.i_kind = codes, names, city, kind
        self.i_weight = (rank + 1.0) ** -0.95
        self.i_admission, self.i_tariff, self.i_raise, self.i_joined = (
            admission,
            tariff,
            raise_,
            joined,
        )
        self.i_venue_first = np.concatenate([[0], np.cumsum(venue_count)[:-1]])
        self.i_venue_count = venue_count
        self.venue_institution = np.repeat(np.arange(n), venue_count)
        self.venue_slot = (
            np.arange(len(self.venue_institution)) - self.i_venue_first[self.venue_institution]
        )
        self.venue_ids = _uuid4(rng, len(self.venue_institution))
        self.device_ids = _uuid4(rng, len(self.venue_institution))
        self.tariff_ids = _uuid4(rng, 2 * n)
        self.policy_ids = _uuid4(rng, 2)
        # Where a member of each city goes: popularity times nearness, plus day trips.
        lat = np.array([c[2] for c in CITIES])
        lon = np.array([c[3] for c in CITIES])
        dy = (lat[:, None] - lat[None, :]) * 111.0
        dx = (lon[:, None] - lon[None, :]) * 111.0 * np.cos(np.radians(52.2))
        distance = np.hypot(dx, dy)[:, city]
        self.home_cdf = _cdf(self.i_weight[None, :] * (0.03 + np.exp(-distance / 20.0)))
        # The second stop of a day out: another institution in the same city.
        self.same_city_cdf = _cdf(self.i_weight[None, :] * (city[None, :] == city[:, None]))

    def _products(self) -> None:
        theatres = np.flatnonzero(self.i_kind == _THEATRE)
        theatres = theatres[np.argsort(-self.i_weight[theatres], kind="stable")]
        others = np.flatnonzero(self.i_kind != _THEATRE)
        others = others[np.argsort(-self.i_weight[others], kind="stable")]
        clubs = np.concatenate([theatres, others])[:_CLUBS]
        self.product_codes = [p[0] for p in _PRODUCTS] + [f"CLUB-{self.i_codes[c]}" for c in clubs]
        self.product_names = [p[1] for p in _PRODUCTS] + [
            f"Clubkaart {self.i_names[c]}" for c in clubs
        ]
        self.product_kinds = [p[2] for p in _PRODUCTS] + ["club"] * len(clubs)
        self.product_prices = np.array([p[3] for p in _PRODUCTS] + [_CLUB_PRICE] * len(clubs))
        self.product_ages = [(p[4], p[5]) for p in _PRODUCTS] + [(16, None)] * len(clubs)
        self.product_holders = np.array([p[6] for p in _PRODUCTS] + [1] * len(clubs))
        self.product_club = np.concatenate([np.full(len(_PRODUCTS), -1), clubs])
        self.product_ids = _uuid4(self.rng, len(self.product_codes))

    # -- memberships, members, terms, cards ----------------------------------------------

    def _memberships(self) -> None:
        rng = self.rng
        shares = [p[7] for p in _PRODUCTS] + [_CLUB_SHARE / _CLUBS] * _CLUBS
        holders = np.array(shares) @ self.product_holders
        n = round(self.size.members / holders)
        product = _pick(_cdf(np.array(shares)), rng.random(n))
        first = self.today_n - rng.integers(1, 3 * 365 + 1, n)
        auto_renew = rng.random(n) < _AUTO_RENEW_SHARE
        covering = np.ones(n, np.int64)
        for terms in range(1, 5):
            covering = np.where(_add_years(first, terms) <= self.today_n, terms + 1, covering)
        chosen = np.minimum(covering, rng.geometric(1 - _MANUAL_RENEWAL_RATE, n))
        n_terms = np.where(auto_renew, covering, chosen)
        last_start = _add_years(first, n_terms - 1)
        last_end = _add_years(first, n_terms)
        refunded = (rng.random(n) < _REFUND_SHARE) & (last_start >= self.first_n)
        status = np.select(
            [refunded, last_end > self.today_n, last_end + GRACE_DAYS > self.today_n],
            [_REFUNDED, _ACTIVE, _IN_GRACE],
            _LAPSED,
        )
        self.ms_ids = _uuid4(rng, n)
        self.ms_product, self.ms_auto_renew, self.ms_status = product, auto_renew, status
        self.ms_first, self.ms_terms, self.ms_last_start = first, n_terms, last_start
        self.ms_refunded = refunded
        # Days a paid term covers (a refunded term gave no visits: it was withdrawn at once).
        self.ms_covered_until = np.where(refunded, last_start, last_end)
        self.ms_city = _pick(
            _cdf(np.array([c[4] for c in CITIES], dtype=np.float64)), rng.random(n)
        )
        self.ms_holders = self.product_holders[product]
        self.ms_member_first = np.concatenate([[0], np.cumsum(self.ms_holders)[:-1]])
        # A first purchase is paid up to three days before its first day, in the daytime.
        self.ms_paid_at = self._utc_us(first - rng.integers(0, 4, n), rng.uniform(480, 1380, n))

    def _members(self) -> None:
        rng = self.rng
        membership = np.repeat(np.arange(len(self.ms_ids)), self.ms_holders)
        n = len(membership)
        product = self.ms_product[membership]
        female, male = DutchNames.first_names_female, DutchNames.first_names_male
        first_names = (*female, *male)
        first = np.where(
            rng.random(n) < 0.56,
            rng.integers(0, len(female), n),
            len(female) + rng.integers(0, len(male), n),
        )
        last = rng.integers(0, len(DutchNames.last_names), n)
        # A duo is a household: the second holder shares the first one's surname and address.
        second = np.flatnonzero(np.arange(n) != self.ms_member_first[membership])
        last[second] = last[second - 1]
        domains = np.array([b"@example.nl", b"@example.com", b"@example.org"])
        emails = np.strings.add(
            np.strings.add(
                np.strings.add(_vocabulary(first_names, _ascii)[first], b"."),
                _vocabulary(DutchNames.last_names, _ascii)[last],
            ),
            np.strings.add((np.arange(n) + 1).astype(np.bytes_), domains[rng.integers(0, 3, n)]),
        )
        # Card holders are older than the country: a peak at 60-70, another with young families.
        adult_age = np.where(
            rng.random(n) < 0.55, rng.normal(63, 10, n), rng.normal(38, 9, n)
        ).clip(18.2, 94)
        youth_age = rng.uniform(4.5, 17.9, n)
        age = np.where(np.array(self.product_kinds)[product] == "youth", youth_age, adult_age)
        birth = self.today_n - np.round(age * 365.25).astype(np.int64)
        unknown_birth = rng.random(n) < 0.03
        city_prefix = np.array([c[1].encode() for c in CITIES])[self.ms_city[membership]]
        digits = (rng.integers(0, 100, n)).astype("S2")
        digits = np.strings.zfill(digits, 2)
        letters = _POSTAL_LETTERS[rng.integers(0, len(_POSTAL_LETTERS), (n, 2))]
        postal = np.strings.add(
            np.strings.add(city_prefix, digits),
            np.strings.add(b" ", letters.copy().view("S2").ravel()),
        )
        postal[second] = postal[second - 1]
        created = self.ms_paid_at[membership] + rng.integers(60, 600, n) * 1_000_000
        self.m_membership, self.m_product, self.m_created = membership, product, created
        self.m_ids = _uuid4(rng, n)
        self.m_first = _vocabulary(first_names)[first]
        self.m_last = _vocabulary(DutchNames.last_names)[last]
        self.m_email = emails
        self.m_birth, self.m_birth_unknown = birth, unknown_birth
        self.m_birth_yyyymmdd = _yyyymmdd(birth)
        self.m_postal = postal
        self.m_language = np.where(rng.random(n) < 0.06, 1, 0)
        self.m_visitor_key = _hex(rng.integers(0, 256, (n, 16), dtype=np.uint8))
        self.m_marketing = rng.random(n) < 0.35
        self.m_share = rng.random(n) < 0.3
        now_us = self._utc_us(np.array([self.today_n]), np.zeros(1))[0]
        consent = created + rng.integers(0, 30 * 24 * 3600, n) * 1_000_000
        self.m_consent_at = np.minimum(consent, now_us - 1_000_000)

    def _terms(self) -> None:
        rng = self.rng
        membership = np.repeat(np.arange(len(self.ms_ids)), self.ms_terms)
        n = len(membership)
        number = np.arange(n) - np.concatenate([[0], np.cumsum(self.ms_terms)[:-1]])[membership]
        starts = _add_years(self.ms_first[membership], number)
        ends = _add_years(self.ms_first[membership], number + 1)
        refunded = self.ms_refunded[membership] & (number == self.ms_terms[membership] - 1)
        # Renewals: auto-renew is charged the day before; by hand, up to a month before.
        auto = self.ms_auto_renew[membership]
        renew_day = starts - np.where(auto, 1, rng.integers(1, 31, n))
        renew_minute = np.where(auto, 360.0, rng.uniform(480, 1380, n))
        paid_at = np.where(
            number == 0,
            self.ms_paid_at[membership],
            self._utc_us(renew_day, renew_minute),
        )
        amount = self.product_prices[self.ms_product[membership]]
        refund_of = np.flatnonzero(refunded)
        refund_day = np.minimum(
            starts[refund_of] + rng.integers(1, 15, len(refund_of)), self.today_n - 1
        )
        refund_at = self._utc_us(refund_day, rng.uniform(540, 1020, len(refund_of)))
        self.term_ids = _uuid4(rng, n)
        self.t_membership, self.t_number, self.t_starts, self.t_ends = (
            membership,
            number,
            starts,
            ends,
        )
        self.t_refunded = refunded
        self.payment_ids = _uuid4(rng, n + len(refund_of))
        self.p_references = _references(rng, n + len(refund_of), self.programme_code)
        self.p_paid_at = np.concatenate([paid_at, np.maximum(refund_at, paid_at[refund_of] + 1)])
        self.p_amount = np.concatenate([amount, amount[refund_of]])
        self.p_membership = np.concatenate([membership, membership[refund_of]])
        self.p_refund_of = refund_of
        self.ms_refund_day = np.full(len(self.ms_ids), -1)
        self.ms_refund_day[membership[refund_of]] = refund_day

    def _cards(self) -> None:
        rng = self.rng
        n = len(self.m_ids)
        membership = self.m_membership
        status_of_membership = np.array(
            [CardStatus.ACTIVE, CardStatus.ACTIVE, CardStatus.EXPIRED, CardStatus.BLOCKED]
        )
        current_status = status_of_membership[self.ms_status[membership]]
        # Lost cards replaced during the year: the old card stays on the visits made with it.
        start = np.maximum(self.ms_first[membership], self.first_n)
        stop = np.minimum(self.ms_covered_until[membership], self.today_n)
        replaced = (rng.random(n) < _REPLACED_CARD_SHARE) & (stop - start > 2)
        replaced_day = np.where(
            replaced, start + 1 + (rng.random(n) * np.maximum(stop - start - 2, 1)).astype(int), -1
        )
        old = np.flatnonzero(replaced)
        replaced_at = self._utc_us(replaced_day[old], rng.uniform(600, 1000, len(old)))
        issued = self.m_created + 120_000_000
        self.card_ids = _uuid4(rng, n + len(old))
        self.card_numbers = _card_numbers(rng, n + len(old))
        self.card_member = np.concatenate([np.arange(n), old])
        self.card_status = np.concatenate([current_status, np.full(len(old), "replaced")])
        self.card_issued = np.concatenate([issued.copy(), issued[old]])
        self.card_issued[old] = replaced_at
        changed = np.full(n + len(old), -1, np.int64)
        changed[n:] = replaced_at
        blocked = np.flatnonzero(current_status == CardStatus.BLOCKED)
        changed[blocked] = self._utc_us(
            self.ms_refund_day[membership[blocked]], np.full(len(blocked), 1020.0)
        )
        self.card_changed = changed
        self.card_replaced_by = np.concatenate([np.full(n, -1), old])
        self.card_old = np.full(n, -1)
        self.card_old[old] = n + np.arange(len(old))
        self.m_replaced_day = replaced_day

    # -- check-ins ------------------------------------------------------------------------

    def _days(self, kind: Array, low: Array, high: Array) -> Array:
        """A window day index in [low, high) for each row, by its institution kind's season."""
        below, above = self.day_cdf[kind, low], self.day_cdf[kind, high]
        value = below + self.rng.random(len(kind)) * (above - below)
        # The CDF has a leading 0, so the entry found is one past the day.
        result: Array = np.clip(_pick_by_row(self.day_cdf, kind, value) - 1, low, high - 1)
        return result

    def _minutes(self, institution: Array, day: Array) -> Array:
        """Arrival on the wall clock: museum day hours, gardens a little earlier, evening shows."""
        rng = self.rng
        n = len(institution)
        kind = self.i_kind[institution]
        minutes = np.empty(n)
        for k, hours in ((_MUSEUM, _MUSEUM_HOURS), (_GARDEN, _GARDEN_HOURS)):
            rows = np.flatnonzero(kind == k)
            hour = np.array(list(hours))[
                _pick(_cdf(np.array(list(hours.values()))), rng.random(len(rows)))
            ]
            minutes[rows] = hour * 60 + rng.uniform(0, 60, len(rows))
        rows = np.flatnonzero(kind == _THEATRE)
        matinee = self.weekday[day[rows]] == 6
        minutes[rows] = np.where(matinee, 13.5 * 60, 19 * 60) + rng.uniform(0, 75, len(rows))
        return minutes

    def _home_pick(self, city: Array) -> Array:
        """An institution for each row, drawn for the row's home city."""
        return _pick_by_row(self.home_cdf, city, self.rng.random(len(city)))

    def _checkins(self) -> None:
        rng = self.rng
        self._institution_rank = _byte_rank(self.i_ids)
        self._visitor_rank = _byte_rank(self.m_visitor_key)
        # Outings per membership over the days its terms cover in the window.
        low = np.clip(self.ms_first, self.first_n, self.today_n) - self.first_n
        high = np.clip(self.ms_covered_until, self.first_n, self.today_n) - self.first_n
        engagement = rng.gamma(_ENGAGEMENT_SHAPE, 1 / _ENGAGEMENT_SHAPE, len(self.ms_ids))
        youth = np.array(self.product_kinds)[self.ms_product] == "youth"
        expected = _OUTINGS_PER_YEAR * engagement * np.where(youth, 0.55, 1.0) * (high - low) / 365
        outing_ms = np.repeat(np.arange(len(self.ms_ids)), rng.poisson(expected))
        club = self.product_club[self.ms_product[outing_ms]]
        place = np.where(club >= 0, club, self._home_pick(self.ms_city[outing_ms]))
        day = self._days(self.i_kind[place], low[outing_ms], high[outing_ms])
        minute = self._minutes(place, day)
        # A second stop the same day, in the same city, some hours after the first.
        stop = np.flatnonzero((club < 0) & (self.i_kind[place] != _THEATRE))
        stop = stop[rng.random(len(stop)) < _SECOND_STOP]
        second_city = self.i_city[place[stop]]
        second_place = _pick_by_row(self.same_city_cdf, second_city, rng.random(len(stop)))
        second_minute = minute[stop] + rng.uniform(80, 190, len(stop))
        evening = self.i_kind[second_place] == _THEATRE
        second_minute[evening] = 19 * 60 + rng.uniform(0, 75, int(evening.sum()))
        keep = second_minute < _CLOSING[_MUSEUM] - 30
        visit_ms = np.concatenate([outing_ms, outing_ms[stop][keep]])
        visit_place = np.concatenate([place, second_place[keep]])
        visit_day = np.concatenate([day, day[stop][keep]])
        visit_minute = np.concatenate([minute, second_minute[keep]])
        # Duo holders mostly come together; otherwise one of the two comes alone.
        holders = self.ms_holders[visit_ms]
        together = (holders == 2) & (rng.random(len(visit_ms)) < _DUO_TOGETHER)
        alone_holder = (rng.random(len(visit_ms)) * holders).astype(np.int64)
        repeat = np.where(together, 2, 1)
        row = np.repeat(np.arange(len(visit_ms)), repeat)
        offset = np.arange(len(row)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        holder = np.where(together[row], offset, alone_holder[row])
        member = self.ms_member_first[visit_ms[row]] + holder
        place, day = visit_place[row], visit_day[row]
        minute = visit_minute[row] + offset * rng.uniform(0.05, 0.8, len(row))
        # One counted visit per visitor, institution and local day: the earliest scan counts.
        # The storage order (below) sorts by exactly these, then by time, so one sort serves.
        layout = self._layout(member, place, day, minute)
        order = np.argsort(layout)
        visit_key = layout[order] >> 17
        first_of_key = np.ones(len(order), bool)
        first_of_key[1:] = visit_key[1:] != visit_key[:-1]
        counted = order[first_of_key]
        member, place, day, minute = member[counted], place[counted], day[counted], minute[counted]
        kind = self.i_kind[place]
        # Re-entries after a break, and cards handed back over the barrier within the window.
        again = np.flatnonzero((kind != _THEATRE) & (rng.random(len(member)) < _REENTRY))
        again_minute = minute[again] + rng.uniform(30, 150, len(again))
        inside = again_minute < np.array(_CLOSING)[kind[again]]
        again, again_minute = again[inside], again_minute[inside]
        shared = np.flatnonzero(rng.random(len(member)) < _SHARED_CARD)
        shared_minute = minute[shared] + rng.uniform(0.5, 14, len(shared))
        parts = [
            (member, place, day, minute, _ADMIT),
            (member[again], place[again], day[again], again_minute, _REENTER),
            (member[shared], place[shared], day[shared], shared_minute, _ALREADY_USED),
            *self._refusals(),
        ]
        all_member = np.concatenate([p[0] for p in parts])
        all_place = np.concatenate([p[1] for p in parts])
        all_day = np.concatenate([p[2] for p in parts])
        all_minute = np.concatenate([p[3] for p in parts])
        outcome = np.concatenate([np.full(len(p[0]), p[4], np.int8) for p in parts])
        absolute_day = all_day + self.first_n
        scanned = self._utc_us(absolute_day, all_minute)
        # The counted visits come sorted; a stable sort (a merge) slots the rest in cheaply.
        order = np.argsort(self._layout(all_member, all_place, all_day, all_minute), kind="stable")
        self.c_member = all_member[order]
        self.c_institution = all_place[order]
        self.c_day = absolute_day[order]
        self.c_scanned = scanned[order]
        self.c_outcome = outcome[order]

    def _layout(self, member: Array, place: Array, day: Array, minute: Array) -> Array:
        """The storage order: institution, day, visitor (as PostgreSQL orders those keys), time.

        The reports read one institution's days (few pages each), and the index builds that
        lead with these columns get their input already sorted, which their sort checks first.
        The key is unique per visitor, institution and day above its low 17 bits (the second).
        """
        key: Array = (
            (self._institution_rank[place] * 512 + day) * (1 << 21) + self._visitor_rank[member]
        ) * (1 << 17) + (minute * 60).astype(np.int64)
        return key

    def scan_details(self, s: slice) -> _ScanDetails:
        """Columns of a chunk of check-ins that nothing else depends on.

        Drawn per chunk from a generator seeded by (seed, first row), so they are computed in
        the COPY threads, overlapping the load, and stay deterministic.
        """
        rng = np.random.default_rng([self.seed, s.start or 0])
        member, institution, day = self.c_member[s], self.c_institution[s], self.c_day[s]
        n = len(member)
        venue_count = self.i_venue_count[institution]
        side = 1 + (rng.random(n) * np.maximum(venue_count - 1, 1)).astype(np.int64)
        main = (venue_count == 1) | (rng.random(n) < 0.75)
        offline = rng.random(n) < _OFFLINE
        delay = np.where(
            offline,
            rng.integers(5 * 60_000_000, 240 * 60_000_000, n),
            rng.integers(120_000, 1_500_000, n),
        )
        old_card = self.card_old[member]
        with_old = (old_card >= 0) & (
            (day < self.m_replaced_day[member]) | (self.c_outcome[s] == _REPLACED)
        )
        birth = self.m_birth_yyyymmdd[member]
        age = (self.window_yyyymmdd[day - self.first_n] - birth) // 10_000
        band = np.searchsorted(self.age_band_lows, age, side="right") - 1
        return _ScanDetails(
            venue=self.i_venue_first[institution] + np.where(main, 0, side),
            offline=offline,
            received=self.c_scanned[s] + delay,
            scan_id=_hex(rng.integers(0, 256, (n, 16), dtype=np.uint8)),
            card=np.where(with_old, old_card, member),
            age_band=np.where(self.m_birth_unknown[member] | (age < 0), -1, band),
        )

    def _refusals(self) -> list[tuple[Array, Array, Array, Array, int]]:
        """Refused scans that stand alone: lapsed, refunded, replaced and club-only cards."""
        rng = self.rng
        parts: list[tuple[Array, Array, Array, Array, int]] = []
        n_ms = len(self.ms_ids)
        holder = self.ms_member_first
        # Expired: a member tries the old card after the grace days are over.
        lapsed_from = np.maximum(self.ms_covered_until + GRACE_DAYS, self.first_n)
        trying = (
            (self.ms_status == _LAPSED) & (lapsed_from < self.today_n) & (rng.random(n_ms) < 0.25)
        )
        # Blocked: the card of a refunded membership.
        blocked_from = np.maximum(self.ms_refund_day + 1, self.first_n)
        blocked = (
            (self.ms_status == _REFUNDED) & (blocked_from < self.today_n) & (rng.random(n_ms) < 0.3)
        )
        for chosen, start, outcome in (
            (trying, lapsed_from, _EXPIRED),
            (blocked, blocked_from, _BLOCKED),
        ):
            ms = np.flatnonzero(chosen)
            club = self.product_club[self.ms_product[ms]]
            place = np.where(club >= 0, club, self._home_pick(self.ms_city[ms]))
            day = self._days(self.i_kind[place], start[ms] - self.first_n, np.full(len(ms), 365))
            parts.append((holder[ms], place, day, self._minutes(place, day), outcome))
        # Replaced: the lost card turns up again and is scanned.
        members = np.flatnonzero(
            (self.card_old >= 0)
            & (
                self.m_replaced_day + 1
                < np.minimum(self.ms_covered_until[self.m_membership], self.today_n)
            )
        )
        members = members[rng.random(len(members)) < 0.25]
        stop = np.minimum(self.ms_covered_until[self.m_membership[members]], self.today_n)
        place = self._home_pick(self.ms_city[self.m_membership[members]])
        day = self._days(
            self.i_kind[place], self.m_replaced_day[members] + 1 - self.first_n, stop - self.first_n
        )
        parts.append((members, place, day, self._minutes(place, day), _REPLACED))
        # Not accepted here: a club card shown at another institution.
        club_ms = np.flatnonzero(
            (self.product_club[self.ms_product] >= 0) & (rng.random(n_ms) < 0.08)
        )
        low = np.clip(self.ms_first[club_ms], self.first_n, self.today_n) - self.first_n
        high = np.clip(self.ms_covered_until[club_ms], self.first_n, self.today_n) - self.first_n
        place = self._home_pick(self.ms_city[club_ms])
        keep = (high > low) & (place != self.product_club[self.ms_product[club_ms]])
        club_ms, low, high, place = club_ms[keep], low[keep], high[keep], place[keep]
        day = self._days(self.i_kind[place], low, high)
        parts.append((holder[club_ms], place, day, self._minutes(place, day), _NOT_HERE))
        return parts


# --- the rows, table by table ---------------------------------------------------------------


def _constant(value: bytes, n: int) -> _Field:
    return _Field(np.broadcast_to(np.frombuffer(value, np.uint8), (n, len(value))))


def _tables(g: _Generator, *, checkins_built: bool = True) -> list[_Table]:
    """Each table's columns as COPY fields, computed chunk by chunk from the generator's arrays.

    Without `checkins_built`, the check-ins are left out (the generator is still drawing them).
    """
    n_inst = g.size.institutions
    policy_days = np.array([_day_number(date(2015, 1, 1)), _day_number(g.pool_from)])
    tariff_change = _day_number((g.first_day + timedelta(days=100)).replace(day=1))
    n_terms = len(g.term_ids)
    n_members = len(g.m_ids)
    statuses = [status.value for status in _MEMBERSHIP_STATUSES]
    outcome_result = np.array([_RESULTS.index(result) for result, _ in _OUTCOMES])
    reasons = [reason.value for _, reason in _OUTCOMES]
    clubs = np.flatnonzero(g.product_club >= 0)

    def institutions(s: slice) -> list[_Field]:
        index = np.arange(n_inst)[s]
        n = len(index)
        return [
            _bytes(g.i_ids[s]),
            _text(np.array([g.i_codes[i].encode() for i in index])),
            _text(np.array([g.i_names[i].encode() for i in index])),
            _text(np.array([CITIES[g.i_city[i]][0].encode() for i in index])),
            _constant(TIMEZONE.encode(), n),
            _int4(np.full(n, 15)),
            _date(g.i_joined[s]),
            _bool(np.ones(n)),
        ]

    def tariffs(s: slice) -> list[_Field]:
        row = np.arange(2 * n_inst)[s]
        institution, later = row // 2, row % 2 == 1
        return [
            _bytes(g.tariff_ids[s]),
            _bytes(g.i_ids[institution]),
            _date(np.where(later, tariff_change, g.i_joined[institution])),
            _int4(g.i_tariff[institution] + np.where(later, g.i_raise[institution], 0)),
            _int4(g.i_admission[institution] + np.where(later, 100, 0)),
            _constant(CURRENCY.encode(), len(row)),
        ]

    def venues(s: slice) -> list[_Field]:
        slot = g.venue_slot[s]
        return [
            _bytes(g.venue_ids[s]),
            _bytes(g.i_ids[g.venue_institution[s]]),
            _labels(slot, [code for code, _ in _ENTRANCES]),
            _labels(slot, [name for _, name in _ENTRANCES]),
            _bool(np.ones(len(slot))),
        ]

    def devices(s: slice) -> list[_Field]:
        slot = g.venue_slot[s]
        return [
            _bytes(g.device_ids[s]),
            _bytes(g.venue_ids[s]),
            _labels(slot, [f"Scanner {name.lower()}" for _, name in _ENTRANCES]),
        ]

    def products(s: slice) -> list[_Field]:
        index = np.arange(len(g.product_codes))[s]
        n = len(index)
        ages = np.array([g.product_ages[i] for i in index], dtype=float)
        holders = g.product_holders[s]
        club = g.product_club[s] >= 0
        return [
            _bytes(g.product_ids[s]),
            _text(np.array([g.product_codes[i].encode() for i in index])),
            _text(np.array([g.product_names[i].encode() for i in index])),
            _text(np.array([g.product_kinds[i].encode() for i in index])),
            _int4(g.product_prices[s]),
            _constant(CURRENCY.encode(), n),
            _int4(np.full(n, VAT_BP)),
            _int4(np.full(n, 12)),
            _nullable(_int4(np.nan_to_num(ages[:, 0])), np.isnan(ages[:, 0])),
            _nullable(_int4(np.nan_to_num(ages[:, 1])), np.isnan(ages[:, 1])),
            _int4(holders),
            _int4(holders),
            _bool(np.ones(n)),
            _int4(np.full(n, GRACE_DAYS)),
            _bool(~club),
            _bool(np.ones(n)),
        ]

    def product_institutions(s: slice) -> list[_Field]:
        return [_bytes(g.product_ids[clubs[s]]), _bytes(g.i_ids[g.product_club[clubs[s]]])]

    def policies(s: slice) -> list[_Field]:
        pool = np.arange(2)[s] == 1
        return [
            _bytes(g.policy_ids[s]),
            _date(policy_days[s]),
            _labels(pool.astype(int), ["tariff", "pool"]),
            _int4(np.where(pool, 7000, 0)),
            _int4(np.where(pool, 4000, 0)),
        ]

    def members(s: slice) -> list[_Field]:
        n = len(g.m_ids[s])
        marketing, share = g.m_marketing[s], g.m_share[s]
        return [
            _bytes(g.m_ids[s]),
            _text(g.m_first[s]),
            _text(g.m_last[s]),
            _text(g.m_email[s]),
            _nullable(_date(g.m_birth[s]), g.m_birth_unknown[s]),
            _text(g.m_postal[s]),
            _labels(g.m_language[s], ["nl", "en"]),
            _bytes(g.m_visitor_key[s]),
            _bool(marketing),
            _nullable(_timestamp(g.m_consent_at[s]), ~marketing),
            _bool(share),
            _nullable(_timestamp(g.m_consent_at[s]), ~share),
            _bool(np.zeros(n)),
            _timestamp(g.m_created[s]),
            _timestamp(g.m_created[s]),
        ]

    def memberships(s: slice) -> list[_Field]:
        return [
            _bytes(g.ms_ids[s]),
            _bytes(g.product_ids[g.ms_product[s]]),
            _labels(g.ms_status[s], statuses),
            _bool(g.ms_auto_renew[s]),
            _timestamp(g.ms_paid_at[s]),
            _timestamp(g.ms_paid_at[s]),
        ]

    def holders(s: slice) -> list[_Field]:
        return [_bytes(g.ms_ids[g.m_membership[s]]), _bytes(g.m_ids[s])]

    def terms(s: slice) -> list[_Field]:
        return [
            _bytes(g.term_ids[s]),
            _bytes(g.ms_ids[g.t_membership[s]]),
            _date(g.t_starts[s]),
            _date(g.t_ends[s]),
            _labels((g.t_number[s] > 0).astype(int), ["purchase", "renewal"]),
            _labels(g.t_refunded[s].astype(int), ["active", "refunded"]),
            _bytes(g.payment_ids[s]),
            _timestamp(g.p_paid_at[s]),
        ]

    def payments(s: slice) -> list[_Field]:
        row = np.arange(len(g.payment_ids))[s]
        refund = row >= n_terms
        term = np.where(refund, 0, row)
        kind = np.where(refund, 2, np.where(g.t_number[term] > 0, 1, 0))
        refunded_term = ~refund & g.t_refunded[term]
        refund_of = g.p_refund_of[np.maximum(row - n_terms, 0)]
        n = len(row)
        return [
            _bytes(g.payment_ids[s]),
            _bytes(g.p_references[s]),
            _bytes(g.ms_ids[g.p_membership[s]]),
            _labels(kind, ["purchase", "renewal", "refund"]),
            _labels(refunded_term.astype(int), ["succeeded", "refunded"]),
            _constant(b"local", n),
            _int4(g.p_amount[s]),
            _int4(np.where(refunded_term, g.p_amount[s], 0)),
            _constant(CURRENCY.encode(), n),
            _int4(np.full(n, VAT_BP)),
            _timestamp(g.p_paid_at[s]),
            _nullable(_bytes(g.payment_ids[refund_of]), ~refund),
            _labels(np.where(refund, 0, -1), ["withdrawn within 14 days"]),
            _timestamp(g.p_paid_at[s]),
            _timestamp(g.p_paid_at[s]),
        ]

    def cards(s: slice) -> list[_Field]:
        member = g.card_member[s]
        status = g.card_status[s]
        changed = g.card_changed[s]
        replaced_by = g.card_replaced_by[s]
        reason = np.select([status == "replaced", status == "blocked"], [0, 1], -1)
        n = len(member)
        return [
            _bytes(g.card_ids[s]),
            _text(g.card_numbers[s]),
            _int4(np.ones(n)),
            _text(status.astype(np.bytes_)),
            _bytes(g.m_ids[member]),
            _bytes(g.ms_ids[g.m_membership[member]]),
            _timestamp(g.card_issued[s]),
            _labels(reason, ["lost", "membership refunded"]),
            _nullable(_timestamp(changed), changed < 0),
            _nullable(_bytes(g.card_ids[np.maximum(replaced_by, 0)]), replaced_by < 0),
            _bool(np.zeros(n)),
            _timestamp(g.card_issued[s]),
            _timestamp(np.where(changed < 0, g.card_issued[s], changed)),
        ]

    def checkins(s: slice) -> list[_Field]:
        member = g.c_member[s]
        outcome = g.c_outcome[s]
        n = len(member)
        start = s.start or 0
        details = g.scan_details(s)
        return [
            _int8(np.arange(start + 1, start + n + 1)),
            _bytes(details.scan_id),
            _bytes(g.device_ids[details.venue]),
            _bytes(g.i_ids[g.c_institution[s]]),
            _bytes(g.venue_ids[details.venue]),
            _bytes(g.card_ids[details.card]),
            _int4(np.ones(n)),
            _bytes(g.m_ids[member]),
            _bytes(g.m_visitor_key[member]),
            _bytes(g.product_ids[g.m_product[member]]),
            _timestamp(g.c_scanned[s]),
            _timestamp(details.received),
            _date(g.c_day[s]),
            _labels(outcome_result[outcome], [result.value for result in _RESULTS]),
            _labels(outcome, reasons),
            _bool(outcome == _ADMIT),
            _bool(details.offline),
            _bool(np.zeros(n)),
            _bool(np.zeros(n)),
            _labels(details.age_band, [label for _, label in AGE_BANDS]),
            _bytes(g.m_postal[member].view(np.uint8).reshape(n, -1)[:, :REGION_PREFIX_LENGTH]),
        ]

    def table(
        name: str, columns: str, rows: int, fields: Callable[[slice], list[_Field]]
    ) -> _Table:
        return _Table(name, tuple(columns.split()), rows, fields)

    tables = [
        table(
            "institutions",
            "id code name city timezone anti_passback_minutes joined_on active",
            n_inst,
            institutions,
        ),
        table(
            "institution_tariffs",
            "id institution_id valid_from visit_tariff_minor admission_price_minor currency",
            2 * n_inst,
            tariffs,
        ),
        table("venues", "id institution_id code name active", len(g.venue_ids), venues),
        table("devices", "id venue_id name", len(g.device_ids), devices),
        table(
            "products",
            "id code name kind price_minor currency vat_rate_bp validity_months min_age max_age "
            "min_holders max_holders auto_renew_allowed grace_days accepted_everywhere active",
            len(g.product_codes),
            products,
        ),
        table(
            "product_institutions", "product_id institution_id", len(clubs), product_institutions
        ),
        table("clearing_policies", "id valid_from model payout_share_bp floor_bp", 2, policies),
        table(
            "members",
            "id first_name last_name email birth_date postal_code language visitor_key "
            "marketing_opt_in marketing_opt_in_at share_contact share_contact_at imported "
            "created_at updated_at",
            n_members,
            members,
        ),
        table(
            "memberships",
            "id product_id status auto_renew created_at updated_at",
            len(g.ms_ids),
            memberships,
        ),
        table("membership_holders", "membership_id member_id", n_members, holders),
        table(
            "payments",
            "id reference membership_id kind status provider amount_minor refunded_minor currency "
            "vat_rate_bp paid_at refund_of_id refund_reason created_at updated_at",
            len(g.payment_ids),
            payments,
        ),
        table(
            "membership_terms",
            "id membership_id starts_on ends_on kind status payment_id created_at",
            n_terms,
            terms,
        ),
        table(
            "cards",
            "id number version status member_id membership_id issued_at status_reason "
            "status_changed_at replaced_by_id imported created_at updated_at",
            len(g.card_ids),
            cards,
        ),
    ]
    if checkins_built:
        tables.append(
            table(
                "checkins",
                "id client_scan_id device_id institution_id venue_id card_id card_version "
                "member_id visitor_key product_id scanned_at received_at local_date result "
                "reason counted offline flagged imported age_band region",
                len(g.c_member),
                checkins,
            )
        )
    return tables


# --- loading --------------------------------------------------------------------------------

PhaseCallback = Callable[[str, float], None]


async def seed_national(
    session: AsyncSession,
    *,
    today: date,
    factor: float = 1.0,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    programme_code: str = "MK",
    on_phase: PhaseCallback | None = None,
) -> NationalSummary:
    """Load the national programme into an empty PostgreSQL database, in the caller's transaction.

    Refuses a database that already holds a programme, unless `force`, which first empties every
    table (staff accounts included). `on_phase` hears each phase's name and seconds as it ends.
    The caller commits; until then nothing is visible, and a failure leaves nothing behind.
    """
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        raise NationalScaleNeedsPostgres(
            "The national-scale seed streams PostgreSQL's binary COPY; on SQLite use --demo."
        )
    phases: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases.append((name, now - clock))
        if on_phase is not None:
            on_phase(name, now - clock)
        clock = now

    if force:
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    else:
        for name in _MUST_BE_EMPTY:
            rows = select(Base.metadata.tables[name]).limit(1).subquery()
            if await session.scalar(select(func.count()).select_from(rows)):
                raise ProgrammeNotEmpty(
                    f"Table {name} already has rows: seed an empty database, or pass --force "
                    "to empty every table first.",
                    table=name,
                )
    generator = _Generator(
        today=today, size=NationalSize.for_factor(factor), seed=seed, programme_code=programme_code
    )
    await asyncio.to_thread(generator.build_holders)
    done("generate institutions, members and cards")
    # The check-ins are drawn in a thread while the other tables load.
    drawing = asyncio.ensure_future(asyncio.to_thread(generator.build_checkins))
    try:
        await _load(session, generator, drawing, done)
    finally:
        if not drawing.done():
            drawing.cancel()
    summary = generator.summary()
    summary.phases = phases
    return summary


async def _load(
    session: AsyncSession,
    generator: _Generator,
    drawing: asyncio.Future[None],
    done: Callable[[str], None],
) -> None:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    # Index builds sort in memory; the commit of a seed need not wait for a disk flush.
    await driver.execute(
        "SET LOCAL maintenance_work_mem = '1GB'; SET LOCAL synchronous_commit = off;"
        " SET LOCAL work_mem = '256MB'"
    )
    structures = await _secondary_structures(driver)
    for drop in structures.drops():
        await driver.execute(drop)
    # Truncating in this transaction is what allows COPY FREEZE: the rows arrive frozen and
    # all-visible, so no vacuum has to rewrite 12 million rows before index-only scans work.
    await driver.execute("TRUNCATE " + ", ".join(BULK_TABLES))
    done("drop keys and indexes")
    for table in _tables(generator, checkins_built=False):
        await _copy(driver, table)
        done(f"copy {table.name} ({table.rows:,} rows)")
    await drawing
    done("generate check-ins (what the loads above did not hide)")
    checkins = _tables(generator)[-1]
    await _copy(driver, checkins)
    done(f"copy {checkins.name} ({checkins.rows:,} rows)")
    for create in structures.keys_and_indexes():
        await driver.execute(create)
    done("build keys and indexes")
    for create in structures.foreign_keys():
        await driver.execute(create)
    done("validate foreign keys")
    await driver.execute(
        "SELECT setval(pg_get_serial_sequence('checkins', 'id'), $1, $2)",
        max(checkins.rows, 1),
        checkins.rows > 0,
    )
    await refresh_derived(session)
    done("derived tables")
    await driver.execute("ANALYZE " + ", ".join((*BULK_TABLES, "institutions", "venues")))
    done("analyze")


async def _copy(driver: Any, table: _Table) -> None:
    await driver.copy_to_table(
        table.name,
        source=_copy_stream(table),
        columns=list(table.columns),
        format="binary",
        freeze=table.name in BULK_TABLES,
    )


async def refresh_derived(session: AsyncSession) -> None:
    """Recompute every table derived from check-ins after a bulk load that bypassed the services.

    Each derived table's own rebuild goes here, so seeds and imports stay consistent with it.
    """
    await rollups.rebuild(session)


@dataclass(frozen=True)
class _Structures:
    """The bulk tables' keys, indexes and foreign keys as the catalogue defines them."""

    keys: list[tuple[str, str, str]]  # table, constraint name, definition
    indexes: list[tuple[str, str]]  # index name, CREATE INDEX statement
    references: list[tuple[str, str, str]]

    def drops(self) -> list[str]:
        return [
            *(f"ALTER TABLE {t} DROP CONSTRAINT {n}" for t, n, _ in self.references),
            *(f"DROP INDEX {n}" for n, _ in self.indexes),
            *(f"ALTER TABLE {t} DROP CONSTRAINT {n}" for t, n, _ in self.keys),
        ]

    def keys_and_indexes(self) -> list[str]:
        return [
            *(f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d in self.keys),
            *(statement for _, statement in self.indexes),
        ]

    def foreign_keys(self) -> list[str]:
        return [f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d in self.references]


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def _model_index_ddl(name: str) -> str:
    """A partial index as the model (and so the migration) spells it.

    The catalogue's deparsed predicate does not survive a round trip unchanged (an IN list comes
    back as `= ANY (ARRAY[...])` with other casts), so re-creating from it would drift.
    """
    for table_name in BULK_TABLES:
        for index in Base.metadata.tables[table_name].indexes:
            if index.name == name:
                return str(CreateIndex(index).compile(dialect=_POSTGRESQL))
    raise LookupError(f"partial index {name} is not in the models")


async def _secondary_structures(driver: Any) -> _Structures:
    """Read them back from pg_catalog, so they are re-created exactly as the migrations made them.

    Foreign keys of other tables that point at a bulk table are included: TRUNCATE needs them
    out of the way, and re-adding them validates them once.
    """
    tables = list(BULK_TABLES)
    constraints = await driver.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, quote_ident(c.conname) AS name,"
        " c.contype::text AS contype, pg_get_constraintdef(c.oid) AS definition"
        " FROM pg_constraint c"
        " WHERE (c.contype IN ('p', 'u') AND c.conrelid = ANY($1::regclass[]))"
        " OR (c.contype = 'f' AND (c.conrelid = ANY($1::regclass[])"
        " OR c.confrelid = ANY($1::regclass[])))"
        " ORDER BY c.contype DESC, tbl, name",
        tables,
    )
    indexes = await driver.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition,"
        " i.indpred IS NOT NULL AS partial"
        " FROM pg_index i WHERE i.indrelid = ANY($1::regclass[]) AND NOT EXISTS"
        " (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid"
        " AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))"
        " ORDER BY name",
        tables,
    )
    return _Structures(
        keys=[(r["tbl"], r["name"], r["definition"]) for r in constraints if r["contype"] != "f"],
        indexes=[
            (r["name"], _model_index_ddl(r["name"]) if r["partial"] else r["definition"])
            for r in indexes
        ],
        references=[
            (r["tbl"], r["name"], r["definition"]) for r in constraints if r["contype"] == "f"
        ],
    )

"""Dates as day numbers since 2000-01-01 and small vectorised helpers.

Generation draws millions of rows, so every helper works on whole numpy arrays, never a Python
loop per row; counting days from 2000-01-01 is also what PostgreSQL's binary dates do, so a day
number goes into COPY unchanged.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

Array: TypeAlias = npt.NDArray[Any]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_REFERENCE_ALPHABET = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", dtype=np.uint8)

# PostgreSQL's binary dates and timestamps count from this day; 10 957 days after 1970-01-01.
_EPOCH = date(2000, 1, 1)
_EPOCH_FROM_UNIX = 10_957
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000


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

"""PostgreSQL's binary COPY format, built straight from numpy arrays.

Text COPY would make Python format every value of 12 million rows; in binary form a column of
fixed width is just its big-endian bytes, so a whole chunk of rows is laid out as a few byte
matrices and sent while the next chunk is encoded in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from membership.national.arrays import Array

_COPY_CHUNK = 200_000


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


def _int2(values: Array) -> _Field:
    return _fixed(values, ">i2")


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

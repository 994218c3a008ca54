"""Shared by the admin services: offset pagination, race-safe unique inserts, audit diffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from membership.errors import DomainError

T = TypeVar("T")


@dataclass(frozen=True)
class PageResult(Generic[T]):
    """One slice of a filtered list and the size of the whole list, so clients can page."""

    items: Sequence[T]
    total: int
    limit: int
    offset: int


async def paginate(
    session: AsyncSession, statement: Select[T], *, limit: int, offset: int
) -> PageResult[T]:
    """Count the filtered rows and fetch one slice; `statement` must carry a stable order_by."""
    total = await session.scalar(
        select(func.count()).select_from(statement.order_by(None).subquery())
    )
    rows = (await session.scalars(statement.limit(limit).offset(offset))).all()
    return PageResult(items=rows, total=total or 0, limit=limit, offset=offset)


def is_unique_violation(exc: IntegrityError) -> bool:
    """SQLite says "UNIQUE constraint failed", PostgreSQL "violates unique constraint"."""
    return "unique" in str(exc.orig).lower()


async def flush_unique(session: AsyncSession, *, conflict: DomainError) -> None:
    """Flush, and report a unique violation as `conflict` (a 409), never as a 500.

    Services check for a duplicate first, for a clear answer; this closes the race where two
    requests pass that check together and the database constraint decides. The failed flush
    leaves the transaction unusable, so the error must end the unit of work (as a request does).
    """
    try:
        await session.flush()
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise conflict from exc
        raise


def like_pattern(text: str) -> str:
    """A case-insensitive substring pattern with the user's own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def changed_fields(obj: Any, values: dict[str, Any]) -> dict[str, list[Any]]:
    """Apply `values` to `obj` and return {field: [old, new]} for the audit trail."""
    changes: dict[str, list[Any]] = {}
    for field, new in values.items():
        old = getattr(obj, field)
        if old != new:
            setattr(obj, field, new)
            changes[field] = [audit_value(old), audit_value(new)]
    return changes


def audit_value(value: Any) -> Any:
    """Audit changes are stored as JSON: keep scalars, turn dates, ids and enums into text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list | tuple):
        return [audit_value(item) for item in value]
    return str(value)

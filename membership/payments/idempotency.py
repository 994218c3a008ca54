"""Idempotency-Key: a retried request gets the first answer; a reused key with another body 409.

The key row is inserted first, in the request's own transaction, ignoring a conflict: on
PostgreSQL a second request with the same key waits on the first one's uncommitted row and then
sees its stored answer, so two racing retries never both buy. If the request fails, the row goes
with its rollback, and a retry runs afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from membership.errors import Conflict
from membership.models import IdempotencyKey


class IdempotencyKeyReused(Conflict):
    code = "idempotency-key-reused"
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency-key-in-progress"
    title = "A request with this Idempotency-Key is still being handled"


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


def request_hash(body: Any) -> str:
    """Of the parsed body in canonical form: key order and whitespace do not make it different."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def begin(
    session: AsyncSession, *, scope: str, key: str, body_hash: str
) -> IdempotencyKey | Replay:
    """Claim the key for this request, or the answer remembered for it."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    claimed = await session.scalar(
        insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=body_hash)
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotencyKey.id)
    )
    row = await session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .execution_options(populate_existing=True)
    )
    assert row is not None  # inserted above, or committed by the request that holds the key
    if claimed is not None:
        return row
    if row.request_hash != body_hash:
        raise IdempotencyKeyReused()
    if row.response_status is None or row.response_body is None:
        raise IdempotencyKeyInProgress()
    return Replay(status=row.response_status, body=row.response_body)


async def finish(
    session: AsyncSession, *, row: IdempotencyKey, status: int, body: dict[str, Any]
) -> None:
    row.response_status = status
    row.response_body = body
    await session.flush()

"""Answers remembered by the client's Idempotency-Key, so a retried request is not done twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from membership.models.base import Base, BigIntPK, CreatedAt
from membership.models.payments import JSONDocument


class IdempotencyKey(CreatedAt, Base):
    """Written in the transaction of the request it answers, so it exists only if that did."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the canonical request body: the same key with another body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)

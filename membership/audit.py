"""The audit trail: every staff action that changes money, cards or personal data leaves a row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membership.clock import utcnow
from membership.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff user, or a named system part ("cli", "jobs", "webhook:stripe")."""

    label: str
    staff_user_id: uuid.UUID | None = None


SYSTEM = Actor(label="system")


async def record(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | str,
    institution_id: uuid.UUID | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Written in the caller's transaction, so a change and its audit row land together."""
    entry = AuditEntry(
        at=utcnow(),
        actor=actor.label,
        actor_staff_id=actor.staff_user_id,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        institution_id=institution_id,
        changes=changes or {},
    )
    session.add(entry)
    await session.flush()
    return entry

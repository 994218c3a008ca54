"""Work that gave up: webhook events and e-mails that used all their attempts (operator only).

A given-up event is money or a membership change that did not happen; a given-up mail is a
member who was not told. Neither may vanish: the job runner logs them at error level and
prints them in its pass report, and here the operator sees why and puts one back in line
after fixing the cause.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from api import problems
from api.auth import OperatorAdmin
from api.deps import SessionDep
from membership import audit, outbox
from membership.clock import utcnow
from membership.models import OutboxEmail, WebhookEvent
from membership.payments import events
from membership.staff import Principal

router = APIRouter(prefix="/v1/admin/failed-work", tags=["operations"])


class FailedEventRead(BaseModel):
    id: int
    provider: str
    provider_event_id: str
    type: str
    attempts: int
    last_error: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookEvent) -> FailedEventRead:
        return cls(
            id=row.id,
            provider=row.provider,
            provider_event_id=row.provider_event_id,
            type=row.type,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
        )


class FailedMailRead(BaseModel):
    id: int
    template: str
    to_address: str
    member_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: OutboxEmail) -> FailedMailRead:
        return cls(
            id=row.id,
            template=row.template,
            to_address=row.to_address,
            member_id=str(row.member_id) if row.member_id else None,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
        )


class FailedEvents(BaseModel):
    count: int
    items: list[FailedEventRead]


class FailedMails(BaseModel):
    count: int
    items: list[FailedMailRead]


class FailedWorkRead(BaseModel):
    """Counts are complete; the items are the oldest `limit` of each kind."""

    events: FailedEvents
    mails: FailedMails


@router.get("", response_model=FailedWorkRead, responses=problems.responses(401, 403))
async def failed_work(
    session: SessionDep,
    principal: OperatorAdmin,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FailedWorkRead:
    event_count, event_rows = await events.given_up(session, limit=limit)
    mail_count, mail_rows = await outbox.given_up(session, limit=limit)
    return FailedWorkRead(
        events=FailedEvents(
            count=event_count, items=[FailedEventRead.of(row) for row in event_rows]
        ),
        mails=FailedMails(count=mail_count, items=[FailedMailRead.of(row) for row in mail_rows]),
    )


async def _audit(session: AsyncSession, principal: Principal, kind: str, row_id: int) -> None:
    await audit.record(
        session,
        actor=principal.actor,
        action=f"{kind}.retry",
        entity_type=kind,
        entity_id=str(row_id),
        changes={"attempts": 0},
    )


@router.post(
    "/events/{event_id}/retry",
    response_model=FailedEventRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems.responses(401, 403, 404),
)
async def retry_event(
    event_id: int, session: SessionDep, principal: OperatorAdmin
) -> FailedEventRead:
    """A fresh set of attempts, due now: the next job pass handles it."""
    row = await events.retry(session, event_id=event_id, now=utcnow())
    await _audit(session, principal, "webhook_event", row.id)
    return FailedEventRead.of(row)


@router.post(
    "/mails/{mail_id}/retry",
    response_model=FailedMailRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems.responses(401, 403, 404),
)
async def retry_mail(mail_id: int, session: SessionDep, principal: OperatorAdmin) -> FailedMailRead:
    """A fresh set of attempts, due now: the next job pass sends it (once: it was never sent)."""
    row = await outbox.retry(session, mail_id=mail_id, now=utcnow())
    await _audit(session, principal, "outbox_email", row.id)
    return FailedMailRead.of(row)

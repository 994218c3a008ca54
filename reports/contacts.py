"""The consenting-contacts export: who among an institution's visitors may be written to.

Only members with `share_contact` set and not erased, and only if they visited here: a consent
to share with institutions is not a licence to hand out the whole member list (rule 5).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.models import Member
from reports.common import analytic_memory, get_institution
from reports.csv import render
from reports.segments import segment_rows


@dataclass(frozen=True, slots=True)
class ContactRow:
    member_id: uuid.UUID
    first_name: str
    last_name: str
    email: str | None
    language: str
    postal_code: str | None
    segment: str
    last_visit: date
    share_contact_at: datetime | None


async def consenting_contacts(
    session: AsyncSession, *, institution_id: uuid.UUID, as_of: date | None = None
) -> list[ContactRow]:
    """Contact details of this institution's visitors who consented to share them (rule 5)."""
    institution = await get_institution(session, institution_id)
    as_of = as_of or local_date(utcnow(), institution.timezone)
    await analytic_memory(session)
    rows = await segment_rows(session, institution_id, as_of)
    stmt = (
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
    return [
        ContactRow(
            member_id=row[0],
            first_name=row[1],
            last_name=row[2],
            email=row[3],
            language=row[4],
            postal_code=row[5],
            segment=str(row[6]),
            last_visit=row[7],
            share_contact_at=row[8],
        )
        for row in (await session.execute(stmt)).all()
    ]


async def export_contacts(
    session: AsyncSession, *, institution_id: uuid.UUID, actor: Actor, as_of: date | None = None
) -> list[ContactRow]:
    """The consenting contacts, with an audit row: who took whose personal data, and when."""
    contacts = await consenting_contacts(session, institution_id=institution_id, as_of=as_of)
    await audit.record(
        session,
        actor=actor,
        action="report.contacts.exported",
        entity_type="institution",
        entity_id=institution_id,
        institution_id=institution_id,
        changes={"members": len(contacts)},
    )
    return contacts


def contacts_csv(contacts: Sequence[ContactRow]) -> str:
    return render(
        (
            "member_id",
            "first_name",
            "last_name",
            "email",
            "language",
            "postal_code",
            "segment",
            "last_visit",
            "share_contact_at",
        ),
        (
            (
                str(c.member_id),
                c.first_name,
                c.last_name,
                c.email,
                c.language,
                c.postal_code,
                c.segment,
                c.last_visit,
                c.share_contact_at,
            )
            for c in contacts
        ),
    )

"""Members: the people who hold cards, created at purchase with their consents' timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import Member


@dataclass(frozen=True)
class HolderDetails:
    first_name: str
    last_name: str
    email: str
    birth_date: date
    postal_code: str
    language: str


def age_on(birth_date: date, day: date) -> int:
    """Completed years on `day`; someone born on 29 February turns a year older on 1 March."""
    years = day.year - birth_date.year
    return years - 1 if (day.month, day.day) < (birth_date.month, birth_date.day) else years


async def create_member(
    session: AsyncSession,
    *,
    details: HolderDetails,
    marketing_opt_in: bool,
    share_contact: bool,
    now: datetime,
) -> Member:
    """A new member; a consent given carries the moment it was given (proof for rule 5)."""
    member = Member(
        first_name=details.first_name,
        last_name=details.last_name,
        email=details.email.lower(),
        birth_date=details.birth_date,
        postal_code=details.postal_code,
        language=details.language,
        marketing_opt_in=marketing_opt_in,
        marketing_opt_in_at=now if marketing_opt_in else None,
        share_contact=share_contact,
        share_contact_at=now if share_contact else None,
    )
    session.add(member)
    await session.flush()
    return member

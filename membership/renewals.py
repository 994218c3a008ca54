"""Renewal date arithmetic as pure functions: the rules of rule 3 that need no database.

Dates are calendar days in the programme's time zone (`settings.programme_timezone`); a term runs
from `starts_on` up to, not including, `ends_on`.
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import date, timedelta

REMINDER_DAYS = (30, 7)


class Standing(enum.StrEnum):
    ACTIVE = "active"
    IN_GRACE = "in_grace"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TermDates:
    starts_on: date
    ends_on: date


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the month's last day when it has no such day (31 → 30)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def first_term(*, today: date, validity_months: int) -> TermDates:
    return TermDates(today, add_months(today, validity_months))


def renewal_term(
    *, today: date, current_end: date | None, grace_days: int, validity_months: int
) -> TermDates:
    """A renewal before expiry or within grace starts at the old end, so no paid day is lost;
    later than that the membership lapsed and the new term starts today."""
    if current_end is not None and today <= current_end + timedelta(days=grace_days):
        start = current_end
    else:
        start = today
    return TermDates(start, add_months(start, validity_months))


def standing(*, today: date, paid_until: date | None, grace_days: int) -> Standing:
    """Active while a term covers today, then in grace for `grace_days`, then expired."""
    if paid_until is None:
        return Standing.EXPIRED
    if today < paid_until:
        return Standing.ACTIVE
    if today < paid_until + timedelta(days=grace_days):
        return Standing.IN_GRACE
    return Standing.EXPIRED


def reminder_due(*, today: date, paid_until: date) -> int | None:
    """The reminder (30 or 7 days before the end) that applies today, if any.

    The closest threshold not yet passed, so a runner that missed a day still sends it; the
    outbox's dedup key keeps each one to a single e-mail.
    """
    days_left = (paid_until - today).days
    if days_left <= 0:
        return None
    due = [days for days in REMINDER_DAYS if days_left <= days]
    return min(due) if due else None

"""The door decision: one pure function, no I/O, so that every rule has a fast unit test.

The check-in service gathers the facts (card, membership, recent scans) inside its transaction,
asks `decide`, and the database keeps the one rule a race could break: one counted visit per
visitor, institution and day.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from membership.models import CardStatus, CheckinResult, MembershipStatus


class Reason(enum.StrEnum):
    """Stable reason codes: scanners, reports and the doorman's screen key on them."""

    OK = "ok"
    REENTRY = "reentry"
    OVERRIDE = "override"
    ALREADY_USED = "already_used"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BLOCKED = "blocked"
    REPLACED = "replaced"
    NOT_ACCEPTED_HERE = "not_accepted_here"
    INVALID_CODE = "invalid_code"
    UNKNOWN_CARD = "unknown_card"
    TEMPORARY_LIMIT_REACHED = "temporary_limit_reached"
    MEMBERSHIP_INACTIVE = "membership_inactive"
    # Only ever decided by a scanner while offline, and recorded as such when it uploads.
    NEEDS_NETWORK = "needs_network"
    NOT_SYNCED = "not_synced"
    OFFLINE_REFUSED = "offline_refused"


@dataclass(frozen=True)
class Period:
    """A paid term: valid from `starts_on` up to, not including, `ends_on`."""

    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class Facts:
    """Everything the decision needs, gathered by the caller."""

    scanned_at: datetime
    local_day: date
    card_status: CardStatus
    card_version: int
    scanned_version: int | None  # None when the number was typed: no version to compare
    card_expires_at: datetime | None
    visit_limit: int | None
    visits_counted_on_card: int
    membership_status: MembershipStatus | None
    periods: tuple[Period, ...]
    grace_days: int
    accepted_here: bool
    anti_passback: timedelta
    last_admitted_here_at: datetime | None
    counted_here_today: bool


@dataclass(frozen=True)
class Decision:
    result: CheckinResult
    reason: Reason
    counted: bool

    @property
    def admitted(self) -> bool:
        return self.result is not CheckinResult.REFUSED


def refuse(reason: Reason) -> Decision:
    return Decision(CheckinResult.REFUSED, reason, counted=False)


ADMIT = Decision(CheckinResult.ADMITTED, Reason.OK, counted=True)
REENTER = Decision(CheckinResult.REENTRY, Reason.REENTRY, counted=False)

_LIVE_MEMBERSHIP = (MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)


def _validity(facts: Facts) -> Reason | None:
    """Paid terms, plus the product's grace days after each one, in the local calendar.

    After each, not only the last: a day in the gap before a late renewal fell within the grace
    of the term before it, and a scan of that day uploaded later must get what the door gave then.
    """
    if facts.membership_status not in _LIVE_MEMBERSHIP:
        if facts.membership_status is MembershipStatus.EXPIRED:
            return Reason.EXPIRED
        return Reason.MEMBERSHIP_INACTIVE
    day = facts.local_day
    if any(period.starts_on <= day < period.ends_on for period in facts.periods):
        return None
    if not facts.periods or day < min(period.starts_on for period in facts.periods):
        return Reason.NOT_YET_VALID
    grace = timedelta(days=facts.grace_days)
    if any(period.ends_on <= day < period.ends_on + grace for period in facts.periods):
        return None
    return Reason.EXPIRED


def _card(facts: Facts) -> Reason | None:
    if facts.card_status is CardStatus.BLOCKED:
        return Reason.BLOCKED
    if facts.card_status is CardStatus.REPLACED:
        return Reason.REPLACED
    if facts.card_status is CardStatus.EXPIRED:
        return Reason.EXPIRED
    if facts.scanned_version is not None and facts.scanned_version < facts.card_version:
        return Reason.REPLACED
    if facts.card_status is CardStatus.TEMPORARY:
        if facts.card_expires_at is not None and facts.scanned_at >= facts.card_expires_at:
            return Reason.EXPIRED
        if facts.visit_limit is not None and facts.visits_counted_on_card >= facts.visit_limit:
            # The visit that reaches the limit is allowed; a re-entry the same day still is.
            if not facts.counted_here_today:
                return Reason.TEMPORARY_LIMIT_REACHED
    return None


def decide(facts: Facts) -> Decision:
    """Admit, re-admit or refuse one scan (DESIGN.md rule 1 and the card rules).

    Within the anti-passback window after an admission here the card is refused as
    `already_used` (likely passed back to a friend); later the same day it re-enters uncounted.
    """
    refusal = _card(facts) or _validity(facts)
    if refusal is not None:
        return refuse(refusal)
    if not facts.accepted_here:
        return refuse(Reason.NOT_ACCEPTED_HERE)
    if facts.last_admitted_here_at is not None:
        # Either direction: offline devices with skewed clocks report scans out of order.
        if abs(facts.scanned_at - facts.last_admitted_here_at) < facts.anti_passback:
            return refuse(Reason.ALREADY_USED)
    if facts.counted_here_today:
        return REENTER
    return ADMIT

"""Each visitor of an institution in exactly one segment, the level at which a museum acts.

The rules are applied in order and the first that matches wins, so the segments never overlap
and always add up to the visitor count (docs/reports.md, "Segments").
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import ColumnElement, Select, Subquery, and_, case, func, null, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from membership.clock import local_date, utcnow
from membership.models import (
    Checkin,
    InstitutionVisitor,
    Membership,
    MembershipStatus,
    membership_holders,
)
from reports.common import analytic_memory, get_institution

POPULATION_DAYS = 730
LAPSED_DAYS = 365
NEW_DAYS = 90
LOYAL_VISITS = 4
LOYAL_WINDOW_DAYS = 365
RENEWAL_DAYS = 60
# Up to this many visitors the renewal segment probes each visitor's memberships; above it the
# programme's members at risk are found once (`_segmented_from_visitors`). Measured on the
# national seed: about 16 microseconds a visitor against 0.3 s for the whole set (81 352
# members), which break even near 20 000 visitors.
PROBE_MEMBERS_UP_TO = 20_000


class Segment(enum.StrEnum):
    RENEWAL_AT_RISK = "renewal_at_risk"
    LAPSED = "lapsed"
    NEW = "new"
    LOYAL = "loyal"
    REGULAR = "regular"


SEGMENT_RULES: dict[Segment, str] = {
    Segment.RENEWAL_AT_RISK: (
        f"holds an active or in-grace membership without auto-renew whose last active term "
        f"ends (exclusive end date) after the reference date and at most {RENEWAL_DAYS} days "
        f"after it"
    ),
    Segment.LAPSED: f"no visit here in the {LAPSED_DAYS} days up to the reference date",
    Segment.NEW: f"first visit here ever within the {NEW_DAYS} days up to the reference date",
    Segment.LOYAL: (
        f"at least {LOYAL_VISITS} visits here in the {LOYAL_WINDOW_DAYS} days up to the "
        f"reference date"
    ),
    Segment.REGULAR: "every other visitor: visited here in the last year, fewer times",
}


@dataclass(frozen=True, slots=True)
class SegmentCount:
    segment: str
    visitors: int
    rule: str


@dataclass(frozen=True, slots=True)
class SegmentsReport:
    institution_id: uuid.UUID
    as_of: date
    visitors: int
    segments: list[SegmentCount]


def _window_start(as_of: date, days: int) -> date:
    """The first day of the `days` days that end on `as_of`, both included."""
    return as_of - timedelta(days=days - 1)


def _population(institution_id: uuid.UUID, as_of: date) -> ColumnElement[bool]:
    """Counted visits here in the population window (the 730 days up to `as_of`)."""
    return and_(
        Checkin.counted,
        Checkin.institution_id == institution_id,
        Checkin.local_date.between(_window_start(as_of, POPULATION_DAYS), as_of),
        Checkin.visitor_key.is_not(None),
    )


def _links(institution_id: uuid.UUID, as_of: date) -> Select[str | None, uuid.UUID | None]:
    """Visitor key to member, while the link exists; an erased visitor can be in no contact list
    and no renewal segment.

    Only the window's visits are read: erasure removes every link of a member at once and the
    retention cut removes the oldest first, so a visitor in the window whose link exists at all
    has it on a visit in the window.
    """
    return (
        select(Checkin.visitor_key, Checkin.member_id)
        .where(_population(institution_id, as_of), Checkin.member_id.is_not(None))
        .distinct()
    )


def _renewal_due(as_of: date) -> ColumnElement[bool]:
    """A membership that ends soon without auto-renew (segment 1's rule), on `Membership`.

    `paid_until` is the end of the latest active term, so the memberships of the whole
    programme that qualify are one range of the index of memberships without auto-renew
    (`ix_memberships_renewal_due`). The bare NOT is that index's predicate, which
    `auto_renew IS false` would not match.
    """
    return and_(
        ~Membership.auto_renew,
        Membership.paid_until > as_of,
        Membership.paid_until <= as_of + timedelta(days=RENEWAL_DAYS),
        Membership.status.in_([MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE]),
    )


def _members_at_risk(as_of: date) -> Select[uuid.UUID]:
    """Holders of a membership that ends soon without auto-renew: the whole programme's."""
    return (
        select(membership_holders.c.member_id)
        .join(Membership, Membership.id == membership_holders.c.membership_id)
        .where(_renewal_due(as_of))
        .distinct()
    )


def _holds_membership_at_risk(as_of: date) -> ColumnElement[bool]:
    """Whether a visitor row's member holds a membership that ends soon without auto-renew:
    a few index probes per visitor (holder, membership).

    The OFFSET 0 is what keeps them probes: without it PostgreSQL may rewrite the EXISTS into
    a hash of the whole programme's members at risk, the 0.3 s this is meant to avoid.
    """
    return (
        select(membership_holders.c.member_id)
        .join(Membership, Membership.id == membership_holders.c.membership_id)
        .where(membership_holders.c.member_id == InstitutionVisitor.member_id, _renewal_due(as_of))
        .offset(0)
        .exists()
    )


def _segmented_from_visitors(
    institution_id: uuid.UUID, as_of: date, *, probe_members: bool
) -> Select[str, str, date, uuid.UUID | None]:
    """One row per visitor of the population from the visitor rows alone: visitor key,
    segment, last visit date and the member link a visit in the window still carries.

    Exact only when no counted visit here lies after `as_of` (`_visitor_rows_answer`): then a
    row's latest visit is its last visit up to `as_of`, its fourth latest says whether four
    visits fall in the year, and its first visit is the first ever here. The latest linked
    visit lies in the window exactly when any linked visit does.

    With `probe_members` each linked visitor's memberships are probed by index (a few
    thousand visitors: tens of milliseconds); otherwise the programme's members at risk are
    found once and hashed (about 80 000 on the national seed, 0.3 s, which pays off only for
    a population larger than `PROBE_MEMBERS_UP_TO`).
    """
    visitor = InstitutionVisitor
    window_start = _window_start(as_of, POPULATION_DAYS)
    linked = and_(visitor.member_id.is_not(None), visitor.linked_on >= window_start)
    risk = _members_at_risk(as_of).subquery()
    at_risk = (
        and_(linked, _holds_membership_at_risk(as_of))
        if probe_members
        else risk.c.member_id.is_not(None)
    )
    segment = case(
        (at_risk, Segment.RENEWAL_AT_RISK.value),
        (visitor.visit_1 < _window_start(as_of, LAPSED_DAYS), Segment.LAPSED.value),
        (visitor.first_visit >= _window_start(as_of, NEW_DAYS), Segment.NEW.value),
        (visitor.visit_4 >= _window_start(as_of, LOYAL_WINDOW_DAYS), Segment.LOYAL.value),
        else_=Segment.REGULAR.value,
    ).label("segment")
    rows = select(
        visitor.visitor_key,
        segment,
        visitor.visit_1.label("last_visit"),
        case((linked, visitor.member_id), else_=null()).label("member_id"),
    ).where(_visitor_population(institution_id, as_of))
    if probe_members:
        return rows
    return rows.outerjoin_from(visitor, risk, and_(linked, risk.c.member_id == visitor.member_id))


def _visitor_population(institution_id: uuid.UUID, as_of: date) -> ColumnElement[bool]:
    """The population window on the visitor rows: latest visit in the 730 days up to `as_of`."""
    return and_(
        InstitutionVisitor.institution_id == institution_id,
        InstitutionVisitor.visit_1.between(_window_start(as_of, POPULATION_DAYS), as_of),
    )


async def _visitor_rows_answer(
    session: AsyncSession, institution_id: uuid.UUID, as_of: date
) -> bool:
    """Whether the visitor rows answer for `as_of`: no counted visit here after it (one probe
    into the counted visits' index). Always so for the default, the institution's today."""
    later = (
        select(Checkin.id)
        .where(
            Checkin.counted,
            Checkin.institution_id == institution_id,
            Checkin.local_date > as_of,
        )
        .exists()
    )
    return not await session.scalar(select(later))


async def segment_rows(session: AsyncSession, institution_id: uuid.UUID, as_of: date) -> Subquery:
    """Visitor key, segment, last visit and window member link of each visitor of the
    population: from the visitor rows when they answer, from the check-ins otherwise."""
    if await _visitor_rows_answer(session, institution_id, as_of):
        # Counted only as far as the limit: a large population need not be counted whole.
        first = (
            select(InstitutionVisitor.visitor_key)
            .where(_visitor_population(institution_id, as_of))
            .limit(PROBE_MEMBERS_UP_TO + 1)
            .subquery()
        )
        visitors = await session.scalar(select(func.count()).select_from(first))
        probe = (visitors or 0) <= PROBE_MEMBERS_UP_TO
        return _segmented_from_visitors(institution_id, as_of, probe_members=probe).subquery()
    rows = _segmented(institution_id, as_of).subquery()
    links = _links(institution_id, as_of).subquery()
    return (
        select(rows, links.c.member_id)
        .outerjoin(links, links.c.visitor_key == rows.c.visitor_key)
        .subquery()
    )


def _segmented(institution_id: uuid.UUID, as_of: date) -> Select[str | None, str, date]:
    """One row per visitor of the population: visitor key, segment and last visit date.

    One pass over the window's visits (covering index); a visitor first seen in the window is
    new only if no visit here lies before it, one probe into the unique index of visits.
    """
    risk = _members_at_risk(as_of).subquery()
    loyal_from = _window_start(as_of, LOYAL_WINDOW_DAYS)
    per_visitor = (
        select(
            Checkin.visitor_key,
            func.min(Checkin.local_date).label("first_visit"),
            func.max(Checkin.local_date).label("last_visit"),
            func.sum(case((Checkin.local_date >= loyal_from, 1), else_=0)).label("recent"),
            func.max(case((risk.c.member_id.is_not(None), 1), else_=0)).label("at_risk"),
        )
        .select_from(Checkin)
        .outerjoin(risk, risk.c.member_id == Checkin.member_id)
        .where(_population(institution_id, as_of))
        .group_by(Checkin.visitor_key)
        .subquery()
    )
    earlier = aliased(Checkin)
    seen_before = (
        select(earlier.id)
        .where(
            earlier.visitor_key == per_visitor.c.visitor_key,
            earlier.institution_id == institution_id,
            earlier.counted,
            earlier.local_date < _window_start(as_of, POPULATION_DAYS),
        )
        .exists()
    )
    segment = case(
        (per_visitor.c.at_risk == 1, Segment.RENEWAL_AT_RISK.value),
        (
            per_visitor.c.last_visit < _window_start(as_of, LAPSED_DAYS),
            Segment.LAPSED.value,
        ),
        (
            and_(per_visitor.c.first_visit >= _window_start(as_of, NEW_DAYS), ~seen_before),
            Segment.NEW.value,
        ),
        (per_visitor.c.recent >= LOYAL_VISITS, Segment.LOYAL.value),
        else_=Segment.REGULAR.value,
    ).label("segment")
    return select(per_visitor.c.visitor_key, segment, per_visitor.c.last_visit)


async def segments_report(
    session: AsyncSession, *, institution_id: uuid.UUID, as_of: date | None = None
) -> SegmentsReport:
    """Segment sizes of this institution's visitors on `as_of` (default: its local today)."""
    institution = await get_institution(session, institution_id)
    as_of = as_of or local_date(utcnow(), institution.timezone)
    await analytic_memory(session)
    rows = await segment_rows(session, institution_id, as_of)
    counts = {
        str(segment): int(n)
        for segment, n in (
            await session.execute(select(rows.c.segment, func.count()).group_by(rows.c.segment))
        ).all()
    }
    segments = [SegmentCount(s.value, counts.get(s.value, 0), SEGMENT_RULES[s]) for s in Segment]
    return SegmentsReport(
        institution_id=institution_id,
        as_of=as_of,
        visitors=sum(counts.values()),
        segments=segments,
    )

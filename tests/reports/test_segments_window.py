"""Segments read only the population window, yet "new" still means the first visit ever; every
window boundary falls on the institution's local day, from the visitor rows and from the
check-ins alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import MembershipStatus, MembershipTerm, TermKind, TermStatus
from reports import segments
from reports.segments import segments_report
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)
from tests.reports.segment_sources import segment_source

__all__ = ["segment_source"]

AS_OF = date(2026, 6, 30)
ZONE = "America/New_York"


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC)


async def test_a_visit_before_the_window_keeps_a_returning_visitor_from_being_new(
    session: AsyncSession, segment_source: str
) -> None:
    institution = await create_institution(session)
    other = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    elsewhere = await create_venue(session, institution=other)
    returning = await create_member(session)
    newcomer = await create_member(session)
    moved = await create_member(session)
    recent = AS_OF - timedelta(days=10)
    # Three years ago here, then again last week: returning, not new.
    await create_checkin(
        session, venue=venue, member=returning, scanned_at=noon(AS_OF - timedelta(days=1100))
    )
    await create_checkin(session, venue=venue, member=returning, scanned_at=noon(recent))
    await create_checkin(session, venue=venue, member=newcomer, scanned_at=noon(recent))
    # An old visit elsewhere does not make a first visit here less new.
    await create_checkin(
        session, venue=elsewhere, member=moved, scanned_at=noon(AS_OF - timedelta(days=1100))
    )
    await create_checkin(session, venue=venue, member=moved, scanned_at=noon(recent))
    await session.commit()

    report = await segments_report(session, institution_id=institution.id, as_of=AS_OF)
    counts = {s.segment: s.visitors for s in report.segments}
    assert (report.visitors, counts["new"], counts["regular"]) == (3, 2, 1)


async def test_every_window_boundary_on_the_local_day(
    session: AsyncSession, segment_source: str
) -> None:
    institution = await create_institution(session, timezone=ZONE)
    venue = await create_venue(session, institution=institution)
    product = await create_product(session)

    def local_noon(days_before: int) -> datetime:
        day = AS_OF - timedelta(days=days_before)
        return datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(ZONE))

    async def visitor(*days_before: int, ends_in: int | None = None) -> None:
        member = await create_member(session)
        if ends_in is not None:
            await create_membership(
                session,
                product=product,
                holders=[member],
                starts_on=AS_OF + timedelta(days=ends_in - 365),
                ends_on=AS_OF + timedelta(days=ends_in),
            )
        for before in days_before:
            await create_checkin(
                session,
                venue=venue,
                member=member,
                scanned_at=local_noon(before),
                timezone=ZONE,
            )

    await visitor(729)  # first day of the population window: lapsed
    await visitor(730)  # the day before it: not a visitor
    await visitor(365)  # lapsed
    await visitor(364)  # regular: visited in the year
    await visitor(89)  # new
    await visitor(90)  # regular
    await visitor(364, 200, 100, 10)  # loyal: four in the year
    await visitor(365, 200, 100, 10)  # regular: three in the year
    await visitor(5, ends_in=60)  # renewal at risk: ends on the 60th day
    await visitor(5, ends_in=61)  # new: ends later
    # 22:00 in New York on the reference date is already the next day in UTC.
    member = await create_member(session)
    await create_checkin(
        session,
        venue=venue,
        member=member,
        scanned_at=datetime(2026, 7, 1, 2, tzinfo=UTC),
        timezone=ZONE,
    )
    await session.commit()

    def counts(report: segments.SegmentsReport) -> dict[str, int]:
        return {s.segment: s.visitors for s in report.segments}

    on_the_day = await segments_report(session, institution_id=institution.id, as_of=AS_OF)
    assert (on_the_day.visitors, counts(on_the_day)) == (
        10,
        {"renewal_at_risk": 1, "lapsed": 2, "new": 3, "loyal": 1, "regular": 3},
    )
    # A day earlier the late visit lies after the reference date: always the live query.
    day_before = await segments_report(
        session, institution_id=institution.id, as_of=AS_OF - timedelta(days=1)
    )
    assert (day_before.visitors, counts(day_before)) == (
        10,
        {"renewal_at_risk": 0, "lapsed": 2, "new": 4, "loyal": 2, "regular": 2},
    )
    answers = segments._visitor_rows_answer
    assert await answers(session, institution.id, AS_OF) is (segment_source != "checkins")
    assert not await answers(session, institution.id, AS_OF - timedelta(days=1))


async def test_renewal_at_risk_reads_the_last_active_term_of_every_membership(
    session: AsyncSession, segment_source: str
) -> None:
    institution = await create_institution(session)
    venue = await create_venue(session, institution=institution)
    product = await create_product(session)
    soon = AS_OF + timedelta(days=30)

    async def visitor(
        *,
        renewal: TermStatus | None = None,
        auto_renew: bool = False,
        status: MembershipStatus = MembershipStatus.ACTIVE,
        also_auto_renewing: bool = False,
    ) -> None:
        member = await create_member(session)
        membership = await create_membership(
            session,
            product=product,
            holders=[member],
            starts_on=soon - timedelta(days=365),
            ends_on=soon,
            status=status,
            auto_renew=auto_renew,
        )
        if renewal is not None:
            session.add(
                MembershipTerm(
                    membership_id=membership.id,
                    starts_on=soon,
                    ends_on=soon + timedelta(days=365),
                    kind=TermKind.RENEWAL,
                    status=renewal,
                )
            )
        if also_auto_renewing:
            await create_membership(
                session,
                product=product,
                holders=[member],
                starts_on=AS_OF - timedelta(days=10),
                ends_on=AS_OF + timedelta(days=355),
                auto_renew=True,
            )
        await create_checkin(
            session, venue=venue, member=member, scanned_at=noon(AS_OF - timedelta(days=5))
        )

    await visitor()  # at risk
    await visitor(renewal=TermStatus.ACTIVE)  # renewed already: new
    await visitor(renewal=TermStatus.REFUNDED)  # the renewal was refunded: at risk
    await visitor(auto_renew=True)  # renews itself: new
    await visitor(status=MembershipStatus.CANCELLED)  # cancelled: new
    await visitor(status=MembershipStatus.IN_GRACE)  # at risk
    await visitor(also_auto_renewing=True)  # one of two memberships runs out: at risk
    await session.commit()

    report = await segments_report(session, institution_id=institution.id, as_of=AS_OF)
    counts = {s.segment: s.visitors for s in report.segments}
    assert (counts["renewal_at_risk"], counts["new"]) == (4, 3)

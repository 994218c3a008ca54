"""Rule 5: erasing a member changes no figure of any report.

Every report (visits, flows, affinity, network, payouts, the visit export's rows) is taken with
the same period and k before and after the erasure, live over a period that is not standard and
from the stored rollups of a closed month, and must be equal. Only what needs the person may
change, exactly as docs/reports.md says: the contacts export no longer lists them, and the
segments move them out of `renewal_at_risk` into the segment their visits give.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from membership.audit import Actor
from membership.db import create_sessionmaker
from membership.erasure import erase_member
from membership.models import (
    Checkin,
    CheckinResult,
    ClearingModel,
    ClearingPolicy,
    Institution,
    Member,
    Payment,
    PaymentKind,
    PaymentStatus,
)
from membership.payments import provider_from_settings
from membership.settings import Settings
from reports import contacts, export
from reports.affinity import affinity_report, flows_report
from reports.common import Period
from reports.network import network_report
from reports.payouts import payout_statement
from reports.periods import refresh
from reports.segments import segment_rows, segments_report
from reports.visits import visits_report
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)

ZONES = ("Europe/Amsterdam", "America/New_York", "Asia/Kolkata")
PROGRAMME_ZONE = "Europe/Amsterdam"
FIRST_SCAN = datetime(2026, 3, 1, 9, tzinfo=UTC)
DAYS = 45
# Not a standard period: counted live. March is closed by REFRESHED_AT and read from rollups.
LIVE = Period(date(2026, 3, 3), date(2026, 4, 10))
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))
REFRESHED_AT = datetime(2026, 5, 10, tzinfo=UTC)
# Both paths of the segments: from the visitor rows (no visit after the day) and from the
# check-ins (visits after it).
AS_OF = (date(2026, 4, 20), date(2026, 4, 5))
K = 1
OPERATOR = Actor(label="operator")


async def _programme(session: AsyncSession) -> tuple[list[Institution], list[Member]]:
    """Three institutions in three time zones and twelve members visiting them on shared days
    (so there are flows and overlaps), with re-entries, two products and card revenue.

    Member 0, the one to be erased, consents to share their contact and holds a card without
    auto-renew that runs out within 60 days of both reference days: at risk everywhere.
    """
    institutions = [
        await create_institution(
            session, code=f"E{n}", timezone=zone, visit_tariff_minor=500 + 100 * n
        )
        for n, zone in enumerate(ZONES)
    ]
    venues = [await create_venue(session, institution=inst) for inst in institutions]
    products = [await create_product(session), await create_product(session)]
    people = []
    for n in range(12):
        member = await create_member(
            session,
            birth_date=date(1950 + 5 * n, 1 + n % 12, 1 + n),
            postal_code=f"{10 + n % 7}{n:02d} AB",
            share_contact=n % 3 == 0,
        )
        ends = date(2026, 4, 30) if n == 0 else date(2026, 12, 31) + timedelta(days=n)
        membership = await create_membership(
            session,
            product=products[n % 2],
            holders=[member],
            starts_on=ends - timedelta(days=365),
            ends_on=ends,
            auto_renew=n % 4 == 1,
        )
        session.add(
            Payment(
                reference=f"ERASE{n}",
                membership_id=membership.id,
                kind=PaymentKind.PURCHASE,
                status=PaymentStatus.SUCCEEDED,
                provider="local",
                provider_payment_id=f"pi_erase_{n}",
                amount_minor=7500,
                currency="EUR",
                paid_at=FIRST_SCAN + timedelta(days=3 * n),
            )
        )
        people.append(member)
        for day in range(DAYS):
            for place, venue in enumerate(venues):
                if (3 * n + 2 * day + 5 * place) % 7 not in (0, 3):
                    continue
                scanned_at = FIRST_SCAN + timedelta(days=day, hours=2 * place + n % 3)
                await create_checkin(
                    session,
                    venue=venue,
                    member=member,
                    scanned_at=scanned_at,
                    timezone=ZONES[place],
                    product=products[n % 2],
                )
                if (n + day) % 5 == 0:
                    await create_checkin(
                        session,
                        venue=venue,
                        member=member,
                        scanned_at=scanned_at + timedelta(minutes=40),
                        timezone=ZONES[place],
                        product=products[n % 2],
                        result=CheckinResult.REENTRY,
                    )
    session.add(ClearingPolicy(valid_from=date(2015, 1, 1), model=ClearingModel.TARIFF))
    session.add(
        ClearingPolicy(
            valid_from=date(2026, 4, 1),
            model=ClearingModel.POOL,
            payout_share_bp=6000,
            floor_bp=2000,
        )
    )
    await session.commit()
    return institutions, people


async def _figures(session: AsyncSession, institutions: list[Institution]) -> dict[str, Any]:
    """Every report's figures for the same periods and k."""
    figures: dict[str, Any] = {}
    for name, period in (("live", LIVE), ("march", MARCH)):
        figures[f"network {name}"] = await network_report(session, period=period, k=K)
        for inst in institutions:
            key = f"{inst.code} {name}"
            figures[f"visits {key}"] = await visits_report(
                session, institution_id=inst.id, period=period, k=K
            )
            figures[f"flows {key}"] = await flows_report(
                session, institution_id=inst.id, period=period, k=K
            )
            figures[f"affinity {key}"] = await affinity_report(
                session, institution_id=inst.id, period=period, k=K
            )
            figures[f"export {key}"] = await _exported(session, inst, period)
    figures["payouts"] = await payout_statement(
        session, year=2026, currency="EUR", timezone=PROGRAMME_ZONE
    )
    for inst in institutions:
        figures[f"payout {inst.code}"] = await payout_statement(
            session, year=2026, currency="EUR", timezone=PROGRAMME_ZONE, institution_id=inst.id
        )
    await session.commit()
    return figures


async def _exported(session: AsyncSession, inst: Institution, period: Period) -> list[Any]:
    started = await export.start_export(
        session,
        institution_id=inst.id,
        period=period,
        format=export.ExportFormat.CSV,
        secret=b"erasure test secret, long enough",
        actor=OPERATOR,
    )
    return [row async for batch in export.visit_batches(session, started) for row in batch]


async def _segments(
    session: AsyncSession, institutions: list[Institution]
) -> dict[tuple[str, date], dict[str, str]]:
    """Each visitor's segment, per institution and reference day."""
    found = {}
    for inst in institutions:
        for as_of in AS_OF:
            rows = await segment_rows(session, inst.id, as_of)
            found[(inst.code, as_of)] = {
                str(key): str(segment)
                for key, segment in await session.execute(
                    select(rows.c.visitor_key, rows.c.segment)
                )
            }
    await session.commit()
    return found


async def _segment_counts(
    session: AsyncSession, institutions: list[Institution]
) -> dict[tuple[str, date], dict[str, int]]:
    counts = {}
    for inst in institutions:
        for as_of in AS_OF:
            report = await segments_report(session, institution_id=inst.id, as_of=as_of)
            counts[(inst.code, as_of)] = {s.segment: s.visitors for s in report.segments}
    await session.commit()
    return counts


async def _contacts(session: AsyncSession, institutions: list[Institution]) -> set[Any]:
    listed = set()
    for inst in institutions:
        started = await contacts.start_export(
            session, institution_id=inst.id, actor=OPERATOR, as_of=AS_OF[0]
        )
        async for batch in contacts.contact_batches(session, started):
            listed |= {(inst.code, row.member_id) for row in batch}
    await session.commit()
    return listed


async def test_erasure_changes_no_figure_of_any_report(
    session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    institutions, people = await _programme(session)
    erased = people[0]
    key = erased.visitor_key
    await refresh(create_sessionmaker(engine), now=REFRESHED_AT, k=K)
    before = await _figures(session, institutions)
    assert before[f"visits {institutions[0].code} march"].source == "stored"
    assert before[f"visits {institutions[0].code} live"].source == "live"
    assert all(before[f"visits {inst.code} live"].visits > 20 for inst in institutions)
    assert any(before[f"flows {inst.code} live"].before for inst in institutions)
    segments = await _segments(session, institutions)
    counts = await _segment_counts(session, institutions)
    listed = await _contacts(session, institutions)
    assert {member for _, member in listed} >= {erased.id, people[3].id}

    await erase_member(
        session,
        member_id=erased.id,
        actor=OPERATOR,
        provider=provider_from_settings(settings, create_sessionmaker(engine)),
        photo_dir=settings.photo_dir,
        now=datetime.now(UTC),
    )
    await session.commit()

    after = await _figures(session, institutions)
    assert after.keys() == before.keys()
    for name, figures in before.items():
        assert after[name] == figures, name
    assert await _contacts(session, institutions) == {
        (code, member) for code, member in listed if member != erased.id
    }
    moved = await _segments(session, institutions)
    new_counts = await _segment_counts(session, institutions)
    for where, visitors in segments.items():
        # At risk before; after, the segment the visits give: every visit lies within the 90
        # days up to either reference day, so "new". Nobody else moves.
        assert visitors[key] == "renewal_at_risk", where
        assert moved[where] == {**visitors, key: "new"}, where
        expected = dict(counts[where])
        expected["renewal_at_risk"] -= 1
        expected["new"] += 1
        assert new_counts[where] == expected, where
    # The visits are all there under the same key, and no longer lead to anyone.
    links = select(Checkin.member_id, Checkin.card_id).where(Checkin.visitor_key == key)
    kept = (await session.execute(links)).all()
    await session.commit()
    assert kept
    assert set(kept) == {(None, None)}

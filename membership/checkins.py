"""Recording scans: gather the facts, ask the door decision, and let the database settle races.

Two doors scanning one card at the same instant both see "no visit yet today". The counted row
is inserted with ON CONFLICT DO NOTHING against the partial unique index (visitor, institution,
local day) WHERE counted, so exactly one of them counts; the loser re-reads the facts and
records itself as a refusal or a re-entry (DESIGN.md rule 1). The same statement makes a
re-sent scan (same device and client scan id) harmless (rule 2).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from membership import audit, card_numbers, cards, codes, demographics, rollups
from membership.audit import Actor
from membership.clock import local_date
from membership.door import Decision, Facts, Period, Reason, decide, refuse
from membership.errors import Conflict, DomainError, NotFound
from membership.models import (
    Card,
    Checkin,
    CheckinResult,
    Device,
    Institution,
    Member,
    Membership,
    Product,
    TermStatus,
    product_institutions,
)
from membership.pagination import flush_unique

_TYPED_NUMBER = re.compile(r"^[\d\s\-]{1,40}$")
_ADMITTED = (CheckinResult.ADMITTED, CheckinResult.REENTRY)


@dataclass(frozen=True)
class Scan:
    """One scan as a device reports it."""

    code: str
    client_scan_id: str
    scanned_at: datetime
    # Set when the device decided offline: that decision happened at the door and stands.
    offline_result: CheckinResult | None = None
    offline_reason: str | None = None


@dataclass(frozen=True)
class ScanOutcome:
    checkin: Checkin
    card: Card | None
    member: Member | None
    product: Product | None
    valid_until: date | None
    visits_today: int
    replayed: bool


@dataclass(frozen=True)
class _Identified:
    card: Card | None
    scanned_version: int | None
    refusal: Reason | None


def _identify_code(
    text: str, *, keys: Mapping[str, Ed25519PublicKey], programme: str
) -> tuple[str | None, int | None, Reason | None]:
    """Card number and version from a QR text or a typed number, or the refusal."""
    if _TYPED_NUMBER.match(text):
        try:
            return card_numbers.normalise(text), None, None
        except card_numbers.InvalidCardNumber:
            return None, None, Reason.INVALID_CODE
    # The printed valid-until may be stale after a renewal: online, the database decides
    # validity, so an authentic but "expired" code is still identified.
    verification = codes.verify(text, keys=keys, programme=programme, today=date.min)
    if verification.code is None:
        return None, None, Reason.INVALID_CODE
    return verification.code.card_number, verification.code.card_version, None


async def _load_card(
    session: AsyncSession, *, number: str | None = None, card_id: uuid.UUID | None = None
) -> Card | None:
    """The card with all the door needs, in two round trips (card row joined, then terms)."""
    condition = Card.number == number if number is not None else Card.id == card_id
    return await session.scalar(
        select(Card)
        .where(condition)
        .options(
            joinedload(Card.member),
            joinedload(Card.membership).joinedload(Membership.product),
            joinedload(Card.membership).selectinload(Membership.terms),
        )
    )


async def _accepted_here(
    session: AsyncSession, product: Product, institution_id: uuid.UUID
) -> bool:
    if product.accepted_everywhere:
        return True
    listed = await session.scalar(
        select(func.count()).where(
            product_institutions.c.product_id == product.id,
            product_institutions.c.institution_id == institution_id,
        )
    )
    return bool(listed)


@dataclass(frozen=True)
class _Gathered:
    facts: Facts
    admitted_today: int


async def _gather_facts(
    session: AsyncSession,
    *,
    card: Card,
    scanned_version: int | None,
    institution: Institution,
    scanned_at: datetime,
) -> _Gathered:
    """The visitor's scans around this one at this institution, in one indexed query."""
    membership = card.membership
    product = membership.product if membership else None
    zone = ZoneInfo(institution.timezone)
    day = scanned_at.astimezone(zone).date()
    window = timedelta(minutes=institution.anti_passback_minutes)
    day_start = datetime.combine(day, time.min, tzinfo=zone)
    day_end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    admitted = Checkin.result.in_(_ADMITTED)
    in_window = and_(
        admitted, Checkin.scanned_at > scanned_at - window, Checkin.scanned_at < scanned_at + window
    )
    today = Checkin.local_date == day
    row = (
        await session.execute(
            select(
                func.max(Checkin.scanned_at).filter(in_window),
                func.count().filter(Checkin.counted, today),
                func.count().filter(admitted, today),
            ).where(
                Checkin.visitor_key == card.member.visitor_key,
                Checkin.institution_id == institution.id,
                # Bounds on the indexed column keep a loyal visitor's years of scans out of it.
                Checkin.scanned_at > min(scanned_at - window, day_start) - timedelta(hours=1),
                Checkin.scanned_at < max(scanned_at + window, day_end) + timedelta(hours=1),
            )
        )
    ).one()
    last_admitted, counted_today, admitted_today = row
    counted_on_card = 0
    if card.visit_limit is not None:
        counted_on_card = (
            await session.scalar(
                select(func.count()).where(Checkin.card_id == card.id, Checkin.counted)
            )
            or 0
        )
    facts = Facts(
        scanned_at=scanned_at,
        local_day=day,
        card_status=card.status,
        card_version=card.version,
        scanned_version=scanned_version,
        card_expires_at=card.expires_at,
        visit_limit=card.visit_limit,
        visits_counted_on_card=counted_on_card,
        membership_status=membership.status if membership else None,
        periods=tuple(
            Period(term.starts_on, term.ends_on)
            for term in (membership.terms if membership else [])
            if term.status is TermStatus.ACTIVE
        ),
        grace_days=product.grace_days if product else 0,
        accepted_here=product is not None
        and await _accepted_here(session, product, institution.id),
        anti_passback=window,
        last_admitted_here_at=last_admitted,
        counted_here_today=bool(counted_today),
    )
    return _Gathered(facts=facts, admitted_today=admitted_today or 0)


def _insert(dialect: str, values: dict[str, Any]) -> Any:
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Checkin)
    return statement.values(**values).on_conflict_do_nothing().returning(Checkin)


async def _find(session: AsyncSession, device_id: uuid.UUID, client_scan_id: str) -> Checkin | None:
    return await session.scalar(
        select(Checkin).where(
            Checkin.device_id == device_id, Checkin.client_scan_id == client_scan_id
        )
    )


def _offline_stands(scan: Scan, decision: Decision, facts: Facts) -> tuple[Decision, bool]:
    """An offline decision happened at the door, so it is what gets recorded.

    A refusal stays a refusal with the device's reason. An admission stays an admission, counted
    unless the visitor was counted here today already, and flagged for review when the server
    would have refused (a card blocked after the device last synced).
    """
    if scan.offline_result is None:
        return decision, False
    if scan.offline_result is CheckinResult.REFUSED:
        fallback = Reason.OFFLINE_REFUSED if decision.admitted else decision.reason
        return refuse(_reason(scan.offline_reason) or fallback), False
    if decision.admitted:
        return decision, False
    counted = not facts.counted_here_today
    result = CheckinResult.ADMITTED if counted else CheckinResult.REENTRY
    return Decision(result, decision.reason, counted=counted), True


def _reason(raw: str | None) -> Reason | None:
    try:
        return Reason(raw) if raw else None
    except ValueError:
        return None


async def record_scan(
    session: AsyncSession,
    *,
    device: Device,
    scan: Scan,
    received_at: datetime,
    keys: Mapping[str, Ed25519PublicKey],
    programme: str,
) -> ScanOutcome:
    """Decide and store one scan at `device`'s venue; the same scan sent again changes nothing.

    A re-sent scan is not looked up first: the insert's ON CONFLICT finds it, which keeps the
    common case (a new scan) one round trip shorter.
    """
    institution = device.venue.institution
    number, scanned_version, refusal = _identify_code(scan.code, keys=keys, programme=programme)
    card = await _load_card(session, number=number) if number else None
    if refusal is None and card is None:
        refusal = Reason.UNKNOWN_CARD
    dialect = session.get_bind().dialect.name

    for _attempt in range(3):
        flagged = False
        admitted_before = 0
        if card is None or refusal is not None:
            decision = refuse(refusal or Reason.UNKNOWN_CARD)
        else:
            gathered = await _gather_facts(
                session,
                card=card,
                scanned_version=scanned_version,
                institution=institution,
                scanned_at=scan.scanned_at,
            )
            admitted_before = gathered.admitted_today
            decision, flagged = _offline_stands(scan, decide(gathered.facts), gathered.facts)
        member = card.member if card else None
        values: dict[str, Any] = {
            "client_scan_id": scan.client_scan_id,
            "device_id": device.id,
            "institution_id": institution.id,
            "venue_id": device.venue_id,
            "card_id": card.id if card else None,
            "card_version": scanned_version,
            "member_id": member.id if member else None,
            "visitor_key": member.visitor_key if member else None,
            "product_id": card.membership.product_id if card and card.membership else None,
            "scanned_at": scan.scanned_at,
            "received_at": received_at,
            "local_date": local_date(scan.scanned_at, institution.timezone),
            "result": decision.result,
            "reason": decision.reason.value,
            "counted": decision.counted,
            "offline": scan.offline_result is not None,
            "flagged": flagged,
        }
        if member is not None:
            # Fixed now, so that erasing the member later changes no report (rule 5).
            values["age_band"] = demographics.age_band(member.birth_date, values["local_date"])
            values["region"] = demographics.region(member.postal_code)
        checkin = await session.scalar(_insert(dialect, values))
        if checkin is not None:
            rollups.count_checkin(session, checkin, timezone=institution.timezone)
            visits_today = admitted_before + (1 if decision.admitted else 0)
            return _outcome_of(checkin, card=card, replayed=False, visits_today=visits_today)
        existing = await _find(session, device.id, scan.client_scan_id)
        if existing is not None:
            return await _outcome(session, existing, replayed=True)
        # Another door counted this visitor first: the next round sees its visit.
    raise RuntimeError("check-in kept conflicting; the unique index and decision disagree")


async def _outcome(session: AsyncSession, checkin: Checkin, *, replayed: bool) -> ScanOutcome:
    """The answer for a stored scan (a replay or an override), read back from the database."""
    card = await _load_card(session, card_id=checkin.card_id) if checkin.card_id else None
    visits_today = 0
    if checkin.visitor_key is not None:
        visits_today = (
            await session.scalar(
                select(func.count()).where(
                    Checkin.visitor_key == checkin.visitor_key,
                    Checkin.institution_id == checkin.institution_id,
                    Checkin.local_date == checkin.local_date,
                    Checkin.result.in_(_ADMITTED),
                )
            )
            or 0
        )
    return _outcome_of(checkin, card=card, replayed=replayed, visits_today=visits_today)


def _outcome_of(
    checkin: Checkin, *, card: Card | None, replayed: bool, visits_today: int
) -> ScanOutcome:
    membership = card.membership if card else None
    valid_until = None
    if card is not None and membership is not None:
        with contextlib.suppress(DomainError):
            valid_until = cards.valid_until(card)
    return ScanOutcome(
        checkin=checkin,
        card=card,
        member=card.member if card else None,
        product=membership.product if membership else None,
        valid_until=valid_until,
        visits_today=visits_today,
        replayed=replayed,
    )


class NotRefused(Conflict):
    code = "checkin-not-refused"
    title = "Only a refused scan can be overridden"


async def override(
    session: AsyncSession,
    *,
    checkin_id: int,
    reason: str,
    institution_scope: uuid.UUID | None,
    actor: Actor,
    now: datetime,
) -> ScanOutcome:
    """A manager admits a refused card; it counts unless the visitor was counted here today.

    `institution_scope` is the manager's institution (None for the operator): a scan at
    another institution is reported as not found, not as forbidden, so ids reveal nothing.
    """
    checkin = await session.get(Checkin, checkin_id, with_for_update=True)
    if checkin is None or (
        institution_scope is not None and checkin.institution_id != institution_scope
    ):
        raise NotFound("No such check-in.")
    if checkin.result is not CheckinResult.REFUSED:
        raise NotRefused()
    counted_today = checkin.visitor_key is not None and bool(
        await session.scalar(
            select(func.count()).where(
                Checkin.visitor_key == checkin.visitor_key,
                Checkin.institution_id == checkin.institution_id,
                Checkin.local_date == checkin.local_date,
                Checkin.counted,
            )
        )
    )
    before = {"result": checkin.result.value, "reason": checkin.reason}
    zone = (await session.get_one(Institution, checkin.institution_id)).timezone
    counter_before = rollups.key_of(checkin, timezone=zone)
    checkin.result = CheckinResult.REENTRY if counted_today else CheckinResult.ADMITTED
    checkin.counted = not counted_today and checkin.visitor_key is not None
    checkin.reason = Reason.OVERRIDE.value
    checkin.override_reason = reason
    checkin.overridden_by_id = actor.staff_user_id
    await flush_unique(session, conflict=Conflict("The visit was counted at the same moment."))
    rollups.note(session, counter_before, -1)
    rollups.count_checkin(session, checkin, timezone=zone)
    await audit.record(
        session,
        actor=actor,
        action="checkin.override",
        entity_type="checkin",
        entity_id=str(checkin.id),
        institution_id=checkin.institution_id,
        changes={"before": before, "reason": reason, "counted": checkin.counted, "at": str(now)},
    )
    return await _outcome(session, checkin, replayed=False)


async def holder_photo(
    session: AsyncSession, *, checkin_id: int, device_id: uuid.UUID
) -> str | None:
    """The stored photo of the holder a device has just scanned, and of no one else.

    Tying the photo to the device's own scan keeps a device key from browsing photos (rule 5).
    """
    checkin = await session.get(Checkin, checkin_id)
    if checkin is None or checkin.device_id != device_id or checkin.member_id is None:
        raise NotFound("No photo for this scan.")
    member = await session.get(Member, checkin.member_id)
    return member.photo_path if member else None

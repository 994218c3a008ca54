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
import typing
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import ColumnElement, Table, and_, bindparam, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit, card_numbers, cards, codes, demographics, rollups
from membership.audit import Actor
from membership.clock import local_date
from membership.door import Decision, Facts, Period, Reason, decide, refuse
from membership.errors import Conflict, DomainError, NotFound
from membership.models import (
    Card,
    CardStatus,
    Checkin,
    CheckinResult,
    Device,
    Institution,
    Member,
    Membership,
    MembershipStatus,
    MembershipTerm,
    Product,
    TermStatus,
    product_institutions,
)
from membership.pagination import flush_unique

_TYPED_NUMBER = re.compile(r"^[\d\s\-]{1,40}$")


@dataclass(frozen=True)
class Scan:
    """One scan as a device reports it."""

    code: str
    client_scan_id: str
    scanned_at: datetime
    # Set when the device decided offline: that decision happened at the door and stands.
    offline_result: CheckinResult | None = None
    offline_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """What the doorman sees about a card: who holds it, on what product, until when."""

    name: str
    has_photo: bool
    product_name: str | None
    product_code: str | None
    valid_until: date | None
    card_number: str


@dataclass(frozen=True)
class ScanOutcome:
    checkin: Checkin
    holder: Holder | None
    visits_today: int
    replayed: bool


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


# The door reads plain columns with Core statements built once at import: a scan is the hottest
# path of the service, and loading ORM objects (identity map, relationships) or building and
# hashing a new statement per scan cost more CPU than everything else the door does.
_card = typing.cast(Table, Card.__table__)
_member = typing.cast(Table, Member.__table__)
_membership = typing.cast(Table, Membership.__table__)
_product = typing.cast(Table, Product.__table__)
_term = typing.cast(Table, MembershipTerm.__table__)
_scan = typing.cast(Table, Checkin.__table__)

# One row per paid term (or one row without a term): the card, its holder, membership, product.
_CARD = select(
    _card.c.id,
    _card.c.number,
    _card.c.version,
    _card.c.status,
    _card.c.expires_at,
    _card.c.visit_limit,
    _card.c.member_id,
    _member.c.visitor_key,
    _member.c.first_name,
    _member.c.last_name,
    _member.c.photo_path,
    _member.c.birth_date,
    _member.c.postal_code,
    _member.c.erased_at,
    _membership.c.status.label("membership_status"),
    _membership.c.product_id,
    _product.c.name.label("product_name"),
    _product.c.code.label("product_code"),
    _product.c.grace_days,
    _term.c.starts_on,
    _term.c.ends_on,
).select_from(
    _card.join(_member, _member.c.id == _card.c.member_id)
    .outerjoin(_membership, _membership.c.id == _card.c.membership_id)
    .outerjoin(_product, _product.c.id == _membership.c.product_id)
    .outerjoin(
        _term,
        and_(_term.c.membership_id == _membership.c.id, _term.c.status == TermStatus.ACTIVE),
    )
)
_CARD_BY_ID = _CARD.where(_card.c.id == bindparam("card_id"))


def _visitor_scans_here(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The holder's scans at this institution around this scan; the bounds on `scanned_at` keep
    a loyal visitor's years of scans out of the (visitor key, scanned at) index range."""
    return and_(
        _scan.c.visitor_key == _member.c.visitor_key,
        _scan.c.institution_id == bindparam("institution_id"),
        _scan.c.scanned_at > bindparam("scans_from"),
        _scan.c.scanned_at < bindparam("scans_until"),
        *conditions,
    )


# Admitted or re-entered, as `Decision.admitted`; not an IN list, which is rendered anew per call.
_ADMITTED_HERE = _scan.c.result != CheckinResult.REFUSED
_TODAY = _scan.c.local_date == bindparam("day")
# The card and every fact the decision needs, in one round trip.
_DOOR = _CARD.add_columns(
    or_(
        _product.c.accepted_everywhere,
        exists().where(
            product_institutions.c.product_id == _product.c.id,
            product_institutions.c.institution_id == bindparam("institution_id"),
        ),
    ).label("accepted_here"),
    select(func.max(_scan.c.scanned_at))
    .where(
        _visitor_scans_here(
            _ADMITTED_HERE,
            _scan.c.scanned_at > bindparam("window_from"),
            _scan.c.scanned_at < bindparam("window_until"),
        )
    )
    .scalar_subquery()
    .label("last_admitted"),
    select(func.count())
    .where(_visitor_scans_here(_scan.c.counted, _TODAY))
    .scalar_subquery()
    .label("counted_today"),
    select(func.count())
    .where(_visitor_scans_here(_ADMITTED_HERE, _TODAY))
    .scalar_subquery()
    .label("admitted_today"),
).where(_card.c.number == bindparam("number"))
_COUNTED_ON_CARD = select(func.count()).where(
    _scan.c.card_id == bindparam("card_id"), _scan.c.counted
)
_VISITS_TODAY = select(func.count()).where(
    _scan.c.visitor_key == bindparam("visitor_key"),
    _scan.c.institution_id == bindparam("institution_id"),
    _scan.c.local_date == bindparam("day"),
    _ADMITTED_HERE,
)
# Parameters come at execution: the insert is compiled once per set of columns given.
_INSERT = {
    "postgresql": postgresql.insert(_scan).on_conflict_do_nothing().returning(_scan.c.id),
    "sqlite": sqlite.insert(_scan).on_conflict_do_nothing().returning(_scan.c.id),
}


@dataclass(frozen=True, slots=True)
class _DoorCard:
    """A card as the door sees it, from the rows of `_CARD`."""

    id: uuid.UUID
    number: str
    version: int
    status: CardStatus
    expires_at: datetime | None
    visit_limit: int | None
    member_id: uuid.UUID
    visitor_key: str | None
    name: str
    photo_path: str | None
    birth_date: date | None
    postal_code: str | None
    erased: bool
    membership_status: MembershipStatus | None
    product_id: uuid.UUID | None
    product_name: str | None
    product_code: str | None
    grace_days: int
    periods: tuple[Period, ...]

    @classmethod
    def of(cls, rows: Sequence[Any]) -> _DoorCard:
        """From the rows of `_CARD` for one card: one per paid term."""
        row = rows[0]
        return cls(
            id=row.id,
            number=row.number,
            version=row.version,
            status=row.status,
            expires_at=row.expires_at,
            visit_limit=row.visit_limit,
            member_id=row.member_id,
            visitor_key=row.visitor_key,
            # As Member.full_name.
            name=f"{row.first_name} {row.last_name}".strip(),
            photo_path=row.photo_path,
            birth_date=row.birth_date,
            postal_code=row.postal_code,
            erased=row.erased_at is not None,
            membership_status=row.membership_status,
            product_id=row.product_id,
            product_name=row.product_name,
            product_code=row.product_code,
            grace_days=row.grace_days or 0,
            periods=tuple(Period(r.starts_on, r.ends_on) for r in rows if r.starts_on is not None),
        )

    def holder(self) -> Holder:
        valid_until = None
        if self.membership_status is not None:
            with contextlib.suppress(DomainError):
                valid_until = cards.last_valid_day(
                    [period.ends_on for period in self.periods], self.expires_at
                )
        return Holder(
            name=self.name,
            has_photo=bool(self.photo_path),
            product_name=self.product_name,
            product_code=self.product_code,
            valid_until=valid_until,
            card_number=self.number,
        )


@dataclass(frozen=True, slots=True)
class _Door:
    card: _DoorCard
    facts: Facts
    admitted_today: int


async def _read_door(
    session: AsyncSession,
    *,
    number: str,
    scanned_version: int | None,
    institution: Institution,
    scanned_at: datetime,
) -> _Door | None:
    """The card and the holder's scans around this one at this institution, or None."""
    zone = ZoneInfo(institution.timezone)
    day = scanned_at.astimezone(zone).date()
    window = timedelta(minutes=institution.anti_passback_minutes)
    day_start = datetime.combine(day, time.min, tzinfo=zone)
    day_end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    rows = (
        await session.execute(
            _DOOR,
            {
                "number": number,
                "institution_id": institution.id,
                "day": day,
                "window_from": scanned_at - window,
                "window_until": scanned_at + window,
                "scans_from": min(scanned_at - window, day_start) - timedelta(hours=1),
                "scans_until": max(scanned_at + window, day_end) + timedelta(hours=1),
            },
        )
    ).all()
    if not rows:
        return None
    card = _DoorCard.of(rows)
    row = rows[0]
    counted_on_card = 0
    if card.visit_limit is not None:
        counted_on_card = await session.scalar(_COUNTED_ON_CARD, {"card_id": card.id}) or 0
    facts = Facts(
        scanned_at=scanned_at,
        local_day=day,
        card_status=card.status,
        card_version=card.version,
        scanned_version=scanned_version,
        card_expires_at=card.expires_at,
        visit_limit=card.visit_limit,
        visits_counted_on_card=counted_on_card,
        membership_status=card.membership_status,
        periods=card.periods,
        grace_days=card.grace_days,
        accepted_here=bool(row.accepted_here),
        anti_passback=window,
        last_admitted_here_at=row.last_admitted,
        counted_here_today=bool(row.counted_today),
    )
    return _Door(card=card, facts=facts, admitted_today=row.admitted_today or 0)


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

    A new scan takes two statements: one read of the card with every fact, one insert. A re-sent
    scan is not looked up first: the insert's ON CONFLICT finds it.
    """
    institution = device.venue.institution
    number, scanned_version, refusal = _identify_code(scan.code, keys=keys, programme=programme)
    dialect = session.get_bind().dialect.name

    for _attempt in range(3):
        flagged = False
        admitted_before = 0
        door = (
            await _read_door(
                session,
                number=number,
                scanned_version=scanned_version,
                institution=institution,
                scanned_at=scan.scanned_at,
            )
            if number
            else None
        )
        card = door.card if door else None
        if door is None or refusal is not None:
            decision = refuse(refusal or Reason.UNKNOWN_CARD)
        else:
            admitted_before = door.admitted_today
            decision, flagged = _offline_stands(scan, decide(door.facts), door.facts)
        # An erased holder's card is blocked, but a scanner that was offline may not know yet:
        # its scan keeps no link to the person, as erasure left their earlier visits (rule 5).
        linked = card is not None and not card.erased
        values: dict[str, Any] = {
            "client_scan_id": scan.client_scan_id,
            "device_id": device.id,
            "institution_id": institution.id,
            "venue_id": device.venue_id,
            "card_id": card.id if card and linked else None,
            "card_version": scanned_version,
            "member_id": card.member_id if card and linked else None,
            "visitor_key": card.visitor_key if card else None,
            "product_id": card.product_id if card else None,
            "scanned_at": scan.scanned_at,
            "received_at": received_at,
            "local_date": local_date(scan.scanned_at, institution.timezone),
            "result": decision.result,
            "reason": decision.reason.value,
            "counted": decision.counted,
            "offline": scan.offline_result is not None,
            "flagged": flagged,
            "imported": False,
        }
        if card is not None:
            # Fixed now, so that erasing the member later changes no report (rule 5).
            values["age_band"] = demographics.age_band(card.birth_date, values["local_date"])
            values["region"] = demographics.region(card.postal_code)
        checkin_id = await session.scalar(_INSERT[dialect], values)
        if checkin_id is not None:
            # The row as inserted, not attached to the session: nothing reloads it.
            checkin = Checkin(id=checkin_id, **values)
            rollups.count_checkin(session, checkin, timezone=institution.timezone)
            visits_today = admitted_before + (1 if decision.admitted else 0)
            return ScanOutcome(
                checkin=checkin,
                holder=card.holder() if card else None,
                visits_today=visits_today,
                replayed=False,
            )
        existing = await _find(session, device.id, scan.client_scan_id)
        if existing is not None:
            return await _outcome(session, existing, replayed=True)
        # Another door counted this visitor first: the next round sees its visit.
    raise RuntimeError("check-in kept conflicting; the unique index and decision disagree")


async def record_batch(
    session: AsyncSession,
    *,
    device: Device,
    scans: Sequence[Scan],
    received_at: datetime,
    keys: Mapping[str, Ed25519PublicKey],
    programme: str,
) -> list[ScanOutcome]:
    """Store an offline batch in one transaction; the outcomes come in the order of `scans`.

    The scans are stored card by card (by card number, each card's in scan-time order), not in
    upload order: a counted visit locks its (visitor, institution, day) entry of the unique index
    until commit, so two batches from two doors that count the same visitors in opposite orders
    would each wait for the other, and PostgreSQL would abort one of them. In one global order
    the second simply waits for the first.
    """

    def storage_order(index: int) -> tuple[str, datetime, int]:
        scan = scans[index]
        number, _version, _refusal = _identify_code(scan.code, keys=keys, programme=programme)
        return number or "", scan.scanned_at, index

    outcomes: dict[int, ScanOutcome] = {}
    for index in sorted(range(len(scans)), key=storage_order):
        outcomes[index] = await record_scan(
            session,
            device=device,
            scan=scans[index],
            received_at=received_at,
            keys=keys,
            programme=programme,
        )
    return [outcomes[index] for index in range(len(scans))]


async def _outcome(session: AsyncSession, checkin: Checkin, *, replayed: bool) -> ScanOutcome:
    """The answer for a stored scan (a replay or an override), read back from the database."""
    holder = None
    if checkin.card_id is not None:
        rows = (await session.execute(_CARD_BY_ID, {"card_id": checkin.card_id})).all()
        holder = _DoorCard.of(rows).holder() if rows else None
    visits_today = 0
    if checkin.visitor_key is not None:
        visits_today = (
            await session.scalar(
                _VISITS_TODAY,
                {
                    "visitor_key": checkin.visitor_key,
                    "institution_id": checkin.institution_id,
                    "day": checkin.local_date,
                },
            )
            or 0
        )
    return ScanOutcome(checkin=checkin, holder=holder, visits_today=visits_today, replayed=replayed)


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

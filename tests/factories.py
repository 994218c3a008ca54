"""Plain keyword-only factories with realistic defaults; each flushes and returns the row."""

from __future__ import annotations

import functools
import itertools
import secrets
import uuid
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import card_numbers, demographics, rollups
from membership.clock import local_date, utcnow
from membership.models import (
    Card,
    CardStatus,
    Checkin,
    CheckinResult,
    Institution,
    InstitutionTariff,
    Member,
    Membership,
    MembershipStatus,
    MembershipTerm,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    ProductKind,
    StaffRole,
    StaffToken,
    StaffUser,
    TermKind,
    Venue,
)
from membership.staff import hash_password, hash_token

_sequence = itertools.count(1)


def _next() -> int:
    return next(_sequence)


async def create_institution(
    session: AsyncSession,
    *,
    code: str | None = None,
    name: str | None = None,
    city: str = "Amsterdam",
    timezone: str = "Europe/Amsterdam",
    anti_passback_minutes: int = 15,
    visit_tariff_minor: int = 850,
    admission_price_minor: int = 1750,
    joined_on: date = date(2020, 1, 1),
) -> Institution:
    n = _next()
    institution = Institution(
        code=code or f"INST{n}",
        name=name or f"Museum {n}",
        city=city,
        timezone=timezone,
        anti_passback_minutes=anti_passback_minutes,
        joined_on=joined_on,
    )
    session.add(institution)
    await session.flush()
    session.add(
        InstitutionTariff(
            institution_id=institution.id,
            valid_from=joined_on,
            visit_tariff_minor=visit_tariff_minor,
            admission_price_minor=admission_price_minor,
            currency="EUR",
        )
    )
    await session.flush()
    return institution


async def create_venue(
    session: AsyncSession, *, institution: Institution, code: str | None = None
) -> Venue:
    n = _next()
    venue = Venue(institution_id=institution.id, code=code or f"MAIN{n}", name=f"Entrance {n}")
    session.add(venue)
    await session.flush()
    return venue


async def create_product(
    session: AsyncSession,
    *,
    code: str | None = None,
    kind: ProductKind = ProductKind.ANNUAL,
    price_minor: int = 7500,
    validity_months: int = 12,
    max_holders: int = 1,
    min_age: int | None = None,
    max_age: int | None = None,
    grace_days: int = 14,
    accepted_at: list[Institution] | None = None,
) -> Product:
    product = Product(
        code=code or f"PROD{_next()}",
        name="Annual card",
        kind=kind,
        price_minor=price_minor,
        currency="EUR",
        vat_rate_bp=900,
        validity_months=validity_months,
        min_age=min_age,
        max_age=max_age,
        max_holders=max_holders,
        grace_days=grace_days,
        accepted_everywhere=accepted_at is None,
        accepted_at=accepted_at or [],
    )
    session.add(product)
    await session.flush()
    return product


async def create_member(
    session: AsyncSession,
    *,
    first_name: str = "Anna",
    last_name: str | None = None,
    email: str | None = None,
    birth_date: date | None = date(1985, 5, 17),
    postal_code: str = "1017 AB",
    language: str = "nl",
    share_contact: bool = False,
    marketing_opt_in: bool = False,
) -> Member:
    n = _next()
    now = utcnow()
    member = Member(
        first_name=first_name,
        last_name=last_name or f"de Vries {n}",
        email=email or f"member{n}@example.org",
        birth_date=birth_date,
        postal_code=postal_code,
        language=language,
        share_contact=share_contact,
        share_contact_at=now if share_contact else None,
        marketing_opt_in=marketing_opt_in,
        marketing_opt_in_at=now if marketing_opt_in else None,
    )
    session.add(member)
    await session.flush()
    return member


async def create_membership(
    session: AsyncSession,
    *,
    product: Product,
    holders: list[Member],
    starts_on: date | None = None,
    ends_on: date | None = None,
    status: MembershipStatus = MembershipStatus.ACTIVE,
    auto_renew: bool = False,
) -> Membership:
    """An active membership with one term (no payment) around today unless told otherwise."""
    starts_on = starts_on or date.today() - timedelta(days=30)
    ends_on = ends_on or starts_on + timedelta(days=365)
    membership = Membership(
        product_id=product.id, status=status, auto_renew=auto_renew, holders=holders
    )
    session.add(membership)
    await session.flush()
    session.add(
        MembershipTerm(
            membership_id=membership.id,
            starts_on=starts_on,
            ends_on=ends_on,
            kind=TermKind.PURCHASE,
        )
    )
    await session.flush()
    return membership


async def create_card(
    session: AsyncSession,
    *,
    member: Member,
    membership: Membership | None,
    status: CardStatus = CardStatus.ACTIVE,
    version: int = 1,
    issued_at: datetime | None = None,
    number: str | None = None,
) -> Card:
    card = Card(
        id=uuid.uuid4(),
        number=number or card_numbers.generate(),
        version=version,
        status=status,
        member_id=member.id,
        membership_id=membership.id if membership else None,
        issued_at=issued_at or utcnow(),
    )
    session.add(card)
    await session.flush()
    return card


async def create_checkin(
    session: AsyncSession,
    *,
    venue: Venue,
    member: Member,
    scanned_at: datetime,
    timezone: str = "Europe/Amsterdam",
    card: Card | None = None,
    product: Product | None = None,
    result: CheckinResult = CheckinResult.ADMITTED,
    reason: str | None = None,
    counted: bool | None = None,
    visitor_key: str | None = None,
    linked: bool = True,
    checkin_id: int | None = None,
) -> Checkin:
    """A stored scan as the check-in service would leave it, without its door decision.

    `local_date` is derived from `scanned_at` in the institution's `timezone`; an admission is
    counted unless told otherwise; `linked=False` leaves the row as after an erasure. Age band,
    region and the day counters are filled as the check-in service does.
    """
    day = local_date(scanned_at, timezone)
    checkin = Checkin(
        id=checkin_id,
        client_scan_id=uuid.uuid4().hex,
        institution_id=venue.institution_id,
        venue_id=venue.id,
        card_id=card.id if card else None,
        card_version=card.version if card else None,
        member_id=member.id if linked else None,
        visitor_key=visitor_key or member.visitor_key,
        product_id=product.id if product else None,
        scanned_at=scanned_at,
        received_at=scanned_at,
        local_date=day,
        result=result,
        reason=reason or {"admitted": "ok", "reentry": "reentry"}.get(result, "already_used"),
        counted=result == CheckinResult.ADMITTED if counted is None else counted,
        age_band=demographics.age_band(member.birth_date, day),
        region=demographics.region(member.postal_code),
    )
    session.add(checkin)
    await session.flush()
    rollups.count_checkin(session, checkin, timezone=timezone)
    return checkin


STAFF_PASSWORD = "correct horse battery staple"


@functools.cache
def _staff_password_hash() -> str:
    # argon2 is slow on purpose; hashing the shared test password once keeps suites fast.
    return hash_password(STAFF_PASSWORD)


async def create_staff_user(
    session: AsyncSession,
    *,
    role: StaffRole = StaffRole.INSTITUTION_STAFF,
    institution: Institution | None = None,
    email: str | None = None,
    name: str | None = None,
    password: str | None = None,
    active: bool = True,
) -> StaffUser:
    """A staff account whose password is `STAFF_PASSWORD` unless told otherwise."""
    n = _next()
    user = StaffUser(
        email=email or f"staff{n}@example.org",
        name=name or f"Staff Member {n}",
        password_hash=hash_password(password) if password else _staff_password_hash(),
        role=role,
        institution_id=institution.id if institution else None,
        active=active,
    )
    session.add(user)
    await session.flush()
    return user


async def auth_headers(
    session: AsyncSession,
    *,
    staff_user: StaffUser,
    expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
) -> dict[str, str]:
    """A bearer header for `staff_user`, as `POST /v1/auth/login` would issue (no argon2 cost).

    Commit before using it in a request: the API reads the token in its own session.
    """
    token = secrets.token_urlsafe(32)
    session.add(
        StaffToken(
            staff_user_id=staff_user.id,
            token_hash=hash_token(token),
            expires_at=expires_at or utcnow() + timedelta(hours=12),
            revoked_at=revoked_at,
        )
    )
    await session.flush()
    return {"Authorization": f"Bearer {token}"}


async def create_pending_purchase(
    session: AsyncSession,
    *,
    product: Product,
    holders: list[Member],
    provider: str = "stripe",
    checkout_id: str | None = None,
    auto_renew: bool = False,
) -> Payment:
    """A bought but unpaid membership, as `POST /v1/purchases` leaves it at the provider."""
    membership = Membership(
        product_id=product.id,
        status=MembershipStatus.PENDING_PAYMENT,
        auto_renew=auto_renew,
        holders=holders,
    )
    session.add(membership)
    await session.flush()
    n = _next()
    payment = Payment(
        id=uuid.uuid4(),
        reference=f"MK-TEST{n:05d}",
        membership_id=membership.id,
        kind=PaymentKind.PURCHASE,
        status=PaymentStatus.PENDING,
        provider=provider,
        provider_checkout_id=checkout_id or f"cs_test_{n}",
        amount_minor=product.price_minor,
        currency=product.currency,
        vat_rate_bp=product.vat_rate_bp,
    )
    session.add(payment)
    await session.flush()
    return payment


async def move_term_end(
    session: AsyncSession, membership: Membership, days: int, *, timezone: str
) -> None:
    """Shift the membership's one year-long term so that it ends `days` from today (local)."""
    term = await session.scalar(
        select(MembershipTerm).where(MembershipTerm.membership_id == membership.id)
    )
    assert term is not None
    today = local_date(utcnow(), timezone)
    term.starts_on = today + timedelta(days=days) - timedelta(days=365)
    term.ends_on = today + timedelta(days=days)
    await session.commit()

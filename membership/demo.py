"""Demo data: a believable card programme to click through, report on and load-test against.

A dozen fictional institutions in five Dutch cities, the four kinds of product, a few hundred
members with memberships and cards, and a year of check-ins shaped like real door traffic
(weekends and holidays busier, members mostly visiting their own city, loyal and occasional
visitors, museums often visited together, re-entries and refusals). The content is
deterministic for a given seed and day; ids, card numbers and visitor keys stay random, because
the rules for them (never guessable) hold for demo data too.

Bulk rows go in through Core `insert()` in chunks, so seeding takes seconds on either database.
"""

from __future__ import annotations

import calendar
import random
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker
from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import card_numbers, demographics, rollups, seasons
from membership.audit import Actor
from membership.door import Reason
from membership.models import (
    Base,
    Card,
    CardStatus,
    Checkin,
    CheckinResult,
    ClearingModel,
    ClearingPolicy,
    Device,
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
    StaffUser,
    TermKind,
    TermStatus,
    Venue,
    membership_holders,
    new_visitor_key,
    product_institutions,
)
from membership.staff import create_staff_user

TIMEZONE = "Europe/Amsterdam"
_TZ = ZoneInfo(TIMEZONE)
CURRENCY = "EUR"
VAT_BP = 900
DEFAULT_MEMBERS = 400
_CHUNK = 1000
_ACTOR = Actor(label="cli:seed-demo")


@dataclass(frozen=True)
class _InstitutionSpec:
    code: str
    name: str
    city: str
    venues: tuple[tuple[str, str], ...]
    visit_tariff_minor: int
    admission_price_minor: int
    popularity: float
    concert_hall: bool = False
    joined_days_ago: int | None = None


_MAIN = ("MAIN", "Hoofdingang")
_GROUP = ("GROUP", "Groepsingang")
_GARDEN = ("GARDEN", "Tuiningang")

INSTITUTIONS: tuple[_InstitutionSpec, ...] = (
    _InstitutionSpec(
        "AMS-SKH", "Stedelijk Kunsthal", "Amsterdam", (_MAIN, _GROUP), 1050, 2250, 3.0
    ),
    _InstitutionSpec("AMS-FOTO", "Amstel Fotomuseum", "Amsterdam", (_MAIN,), 750, 1600, 1.5),
    _InstitutionSpec(
        "AMS-GRP", "Museum Het Grachtenpand", "Amsterdam", (_MAIN, _GARDEN), 800, 1750, 1.8
    ),
    _InstitutionSpec(
        "AMS-CGZ",
        "Concertgebouw Zuid",
        "Amsterdam",
        (_MAIN, ("FOYER", "Foyeringang")),
        1500,
        3500,
        0.3,
        concert_hall=True,
    ),
    _InstitutionSpec(
        "RTM-MHR",
        "Maritiem Huis Rotterdam",
        "Rotterdam",
        (_MAIN, _GROUP, ("HARBOUR", "Havenpaviljoen")),
        900,
        1900,
        2.2,
    ),
    _InstitutionSpec("RTM-KAM", "Kunsthal aan de Maas", "Rotterdam", (_MAIN,), 950, 2000, 2.0),
    _InstitutionSpec(
        "RTM-DLF", "Museum Delfshaven", "Rotterdam", (_MAIN,), 550, 1200, 0.8, joined_days_ago=150
    ),
    _InstitutionSpec("DHG-HPK", "Haags Prentenkabinet", "Den Haag", (_MAIN,), 850, 1800, 1.6),
    _InstitutionSpec(
        "DHG-HFV", "Museum aan de Hofvijver", "Den Haag", (_MAIN, _GROUP), 1000, 2100, 2.4
    ),
    _InstitutionSpec("UTR-KLK", "Utrechts Klokkenmuseum", "Utrecht", (_MAIN,), 700, 1500, 1.2),
    _InstitutionSpec(
        "UTR-DOM", "Domstad Museum", "Utrecht", (_MAIN, ("TOWER", "Torenentree")), 800, 1700, 1.7
    ),
    _InstitutionSpec(
        "HLM-SCH", "Haarlems Schilderijenhuis", "Haarlem", (_MAIN, _GARDEN), 900, 1900, 1.5
    ),
)
DEMO_INSTITUTION_CODES = tuple(spec.code for spec in INSTITUTIONS)
CONCERT_HALL = "AMS-CGZ"
# Neighbours that visitors often combine on one day (same square, same quay).
_CO_VISITS = {
    "AMS-SKH": "AMS-FOTO",
    "AMS-FOTO": "AMS-SKH",
    "RTM-MHR": "RTM-KAM",
    "RTM-KAM": "RTM-MHR",
    "DHG-HPK": "DHG-HFV",
    "DHG-HFV": "DHG-HPK",
    "UTR-DOM": "UTR-KLK",
    "UTR-KLK": "UTR-DOM",
}
_CO_VISIT_SHARE = 0.35

# Where members live, and the four-digit postal code ranges of each city.
CITIES: dict[str, tuple[float, int, int]] = {
    "Amsterdam": (0.35, 1011, 1109),
    "Rotterdam": (0.22, 3011, 3089),
    "Den Haag": (0.15, 2491, 2599),
    "Utrecht": (0.15, 3511, 3585),
    "Haarlem": (0.13, 2011, 2037),
}
# Dutch postal codes never use SA, SD or SS as their letters.
_POSTAL_LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"


@dataclass(frozen=True)
class _ProductSpec:
    code: str
    name: str
    kind: ProductKind
    price_minor: int
    min_age: int | None
    max_age: int | None
    holders: int
    share: float


PRODUCTS: tuple[_ProductSpec, ...] = (
    _ProductSpec("MK-ADULT", "Museumkaart volwassene", ProductKind.ANNUAL, 7500, 18, None, 1, 0.64),
    # Youth: 17 at the start of validity at the latest, so "up to 18".
    _ProductSpec("MK-YOUTH", "Museumkaart jongeren", ProductKind.YOUTH, 3750, None, 17, 1, 0.16),
    _ProductSpec("MK-DUO", "Museumkaart duo", ProductKind.DUO, 13500, 18, None, 2, 0.12),
    _ProductSpec(
        "CGZ-CLUB", "Concertgebouw Zuid Clubkaart", ProductKind.CLUB, 4500, 16, None, 1, 0.08
    ),
)
GRACE_DAYS = 14


@dataclass(frozen=True)
class DemoLogin:
    """A staff account of the demo; the passwords are printed, so they are for demos only."""

    email: str
    password: str
    name: str
    role: StaffRole
    institution_code: str | None = None


_MANAGER, _STAFF = StaffRole.INSTITUTION_MANAGER, StaffRole.INSTITUTION_STAFF
DEMO_LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin(
        "admin@example.org", "demo-admin-password", "Programmabeheer", StaffRole.OPERATOR_ADMIN
    ),
    DemoLogin(
        "manager@kunsthal.example.nl", "demo-manager-password", "Femke de Wit", _MANAGER, "AMS-SKH"
    ),
    DemoLogin("balie@kunsthal.example.nl", "demo-staff-password", "Sven Bakker", _STAFF, "AMS-SKH"),
    DemoLogin(
        "manager@maritiemhuis.example.nl",
        "demo-manager-password",
        "Yusuf Demir",
        _MANAGER,
        "RTM-MHR",
    ),
    DemoLogin(
        "balie@maritiemhuis.example.nl", "demo-staff-password", "Lotte Jansen", _STAFF, "RTM-MHR"
    ),
)


@dataclass
class DemoSummary:
    """What the seed did; `created` is False when the demo was already there."""

    created: bool
    institutions: int = 0
    venues: int = 0
    products: int = 0
    members: int = 0
    memberships: int = 0
    cards: int = 0
    checkins: int = 0
    logins: tuple[DemoLogin, ...] = field(default=DEMO_LOGINS)


async def demo_present(session: AsyncSession) -> bool:
    """The demo is recognised by its institution codes, so a second run can leave it alone."""
    found = await session.scalar(
        select(func.count())
        .select_from(Institution)
        .where(Institution.code.in_(DEMO_INSTITUTION_CODES))
    )
    return bool(found)


async def seed_demo(
    session: AsyncSession,
    *,
    today: date,
    scale: float = 1.0,
    seed: int = 2024,
) -> DemoSummary:
    """Fill an empty programme with the demo, or change nothing if the demo is already there.

    `today` is the local day the year of check-ins ends before; `scale` shrinks or grows the
    number of members (tests use a small one). The caller commits.
    """
    if await demo_present(session):
        return DemoSummary(created=False)
    builder = _Builder(today=today, rng=random.Random(seed), faker=_faker(seed))
    builder.build(members=max(8, round(DEFAULT_MEMBERS * scale)))
    await builder.write(session)
    existing_policy = await session.scalar(select(func.count()).select_from(ClearingPolicy))
    if not existing_policy:
        await _insert(
            session,
            ClearingPolicy,
            [
                {
                    "id": uuid.uuid4(),
                    "valid_from": date(2015, 1, 1),
                    "model": ClearingModel.POOL,
                    "payout_share_bp": 7000,
                    "floor_bp": 4000,
                }
            ],
        )
    institution_ids = {code: row["id"] for code, row in builder.institutions.items()}
    await rollups.rebuild(session, set(institution_ids.values()))
    taken = set(
        await session.scalars(
            select(StaffUser.email).where(StaffUser.email.in_([x.email for x in DEMO_LOGINS]))
        )
    )
    for login in DEMO_LOGINS:
        if login.email in taken:
            continue  # an account made by hand before the demo keeps its own password
        await create_staff_user(
            session,
            email=login.email,
            name=login.name,
            password=login.password,
            role=login.role,
            institution_id=institution_ids[login.institution_code]
            if login.institution_code
            else None,
            actor=_ACTOR,
        )
    return DemoSummary(
        created=True,
        institutions=len(builder.institutions),
        venues=len(builder.venues),
        products=len(builder.products),
        members=len(builder.members),
        memberships=len(builder.memberships),
        cards=len(builder.cards),
        checkins=len(builder.checkins),
    )


def _faker(seed: int) -> Faker:
    faker = Faker("nl_NL")
    faker.seed_instance(seed)
    return faker


async def _insert(
    session: AsyncSession, table: Table | type[Base], rows: Sequence[dict[str, Any]]
) -> None:
    if not isinstance(table, Table):
        table = Base.metadata.tables[table.__tablename__]
    for start in range(0, len(rows), _CHUNK):
        await session.execute(insert(table), list(rows[start : start + _CHUNK]))


def _local(day: date, minutes: float) -> datetime:
    """A wall-clock time in the Netherlands as UTC (the database keeps UTC, rule of DESIGN)."""
    wall_clock = datetime.combine(day, time(0)) + timedelta(minutes=minutes)
    return wall_clock.replace(tzinfo=_TZ).astimezone(UTC)


def _add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _years_before(day: date, years: int) -> date:
    year = day.year - years
    return date(year, day.month, min(day.day, calendar.monthrange(year, day.month)[1]))


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on `day`, as a product's age limits count it."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _museum_day_weight(day: date, holidays: set[date]) -> float:
    if day in holidays:
        return 2.6
    weight = (0.35, 0.9, 0.9, 1.0, 1.2, 2.4, 2.6)[day.weekday()]  # many close on Mondays
    return weight * (1.6 if seasons.school_holiday(day) else 1.0)


def _hall_day_weight(day: date, holidays: set[date]) -> float:
    if (7, 1) <= (day.month, day.day) <= (8, 25):
        return 0.05  # the concert season rests in summer
    weight = (0.1, 0.7, 0.8, 1.3, 2.0, 2.2, 1.4)[day.weekday()]
    return weight * (1.3 if day in holidays else 1.0)


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(char for char in plain.lower() if char.isalnum())


@dataclass
class _Holder:
    row: dict[str, Any]
    card: dict[str, Any]


@dataclass
class _Plan:
    """One membership with its holders, the frame the visits are drawn in."""

    product: _ProductSpec
    product_id: uuid.UUID
    holders: list[_Holder]
    home_city: str
    starts_on: date
    ends_on: date
    status: MembershipStatus
    cancelled_on: date | None


class _Builder:
    """Builds every row in memory first, so the database sees only a few bulk inserts."""

    def __init__(self, *, today: date, rng: random.Random, faker: Faker) -> None:
        self.today = today
        self.first_day = today - timedelta(days=365)
        self.rng = rng
        self.faker = faker
        self.institutions: dict[str, dict[str, Any]] = {}
        self.specs = {spec.code: spec for spec in INSTITUTIONS}
        self.venues: list[dict[str, Any]] = []
        self.venues_of: dict[str, list[dict[str, Any]]] = {}
        self.devices: dict[uuid.UUID, dict[str, Any]] = {}
        self.tariffs: list[dict[str, Any]] = []
        self.products: dict[str, dict[str, Any]] = {}
        self.members: list[dict[str, Any]] = []
        self.memberships: list[dict[str, Any]] = []
        self.holders: list[dict[str, Any]] = []
        self.terms: list[dict[str, Any]] = []
        self.payments: list[dict[str, Any]] = []
        self.cards: list[dict[str, Any]] = []
        self.checkins: list[dict[str, Any]] = []
        self._emails: set[str] = set()
        self._counted: set[tuple[str, str, date]] = set()
        holidays = seasons.public_holidays(today.year - 1) | seasons.public_holidays(today.year)
        self._days = [self.first_day + timedelta(days=n) for n in range(365)]
        self._museum_weights = [_museum_day_weight(day, holidays) for day in self._days]
        self._hall_weights = [_hall_day_weight(day, holidays) for day in self._days]

    def build(self, *, members: int) -> None:
        self._programme()
        plans = self._memberships(members)
        for plan in plans:
            self._visits(plan)
        self.checkins.sort(key=lambda row: row["scanned_at"])

    async def write(self, session: AsyncSession) -> None:
        await _insert(session, Institution, list(self.institutions.values()))
        await _insert(session, InstitutionTariff, self.tariffs)
        await _insert(session, Venue, self.venues)
        await _insert(session, Device, list(self.devices.values()))
        await _insert(session, Product, list(self.products.values()))
        club = self.products["CGZ-CLUB"]["id"]
        hall = self.institutions[CONCERT_HALL]["id"]
        await _insert(session, product_institutions, [{"product_id": club, "institution_id": hall}])
        await _insert(session, Member, self.members)
        await _insert(session, Membership, self.memberships)
        await _insert(session, membership_holders, self.holders)
        await _insert(session, Payment, self.payments)
        await _insert(session, MembershipTerm, self.terms)
        await _insert(session, Card, self.cards)
        await _insert(session, Checkin, self.checkins)

    # -- the programme -------------------------------------------------------------------------

    def _programme(self) -> None:
        for spec in INSTITUTIONS:
            joined_on = (
                self.today - timedelta(days=spec.joined_days_ago)
                if spec.joined_days_ago
                else date(self.rng.randint(2015, 2021), self.rng.choice((1, 4, 7, 9)), 1)
            )
            institution_id = uuid.uuid4()
            self.institutions[spec.code] = {
                "id": institution_id,
                "code": spec.code,
                "name": spec.name,
                "city": spec.city,
                "timezone": TIMEZONE,
                "anti_passback_minutes": 30 if spec.concert_hall else 15,
                "joined_on": joined_on,
                "active": True,
            }
            self.tariffs.append(
                self._tariff(institution_id, joined_on, spec.visit_tariff_minor - 50, spec)
            )
            new_year = date(self.today.year, 1, 1)
            if joined_on < new_year and self.rng.random() < 0.4:
                # Some institutions raised their tariff this year: old statements must not move.
                self.tariffs.append(
                    self._tariff(institution_id, new_year, spec.visit_tariff_minor, spec)
                )
            venues = []
            for venue_code, venue_name in spec.venues:
                venue_id = uuid.uuid4()
                venue = {
                    "id": venue_id,
                    "institution_id": institution_id,
                    "code": venue_code,
                    "name": f"{venue_name} {spec.name}",
                    "address": f"{self.faker.street_address()}, {self._postal_code(spec.city)} "
                    f"{spec.city}",
                    "active": True,
                }
                venues.append(venue)
                self.devices[venue_id] = {
                    "id": uuid.uuid4(),
                    "venue_id": venue_id,
                    "name": f"Scanner {venue_name.lower()}",
                    "key_hash": None,
                }
            self.venues.extend(venues)
            self.venues_of[spec.code] = venues
        for product in PRODUCTS:
            self.products[product.code] = {
                "id": uuid.uuid4(),
                "code": product.code,
                "name": product.name,
                "kind": product.kind,
                "price_minor": product.price_minor,
                "currency": CURRENCY,
                "vat_rate_bp": VAT_BP,
                "validity_months": 12,
                "min_age": product.min_age,
                "max_age": product.max_age,
                "min_holders": product.holders,
                "max_holders": product.holders,
                "auto_renew_allowed": True,
                "grace_days": GRACE_DAYS,
                "accepted_everywhere": product.kind != ProductKind.CLUB,
                "active": True,
            }

    @staticmethod
    def _tariff(
        institution_id: uuid.UUID, valid_from: date, visit_tariff: int, spec: _InstitutionSpec
    ) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "institution_id": institution_id,
            "valid_from": valid_from,
            "visit_tariff_minor": visit_tariff,
            "admission_price_minor": spec.admission_price_minor,
            "currency": CURRENCY,
        }

    # -- members, memberships, payments and cards ----------------------------------------------

    def _memberships(self, wanted_members: int) -> list[_Plan]:
        plans: list[_Plan] = []
        shares = [product.share for product in PRODUCTS]
        while len(self.members) < wanted_members:
            product = self.rng.choices(PRODUCTS, weights=shares)[0]
            plans.append(self._membership(product, number=len(plans) + 1))
        return plans

    def _membership(self, product: _ProductSpec, *, number: int) -> _Plan:
        rng = self.rng
        if product.kind == ProductKind.CLUB:
            home_city = "Amsterdam" if rng.random() < 0.8 else "Haarlem"
        else:
            home_city = rng.choices(list(CITIES), weights=[c[0] for c in CITIES.values()])[0]
        starts_on = self.today - timedelta(days=rng.randint(1, 540))
        ends_on = _add_months(starts_on, 12)
        cancelled_on: date | None = None
        if ends_on > self.today and rng.random() < 0.03:
            status = MembershipStatus.CANCELLED
            cancelled_on = starts_on + timedelta(days=rng.randrange((self.today - starts_on).days))
        elif ends_on > self.today:
            status = MembershipStatus.ACTIVE
        elif self.today < ends_on + timedelta(days=GRACE_DAYS):
            status = MembershipStatus.IN_GRACE
        else:
            status = MembershipStatus.EXPIRED
        paid_at = _local(starts_on, rng.uniform(8 * 60, 22 * 60))
        sold_at = rng.choice(INSTITUTIONS).code if rng.random() < 0.4 else None
        if product.kind == ProductKind.CLUB:
            sold_at = CONCERT_HALL
        membership_id = uuid.uuid4()
        membership = {
            "id": membership_id,
            "product_id": self.products[product.code]["id"],
            "status": status,
            "auto_renew": status == MembershipStatus.ACTIVE and rng.random() < 0.5,
            "provider_subscription_id": None,
            "cancelled_at": _local(cancelled_on, 11 * 60) if cancelled_on else None,
            # Its one term is cancelled with it, else active (written below).
            "paid_until": None if status == MembershipStatus.CANCELLED else ends_on,
            "created_at": paid_at,
            "updated_at": paid_at,
        }
        self.memberships.append(membership)
        payment_id = uuid.uuid4()
        self.payments.append(
            {
                "id": payment_id,
                "reference": f"MK-DEMO-{number:06d}",
                "membership_id": membership_id,
                "kind": PaymentKind.PURCHASE,
                "status": PaymentStatus.SUCCEEDED,
                "provider": "local",
                "provider_payment_id": f"local_demo_{number:06d}",
                "provider_checkout_id": None,
                "amount_minor": self.products[product.code]["price_minor"],
                "refunded_minor": 0,
                "currency": CURRENCY,
                "vat_rate_bp": VAT_BP,
                "paid_at": paid_at,
                "refund_of_id": None,
                "refund_reason": None,
                "created_at": paid_at,
                "updated_at": paid_at,
            }
        )
        self.terms.append(
            {
                "id": uuid.uuid4(),
                "membership_id": membership_id,
                "starts_on": starts_on,
                "ends_on": ends_on,
                "kind": TermKind.PURCHASE,
                "status": TermStatus.CANCELLED
                if status == MembershipStatus.CANCELLED
                else TermStatus.ACTIVE,
                "payment_id": payment_id,
                "created_at": paid_at,
            }
        )
        card_status = {
            MembershipStatus.ACTIVE: CardStatus.ACTIVE,
            MembershipStatus.IN_GRACE: CardStatus.ACTIVE,
            MembershipStatus.EXPIRED: CardStatus.EXPIRED,
            MembershipStatus.CANCELLED: CardStatus.BLOCKED,
        }[status]
        changed_at = membership["cancelled_at"]
        if status == MembershipStatus.EXPIRED:
            changed_at = _local(ends_on + timedelta(days=GRACE_DAYS), 3 * 60)
        holders: list[_Holder] = []
        family_name = self.faker.last_name()
        first_birth: date | None = None
        for position in range(product.holders):
            # A duo is usually a couple: one postal code, often one surname, similar ages.
            last_name = (
                family_name if position == 0 or rng.random() < 0.6 else self.faker.last_name()
            )
            member = self._member(
                product=product,
                city=home_city,
                last_name=last_name,
                starts_on=starts_on,
                paid_at=paid_at,
                near_birth=first_birth,
                postal_code=holders[0].row["postal_code"] if holders else None,
            )
            first_birth = member["birth_date"]
            card = {
                "id": uuid.uuid4(),
                "number": card_numbers.generate(),
                "version": 1,
                "status": card_status,
                "member_id": member["id"],
                "membership_id": membership_id,
                "issued_at": paid_at,
                "expires_at": None,
                "visit_limit": None,
                "status_reason": "membership cancelled" if cancelled_on else None,
                "status_changed_at": changed_at,
                "replaced_by_id": None,
                "issued_by_institution_id": self.institutions[sold_at]["id"] if sold_at else None,
                "imported": False,
                "created_at": paid_at,
                "updated_at": paid_at,
            }
            self.cards.append(card)
            self.holders.append({"membership_id": membership_id, "member_id": member["id"]})
            holders.append(_Holder(row=member, card=card))
        return _Plan(
            product=product,
            product_id=self.products[product.code]["id"],
            holders=holders,
            home_city=home_city,
            starts_on=starts_on,
            ends_on=ends_on,
            status=status,
            cancelled_on=cancelled_on,
        )

    def _member(
        self,
        *,
        product: _ProductSpec,
        city: str,
        last_name: str,
        starts_on: date,
        paid_at: datetime,
        near_birth: date | None,
        postal_code: str | None,
    ) -> dict[str, Any]:
        rng = self.rng
        female = rng.random() < 0.56
        first_name = self.faker.first_name_female() if female else self.faker.first_name_male()
        if product.max_age is not None:
            birth_date = self._birth_date(starts_on, 4, product.max_age)
        elif near_birth is not None:
            low = max(product.min_age or 0, age_on(near_birth, starts_on) - 6)
            birth_date = self._birth_date(starts_on, low, low + 10)
        else:
            low, high = rng.choices(((18, 29), (30, 44), (45, 64), (65, 86)), (12, 18, 35, 35))[0]
            birth_date = self._birth_date(starts_on, max(low, product.min_age or 0), high)
        language = "en" if rng.random() < 0.08 else "nl"
        adult = age_on(birth_date, starts_on) >= 16
        marketing = adult and rng.random() < 0.38
        share = adult and rng.random() < 0.22
        member = {
            "id": uuid.uuid4(),
            "first_name": first_name,
            "last_name": last_name,
            "email": self._email(first_name, last_name),
            "birth_date": birth_date,
            "postal_code": postal_code or self._postal_code(city),
            "language": language,
            "photo_path": None,
            "visitor_key": new_visitor_key(),
            "marketing_opt_in": marketing,
            "marketing_opt_in_at": self._consent_time(paid_at) if marketing else None,
            "share_contact": share,
            "share_contact_at": self._consent_time(paid_at) if share else None,
            "imported": False,
            "erased_at": None,
            "created_at": paid_at,
            "updated_at": paid_at,
        }
        self.members.append(member)
        return member

    def _consent_time(self, paid_at: datetime) -> datetime:
        """Most consents are given at checkout, some later in the member's own account."""
        if self.rng.random() < 0.75:
            return paid_at + timedelta(seconds=self.rng.randint(20, 300))
        latest = datetime.combine(self.today, time(0), tzinfo=_TZ).astimezone(UTC)
        return paid_at + (latest - paid_at) * self.rng.random()

    def _birth_date(self, on: date, youngest: int, oldest: int) -> date:
        earliest = _years_before(on, oldest + 1) + timedelta(days=1)
        latest = _years_before(on, youngest)
        return earliest + timedelta(days=self.rng.randint(0, (latest - earliest).days))

    def _email(self, first_name: str, last_name: str) -> str:
        domain = self.rng.choice(("example.org", "example.nl", "example.nl"))
        local = f"{_ascii(first_name)}.{_ascii(last_name)}"
        email, n = f"{local}@{domain}", 1
        while email in self._emails:
            n += 1
            email = f"{local}{n}@{domain}"
        self._emails.add(email)
        return email

    def _postal_code(self, city: str) -> str:
        _share, low, high = CITIES[city]
        letters = "".join(self.rng.choice(_POSTAL_LETTERS) for _ in range(2))
        if letters in ("SA", "SD", "SS"):
            letters = "SB"
        return f"{self.rng.randint(low, high)} {letters}"

    # -- check-ins -------------------------------------------------------------------------------

    def _visits(self, plan: _Plan) -> None:
        rng = self.rng
        first = max(self.first_day, plan.starts_on)
        stop = min(self.today, plan.ends_on, plan.cancelled_on or self.today)
        if plan.product.kind == ProductKind.CLUB:
            rate = rng.uniform(3, 12)
        else:
            rate = rng.choices(
                (rng.uniform(2, 6), rng.uniform(6, 14), rng.uniform(15, 35)), (55, 33, 12)
            )[0]
        if stop > first:
            self._admissions(plan, first, stop, rate)
        if plan.status == MembershipStatus.EXPIRED and rng.random() < 0.35:
            # Forgot to renew: the door refuses until they do.
            after = plan.ends_on + timedelta(days=GRACE_DAYS)
            if after < self.today:
                self._refusal(plan, self._day_between(after, self.today), Reason.EXPIRED)
        if plan.cancelled_on and plan.cancelled_on < self.today - timedelta(days=1):
            if rng.random() < 0.5:
                day = self._day_between(plan.cancelled_on + timedelta(days=1), self.today)
                self._refusal(plan, day, Reason.BLOCKED)

    def _admissions(self, plan: _Plan, first: date, stop: date, rate: float) -> None:
        rng = self.rng
        start_index = (first - self.first_day).days
        stop_index = (stop - self.first_day).days
        days = self._days[start_index:stop_index]
        visits = round(rate * len(days) / 365 + rng.random() - 0.5)
        if plan.product.kind == ProductKind.CLUB:
            choices, weights = [CONCERT_HALL], [1.0]
        else:
            choices = list(self.specs)
            weights = [self._affinity(plan.home_city, self.specs[code]) for code in choices]
        museum_weights = self._museum_weights[start_index:stop_index]
        hall_weights = self._hall_weights[start_index:stop_index]
        for _ in range(visits):
            code = rng.choices(choices, weights)[0]
            spec = self.specs[code]
            day = rng.choices(days, hall_weights if spec.concert_hall else museum_weights)[0]
            if day < self.institutions[code]["joined_on"]:
                continue
            minutes = self._arrival(day, spec)
            self._visit(plan, code, day, minutes)
            partner = _CO_VISITS.get(code)
            if (
                partner
                and rng.random() < _CO_VISIT_SHARE
                and day >= self.institutions[partner]["joined_on"]
            ):
                later = minutes + rng.uniform(90, 180)
                if later < 16.5 * 60:
                    self._visit(plan, partner, day, later)

    def _affinity(self, home_city: str, spec: _InstitutionSpec) -> float:
        """Mostly their own city, sometimes a day out; personal taste varies the rest."""
        local = 6.0 if spec.city == home_city else 1.0
        return spec.popularity * local * (0.2 + self.rng.random())

    def _arrival(self, day: date, spec: _InstitutionSpec) -> float:
        """Minutes after local midnight: museums 10:00-17:00, the hall before the concert."""
        if not spec.concert_hall:
            return self.rng.triangular(10 * 60, 16.75 * 60, 12.5 * 60)
        if day.weekday() == 6:
            return self.rng.triangular(13.5 * 60, 14.75 * 60, 14.25 * 60)
        return self.rng.triangular(19 * 60, 20.25 * 60, 19.75 * 60)

    def _visit(self, plan: _Plan, code: str, day: date, minutes: float) -> None:
        rng = self.rng
        holders = plan.holders
        if len(holders) > 1 and rng.random() < 0.2:
            holders = [rng.choice(holders)]
        venue = self._venue(code)
        for offset, holder in enumerate(holders):
            key = (holder.row["visitor_key"], code, day)
            if key in self._counted:
                continue
            self._counted.add(key)
            # A duo walks in together: the second card is scanned seconds after the first.
            at = minutes + offset * rng.uniform(0.1, 1.0)
            self._scan(plan, holder, code, venue, day, at, CheckinResult.ADMITTED, Reason.OK, True)
            if rng.random() < 0.012:
                # The card handed back over the barrier: refused inside the anti-passback window.
                self._scan(
                    plan,
                    holder,
                    code,
                    self._venue(code),
                    day,
                    at + rng.uniform(1, 10),
                    CheckinResult.REFUSED,
                    Reason.ALREADY_USED,
                    False,
                )
            elif not self.specs[code].concert_hall and rng.random() < 0.05:
                later = at + rng.uniform(30, 150)
                if later < 17 * 60:
                    self._scan(
                        plan,
                        holder,
                        code,
                        venue,
                        day,
                        later,
                        CheckinResult.REENTRY,
                        Reason.REENTRY,
                        False,
                    )

    def _refusal(self, plan: _Plan, day: date, reason: Reason) -> None:
        holder = self.rng.choice(plan.holders)
        candidates = [
            spec.code
            for spec in INSTITUTIONS
            if spec.city == plan.home_city and not spec.concert_hall
        ]
        code = (
            CONCERT_HALL if plan.product.kind == ProductKind.CLUB else self.rng.choice(candidates)
        )
        if day < self.institutions[code]["joined_on"]:
            return
        minutes = self._arrival(day, self.specs[code])
        self._scan(
            plan,
            holder,
            code,
            self._venue(code),
            day,
            minutes,
            CheckinResult.REFUSED,
            reason,
            False,
        )

    def _venue(self, code: str) -> dict[str, Any]:
        venues = self.venues_of[code]
        if len(venues) == 1 or self.rng.random() < 0.75:
            return venues[0]
        return self.rng.choice(venues[1:])

    def _day_between(self, first: date, stop: date) -> date:
        return first + timedelta(days=self.rng.randrange((stop - first).days))

    def _scan(
        self,
        plan: _Plan,
        holder: _Holder,
        code: str,
        venue: dict[str, Any],
        day: date,
        minutes: float,
        result: CheckinResult,
        reason: Reason,
        counted: bool,
    ) -> None:
        rng = self.rng
        scanned_at = _local(day, minutes)
        offline = rng.random() < 0.02
        delay = (
            timedelta(minutes=rng.uniform(5, 240))
            if offline
            else timedelta(milliseconds=rng.uniform(120, 1500))
        )
        self.checkins.append(
            {
                "client_scan_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "device_id": self.devices[venue["id"]]["id"],
                "institution_id": self.institutions[code]["id"],
                "venue_id": venue["id"],
                "card_id": holder.card["id"],
                "card_version": holder.card["version"],
                "member_id": holder.row["id"],
                "visitor_key": holder.row["visitor_key"],
                "product_id": plan.product_id,
                "scanned_at": scanned_at,
                "received_at": scanned_at + delay,
                "local_date": day,
                "result": result,
                "reason": reason,
                "counted": counted,
                "offline": offline,
                "flagged": False,
                "override_reason": None,
                "overridden_by_id": None,
                "imported": False,
                "age_band": demographics.age_band(holder.row["birth_date"], day),
                "region": demographics.region(holder.row["postal_code"]),
            }
        )


def login_lines(logins: Sequence[DemoLogin]) -> Iterator[str]:
    """The demo logins as printable lines, for the CLI and the README alike."""
    for login in logins:
        where = f" at {login.institution_code}" if login.institution_code else ""
        yield f"{login.email:34} {login.password:24} {login.role.value}{where}"

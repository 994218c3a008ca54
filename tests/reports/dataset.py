"""Small random programmes for the report tests, and brute-force answers computed in Python.

Hypothesis draws a `Dataset` (institutions in several time zones, members, scans around a DST
change and a month end, tariffs, policies, payments); `load` writes it through the factories; the
`brute_*` functions answer each report straight from the definitions in docs/reports.md, with
no SQL and none of the code under test.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import (
    Base,
    CheckinResult,
    ClearingModel,
    ClearingPolicy,
    Institution,
    InstitutionTariff,
    Member,
    MembershipStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    ProductKind,
    Venue,
)
from tests.factories import (
    create_checkin,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_venue,
)

# Around 29 March 2026 (DST in Europe; New York changed on 8 March) and the March/April border.
BASE = date(2026, 3, 20)
SPAN_DAYS = 21
ZONES = ("Europe/Amsterdam", "America/New_York", "Asia/Kolkata", "UTC")
POSTAL_CODES = ("1017 AB", "1071 CX", "3511 AA", "9711", "", None)
PROGRAMME_ZONE = "Europe/Amsterdam"


@dataclass(frozen=True)
class MemberSpec:
    birth: date | None
    postal: str | None
    share: bool
    erased: bool
    product: int
    ends_delta: int
    auto_renew: bool
    status: MembershipStatus


@dataclass(frozen=True)
class ScanSpec:
    member: int
    institution: int
    day: int
    minute: int
    blocked: bool
    reentry: bool
    product: int | None
    linked: bool


@dataclass(frozen=True)
class TariffSpec:
    institution: int
    day: int
    tariff: int
    price: int


@dataclass(frozen=True)
class PolicySpec:
    valid_from: date
    model: ClearingModel
    share_bp: int
    floor_bp: int


@dataclass(frozen=True)
class PaymentSpec:
    day: int
    minute: int
    amount: int
    kind: PaymentKind
    status: PaymentStatus
    currency: str


@dataclass(frozen=True)
class Dataset:
    zones: list[str]
    base_tariffs: list[tuple[int, int]]
    members: list[MemberSpec]
    scans: list[ScanSpec]
    tariffs: list[TariffSpec]
    policies: list[PolicySpec]
    payments: list[PaymentSpec]
    k: int
    start: int
    length: int
    as_of: int

    @property
    def period(self) -> tuple[date, date]:
        first = BASE + timedelta(days=self.start)
        return first, first + timedelta(days=self.length - 1)

    @property
    def as_of_date(self) -> date:
        return BASE + timedelta(days=self.as_of)


@dataclass(frozen=True)
class Record:
    """One stored check-in as the brute force sees it."""

    visitor: int
    institution: int
    at: datetime
    local: date
    result: str
    reason: str
    counted: bool
    product: int | None
    linked: bool


@st.composite
def datasets(draw: st.DrawFn, *, max_scans: int = 50) -> Dataset:
    n_inst = draw(st.integers(2, 4))
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=n_inst, max_size=n_inst))
    base_tariffs = draw(
        st.lists(
            st.tuples(st.integers(0, 2000), st.integers(0, 3000)),
            min_size=n_inst,
            max_size=n_inst,
        )
    )
    members = draw(
        st.lists(
            st.builds(
                MemberSpec,
                birth=st.one_of(st.none(), st.dates(date(1930, 1, 1), date(2025, 12, 31))),
                postal=st.sampled_from(POSTAL_CODES),
                share=st.booleans(),
                erased=st.sampled_from([False, False, True]),
                product=st.integers(0, 1),
                ends_delta=st.integers(-10, 90),
                auto_renew=st.booleans(),
                status=st.sampled_from(
                    [MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE, MembershipStatus.EXPIRED]
                ),
            ),
            min_size=1,
            max_size=6,
        )
    )
    scans = draw(
        st.lists(
            st.builds(
                ScanSpec,
                member=st.integers(0, len(members) - 1),
                institution=st.integers(0, n_inst - 1),
                # Mostly a few busy days, so that overlaps, flows and loyal visitors occur.
                day=st.one_of(st.integers(0, 2), st.integers(0, SPAN_DAYS - 1)),
                minute=st.one_of(st.integers(0, 1439), st.sampled_from([0, 30, 1409, 1410, 1439])),
                blocked=st.sampled_from([False, False, False, True]),
                reentry=st.booleans(),
                product=st.one_of(st.none(), st.integers(0, 1)),
                linked=st.sampled_from([True, True, False]),
            ),
            min_size=min(5, max_scans),
            max_size=max_scans,
        )
    )
    tariffs = draw(
        st.lists(
            st.builds(
                TariffSpec,
                institution=st.integers(0, n_inst - 1),
                day=st.integers(1, SPAN_DAYS - 1),
                tariff=st.integers(0, 2000),
                price=st.integers(0, 3000),
            ),
            max_size=3,
            unique_by=lambda t: (t.institution, t.day),
        )
    )
    policy = st.builds(
        PolicySpec,
        valid_from=st.just(date(2020, 1, 1)),
        model=st.sampled_from(list(ClearingModel)),
        share_bp=st.integers(0, 10000),
        floor_bp=st.integers(0, 10000),
    )
    later = st.builds(
        PolicySpec,
        valid_from=st.sampled_from([date(2026, 4, 1), date(2026, 4, 2)]),
        model=st.sampled_from(list(ClearingModel)),
        share_bp=st.integers(0, 10000),
        floor_bp=st.integers(0, 10000),
    )
    policies = [draw(policy), *draw(st.lists(later, max_size=1))]
    payments = draw(
        st.lists(
            st.builds(
                PaymentSpec,
                day=st.integers(-25, SPAN_DAYS + 5),
                minute=st.one_of(st.integers(0, 1439), st.sampled_from([0, 30, 1410])),
                amount=st.integers(0, 100_000),
                kind=st.sampled_from(list(PaymentKind)),
                status=st.sampled_from(list(PaymentStatus)),
                currency=st.sampled_from(["EUR", "EUR", "USD"]),
            ),
            max_size=8,
        )
    )
    start = draw(st.integers(0, SPAN_DAYS - 1))
    return Dataset(
        zones=zones,
        base_tariffs=base_tariffs,
        members=members,
        scans=scans,
        tariffs=tariffs,
        policies=policies,
        payments=payments,
        k=draw(st.integers(1, 3)),
        start=start,
        length=draw(st.integers(1, SPAN_DAYS - start)),
        as_of=draw(
            st.one_of(
                st.integers(0, SPAN_DAYS + 3),
                st.integers(80, 120),
                st.integers(355, 400),
                st.integers(715, 760),
            )
        ),
    )


def scan_time(dataset: Dataset, scan: ScanSpec) -> datetime:
    """The scan's instant: `minute` on the wall clock of its institution, on day `day`."""
    day = BASE + timedelta(days=scan.day)
    zone = ZoneInfo(dataset.zones[scan.institution])
    local = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=scan.minute)
    return local.astimezone(UTC)


def records(dataset: Dataset) -> list[Record]:
    """What the check-in service would store: the first admission per visitor, institution and
    local day is the counted visit; later ones are re-entries or refusals."""
    result: list[Record] = []
    seen: set[tuple[int, int, date]] = set()
    ordered = sorted(dataset.scans, key=lambda s: scan_time(dataset, s))
    for scan in ordered:
        at = scan_time(dataset, scan)
        local = at.astimezone(ZoneInfo(dataset.zones[scan.institution])).date()
        key = (scan.member, scan.institution, local)
        linked = scan.linked and not dataset.members[scan.member].erased
        if scan.blocked:
            outcome, reason, counted = "refused", "card_blocked", False
        elif key in seen:
            outcome, reason = (
                ("reentry", "reentry") if scan.reentry else ("refused", "already_used")
            )
            counted = False
        else:
            seen.add(key)
            outcome, reason, counted = "admitted", "ok", True
        result.append(
            Record(
                scan.member,
                scan.institution,
                at,
                local,
                outcome,
                reason,
                counted,
                scan.product,
                linked,
            )
        )
    return result


@dataclass
class Loaded:
    institutions: list[Institution]
    venues: list[Venue]
    members: list[Member]
    products: list[Product]
    by_id: dict[uuid.UUID, int] = field(default_factory=dict)


async def reset(session: AsyncSession) -> None:
    """Empty every table, so each Hypothesis example starts from a clean database."""
    for table in reversed(Base.metadata.sorted_tables):
        await session.execute(delete(table))
    await session.commit()


async def load(session: AsyncSession, dataset: Dataset) -> Loaded:
    await reset(session)
    institutions = []
    venues = []
    for i, zone in enumerate(dataset.zones):
        tariff, price = dataset.base_tariffs[i]
        institution = await create_institution(
            session,
            code=f"I{i}",
            timezone=zone,
            visit_tariff_minor=tariff,
            admission_price_minor=price,
        )
        institutions.append(institution)
        venues.append(await create_venue(session, institution=institution))
    products = [
        await create_product(session, code="P0"),
        await create_product(session, code="P1", kind=ProductKind.YOUTH),
    ]
    members = []
    memberships = []
    for spec in dataset.members:
        member = await create_member(
            session,
            birth_date=spec.birth,
            postal_code=spec.postal,  # type: ignore[arg-type]
            share_contact=spec.share,
        )
        if spec.erased:
            member.erased_at = datetime(2026, 3, 1, tzinfo=UTC)
        members.append(member)
        ends = dataset.as_of_date + timedelta(days=spec.ends_delta)
        memberships.append(
            await create_membership(
                session,
                product=products[spec.product],
                holders=[member],
                starts_on=ends - timedelta(days=365),
                ends_on=ends,
                status=spec.status,
                auto_renew=spec.auto_renew,
            )
        )
    for scan, record in zip(
        sorted(dataset.scans, key=lambda s: scan_time(dataset, s)), records(dataset), strict=True
    ):
        await create_checkin(
            session,
            venue=venues[scan.institution],
            member=members[scan.member],
            scanned_at=record.at,
            timezone=dataset.zones[scan.institution],
            product=None if scan.product is None else products[scan.product],
            result=CheckinResult(record.result),
            reason=record.reason,
            counted=record.counted,
            linked=record.linked,
        )
    for tariff in dataset.tariffs:
        session.add(
            InstitutionTariff(
                institution_id=institutions[tariff.institution].id,
                valid_from=BASE + timedelta(days=tariff.day),
                visit_tariff_minor=tariff.tariff,
                admission_price_minor=tariff.price,
                currency="EUR",
            )
        )
    for policy in dataset.policies:
        session.add(
            ClearingPolicy(
                valid_from=policy.valid_from,
                model=policy.model,
                payout_share_bp=policy.share_bp,
                floor_bp=policy.floor_bp,
            )
        )
    for n, payment in enumerate(dataset.payments):
        day = BASE + timedelta(days=payment.day)
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(PROGRAMME_ZONE))
        session.add(
            Payment(
                reference=f"PAY{n}",
                membership_id=memberships[0].id,
                kind=payment.kind,
                status=payment.status,
                provider="local",
                provider_payment_id=f"pp{n}",
                amount_minor=payment.amount,
                currency=payment.currency,
                paid_at=(local + timedelta(minutes=payment.minute)).astimezone(UTC),
            )
        )
    await session.commit()
    loaded = Loaded(institutions, venues, members, products)
    loaded.by_id = {inst.id: i for i, inst in enumerate(institutions)}
    return loaded


# ---------------------------------------------------------------- brute force, per definition


def visits_of(dataset: Dataset, institution: int | None) -> list[Record]:
    first, last = dataset.period
    return [
        r
        for r in records(dataset)
        if r.counted
        and first <= r.local <= last
        and (institution is None or r.institution == institution)
    ]


def visitor_set(dataset: Dataset, institution: int | None) -> set[int]:
    return {r.visitor for r in visits_of(dataset, institution)}


def age(birth: date, day: date) -> int:
    return (int(day.strftime("%Y%m%d")) - int(birth.strftime("%Y%m%d"))) // 10000


BANDS = (
    (0, "0-12"),
    (13, "13-17"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-54"),
    (55, "55-64"),
    (65, "65+"),
)


def band_of(years: int) -> str:
    label = BANDS[0][1]
    for low, name in BANDS:
        if years >= low:
            label = name
    return label


def withhold(cells: dict[str, int], k: int, order: list[str]) -> dict[str, int | None]:
    """Primary and secondary suppression, written out plainly."""
    out: dict[str, int | None] = {}
    for key, value in cells.items():
        out[key] = None if 0 < value < k else value
    hidden = [key for key in out if out[key] is None]
    if len(hidden) == 1:
        candidates = [key for key in order if key in out and out[key] is not None and out[key] != 0]
        if candidates:
            smallest = min(candidates, key=lambda key: (cells[key], order.index(key)))
            out[smallest] = None
    return out


def brute_visits(dataset: Dataset, institution: int) -> dict[str, object]:
    first, last = dataset.period
    visits = visits_of(dataset, institution)
    visitors = {r.visitor for r in visits}
    per_visitor: dict[int, int] = defaultdict(int)
    for r in visits:
        per_visitor[r.visitor] += 1
    everything = records(dataset)
    earliest: dict[int, date] = {}
    for r in everything:
        if r.counted and r.institution == institution:
            earliest[r.visitor] = min(earliest.get(r.visitor, r.local), r.local)

    def buckets(label: Callable[[date], date]) -> list[tuple[date, int, int]]:
        groups: dict[date, list[Record]] = defaultdict(list)
        for r in visits:
            groups[label(r.local)].append(r)
        return sorted((d, len(rs), len({r.visitor for r in rs})) for d, rs in groups.items())

    zone = ZoneInfo(dataset.zones[institution])
    heat: dict[tuple[int, int], int] = defaultdict(int)
    for r in visits:
        heat[(r.local.weekday(), r.at.astimezone(zone).hour)] += 1
    not_counted: dict[tuple[str, str], int] = defaultdict(int)
    for r in everything:
        if r.institution == institution and first <= r.local <= last and r.result != "admitted":
            not_counted[(r.result, r.reason)] += 1
    frequency: dict[int, int] = defaultdict(int)
    for n in per_visitor.values():
        frequency[min(n, 10)] += 1
    products: dict[int | None, list[Record]] = defaultdict(list)
    for r in visits:
        products[r.product].append(r)
    # Each visitor once, as on the latest visit in the period: the age on that visit's day and
    # the region, both as the scan stored them, whether or not the member link is erased since.
    latest: dict[int, date] = {}
    for r in visits:
        latest[r.visitor] = max(latest.get(r.visitor, r.local), r.local)
    ages: dict[str, int] = defaultdict(int)
    regions: dict[str, int] = defaultdict(int)
    for v in visitors:
        spec = dataset.members[v]
        years = age(spec.birth, latest[v]) if spec.birth is not None else -1
        ages[band_of(years) if years >= 0 else "unknown"] += 1
        regions[spec.postal[:2] if spec.postal else "unknown"] += 1
    band_order = [*(name for _, name in BANDS), "unknown"]
    region_order = [*sorted(k for k in regions if k != "unknown"), "unknown"]
    repeat = sum(1 for n in per_visitor.values() if n >= 2)
    return {
        "visits": len(visits),
        "visitors": len(visitors),
        "new_visitors": sum(1 for v in visitors if earliest[v] >= first),
        "repeat_visitors": repeat,
        "repeat_visit_rate": round(repeat / len(visitors), 6) if visitors else None,
        "by_day": buckets(lambda d: d),
        "by_week": buckets(lambda d: d - timedelta(days=d.weekday())),
        "by_month": buckets(lambda d: d.replace(day=1)),
        "heatmap": sorted((d, h, n) for (d, h), n in heat.items()),
        "not_counted": sorted((res, reason, n) for (res, reason), n in not_counted.items()),
        "visits_per_visitor": sorted((n, n == 10, c) for n, c in frequency.items()),
        "product_mix": {
            (None if p is None else f"P{p}"): (len(rs), len({r.visitor for r in rs}))
            for p, rs in products.items()
        },
        "age_bands": [
            (key, value)
            for key, value in sorted(
                withhold(dict(ages), dataset.k, band_order).items(),
                key=lambda kv: band_order.index(kv[0]),
            )
        ],
        "regions": [
            (key, value)
            for key, value in sorted(
                withhold(dict(regions), dataset.k, region_order).items(),
                key=lambda kv: region_order.index(kv[0]),
            )
        ],
    }


def brute_affinity(
    dataset: Dataset, a: int
) -> dict[int, tuple[int, float | None, float | None, float | None] | None]:
    """Per other institution with visitors: (both, share, lift, jaccard), or None if withheld."""
    any_visitors = visitor_set(dataset, None)
    va = visitor_set(dataset, a)
    result: dict[int, tuple[int, float | None, float | None, float | None] | None] = {}
    for b in range(len(dataset.zones)):
        vb = visitor_set(dataset, b)
        if b == a or not vb:
            continue
        both = len(va & vb)
        if both < dataset.k or len(vb) < dataset.k:
            result[b] = None
            continue
        share = both / len(va)
        lift = share / (len(vb) / len(any_visitors))
        result[b] = (both, round(share, 6), round(lift, 6), round(both / len(va | vb), 6))
    return result


def brute_flows(dataset: Dataset, a: int) -> dict[str, dict[int, tuple[int, int] | None]]:
    """Per direction and other institution: (visitors, visits) or None if withheld."""
    first, last = dataset.period
    counted = [r for r in records(dataset) if r.counted]
    out: dict[str, dict[int, tuple[int, int] | None]] = {"before": {}, "after": {}}
    pairs: dict[str, dict[int, list[int]]] = {
        "before": defaultdict(list),
        "after": defaultdict(list),
    }
    for here in counted:
        if here.institution != a or not first <= here.local <= last:
            continue
        for other in counted:
            if other.visitor != here.visitor or other.local != here.local or other.institution == a:
                continue
            if other.at < here.at:
                pairs["before"][other.institution].append(here.visitor)
            elif other.at > here.at:
                pairs["after"][other.institution].append(here.visitor)
    for direction, per in pairs.items():
        for b, visitors in per.items():
            distinct = len(set(visitors))
            out[direction][b] = None if distinct < dataset.k else (distinct, len(visitors))
    return out


def brute_segments(dataset: Dataset, a: int) -> dict[int, str]:
    as_of = dataset.as_of_date
    mine = [r for r in records(dataset) if r.counted and r.institution == a and r.local <= as_of]
    per: dict[int, list[Record]] = defaultdict(list)
    for r in mine:
        per[r.visitor].append(r)
    result: dict[int, str] = {}
    for v, rs in per.items():
        days = sorted(r.local for r in rs)
        if days[-1] < as_of - timedelta(days=729):
            continue
        spec = dataset.members[v]
        # The member link as the window's visits carry it (docs/reports.md, "Segments").
        linked = any(r.linked for r in rs if r.local >= as_of - timedelta(days=729))
        ends = as_of + timedelta(days=spec.ends_delta)
        at_risk = (
            linked
            and not spec.auto_renew
            and spec.status in (MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)
            and as_of < ends <= as_of + timedelta(days=60)
        )
        if at_risk:
            result[v] = "renewal_at_risk"
        elif days[-1] < as_of - timedelta(days=364):
            result[v] = "lapsed"
        elif days[0] >= as_of - timedelta(days=89):
            result[v] = "new"
        elif sum(1 for d in days if d >= as_of - timedelta(days=364)) >= 4:
            result[v] = "loyal"
        else:
            result[v] = "regular"
    return result


def brute_contacts(dataset: Dataset, a: int) -> dict[int, str]:
    segments = brute_segments(dataset, a)
    as_of = dataset.as_of_date
    linked = {
        r.visitor
        for r in records(dataset)
        if r.counted
        and r.institution == a
        and as_of - timedelta(days=729) <= r.local <= as_of
        and r.linked
    }
    return {
        v: s
        for v, s in segments.items()
        if v in linked and dataset.members[v].share and not dataset.members[v].erased
    }


def price_on(dataset: Dataset, institution: int, day: date) -> tuple[int, int]:
    tariff, price = dataset.base_tariffs[institution]
    for change in sorted(dataset.tariffs, key=lambda t: t.day):
        if change.institution == institution and BASE + timedelta(days=change.day) <= day:
            tariff, price = change.tariff, change.price
    return tariff, price


def revenue_of(dataset: Dataset, year: int, month: int) -> int:
    zone = ZoneInfo(PROGRAMME_ZONE)
    total = 0
    for payment in dataset.payments:
        day = BASE + timedelta(days=payment.day)
        local = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
            minutes=payment.minute
        )
        local = local.astimezone(UTC).astimezone(zone)
        if (local.year, local.month) != (year, month) or payment.currency != "EUR":
            continue
        if payment.kind == PaymentKind.REFUND:
            if payment.status == PaymentStatus.SUCCEEDED:
                total -= payment.amount
        elif payment.status in (
            PaymentStatus.SUCCEEDED,
            PaymentStatus.PARTIALLY_REFUNDED,
            PaymentStatus.REFUNDED,
        ):
            total += payment.amount
    return total


def brute_payouts(
    dataset: Dataset, year: int
) -> dict[tuple[int, int, int | None], tuple[int, int]]:
    """(month, institution, product) -> (visits, amount in cents)."""
    cells: dict[tuple[int, int, int | None], list[tuple[int, int]]] = defaultdict(list)
    for r in records(dataset):
        if r.counted and r.local.year == year:
            cells[(r.local.month, r.institution, r.product)].append(
                price_on(dataset, r.institution, r.local)
            )
    out: dict[tuple[int, int, int | None], tuple[int, int]] = {}
    for month in range(1, 13):
        keys = sorted(
            (key for key in cells if key[0] == month),
            key=lambda key: (key[1], "~" if key[2] is None else f"P{key[2]}"),
        )
        if not keys:
            continue
        policy = [p for p in dataset.policies if p.valid_from <= date(year, month, 1)][-1]
        if policy.model == ClearingModel.TARIFF:
            for key in keys:
                out[key] = (len(cells[key]), sum(t for t, _ in cells[key]))
            continue
        weights = {key: sum(p for _, p in cells[key]) for key in keys}
        total_weight = sum(weights.values())
        if total_weight == 0:
            for key in keys:
                out[key] = (len(cells[key]), 0)
            continue
        pool = Fraction(revenue_of(dataset, year, month) * policy.share_bp, 10000)
        rate = max(pool / total_weight, Fraction(policy.floor_bp, 10000))
        exact = {key: rate * weights[key] for key in keys}
        target = int(rate * total_weight + Fraction(1, 2))
        # Hand out cents one at a time to whoever is furthest below their exact amount.
        paid = {key: math.floor(exact[key]) for key in keys}
        while sum(paid.values()) < target:
            best = max(keys, key=lambda key: (exact[key] - paid[key], -keys.index(key)))
            paid[best] += 1
        for key in keys:
            out[key] = (len(cells[key]), paid[key])
    return out


def brute_network(
    dataset: Dataset,
) -> tuple[
    dict[tuple[int, int], tuple[int, float, float, float, float] | None],
    list[tuple[int, int, int, int]],
]:
    """The matrix per pair (a < b) and the top flows (from, to, visitors, visits)."""
    k = dataset.k
    any_visitors = visitor_set(dataset, None)
    sets = {i: visitor_set(dataset, i) for i in range(len(dataset.zones))}
    present = [i for i in sets if sets[i]]
    matrix: dict[tuple[int, int], tuple[int, float, float, float, float] | None] = {}
    for a in present:
        for b in present:
            if a >= b:
                continue
            both = len(sets[a] & sets[b])
            if both < k or len(sets[a]) < k or len(sets[b]) < k:
                matrix[(a, b)] = None
                continue
            matrix[(a, b)] = (
                both,
                round(both / len(sets[a]), 6),
                round(both / len(sets[b]), 6),
                round(both * len(any_visitors) / (len(sets[a]) * len(sets[b])), 6),
                round(both / len(sets[a] | sets[b]), 6),
            )
    first, last = dataset.period
    counted = [r for r in records(dataset) if r.counted]
    moves: dict[tuple[int, int], list[int]] = defaultdict(list)
    for x in counted:
        if not first <= x.local <= last:
            continue
        for y in counted:
            if (
                y.visitor == x.visitor
                and y.local == x.local
                and y.institution != x.institution
                and y.at > x.at
            ):
                moves[(x.institution, y.institution)].append(x.visitor)
    flows = [(a, b, len(set(vs)), len(vs)) for (a, b), vs in moves.items() if len(set(vs)) >= k]
    flows.sort(key=lambda f: (-f[2], -f[3], f[0], f[1]))
    return matrix, flows

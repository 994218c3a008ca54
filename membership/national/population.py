"""Institutions, products, memberships, members, terms and cards: everything a check-in refers to.

They are drawn first, column by column in a fixed order from one seeded generator (so a seed is
a dataset), and kept as arrays that the check-ins (`visits`) and the COPY rows (`tables`) index.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from faker.providers.person.nl_NL import Provider as DutchNames

from membership import seasons
from membership.demographics import AGE_BANDS
from membership.models import CardStatus
from membership.national.arrays import (
    _EPOCH,
    _US_PER_DAY,
    _US_PER_MINUTE,
    Array,
    _add_years,
    _ascii,
    _card_numbers,
    _cdf,
    _day_number,
    _hex,
    _pick,
    _references,
    _uuid4,
    _vocabulary,
    _yyyymmdd,
)
from membership.national.shape import (
    _ACTIVE,
    _AUTO_RENEW_SHARE,
    _CLUB_PRICE,
    _CLUB_SHARE,
    _CLUBS,
    _GARDEN_TYPES,
    _HOLIDAY_FACTOR,
    _IN_GRACE,
    _KIND_SHARE,
    _LAPSED,
    _MANUAL_RENEWAL_RATE,
    _MONTH_WEIGHT,
    _MUSEUM,
    _MUSEUM_TYPES,
    _POSTAL_LETTERS,
    _PRODUCTS,
    _REFUND_SHARE,
    _REFUNDED,
    _REPLACED_CARD_SHARE,
    _SCHOOL_HOLIDAY_FACTOR,
    _THEATRE,
    _THEATRE_TYPES,
    _WEEKDAY_WEIGHT,
    CITIES,
    GRACE_DAYS,
    TIMEZONE,
    NationalSize,
)


class Population:
    """Draws every column in a fixed order from one seeded generator, so a seed is a dataset."""

    def __init__(self, *, today: date, size: NationalSize, seed: int, programme_code: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.age_band_lows = np.array([low for low, _ in AGE_BANDS])
        self.size = size
        self.programme_code = programme_code
        self.today = today
        self.today_n = _day_number(today)
        self.first_day = today - timedelta(days=365)
        self.first_n = _day_number(self.first_day)
        self.pool_from = (self.first_day + timedelta(days=190)).replace(day=1)
        # UTC offsets at noon of every local day a payment or scan can fall on.
        zone = ZoneInfo(TIMEZONE)
        self.offset_base = self.first_n - 4 * 366
        span = [_EPOCH + timedelta(days=n) for n in range(self.offset_base, self.today_n + 400)]
        self.offset_us = np.array(
            [
                int(
                    (
                        zone.utcoffset(datetime(d.year, d.month, d.day, 12)) or timedelta()
                    ).total_seconds()
                )
                * 1_000_000
                for d in span
            ],
            dtype=np.int64,
        )
        window = [self.first_day + timedelta(days=n) for n in range(365)]
        holidays = seasons.public_holidays(self.first_day.year)
        holidays |= seasons.public_holidays(today.year)
        weights = np.array(
            [
                [
                    _MONTH_WEIGHT[kind][d.month - 1]
                    * _WEEKDAY_WEIGHT[kind][d.weekday()]
                    * (_HOLIDAY_FACTOR[kind] if d in holidays else 1.0)
                    * (_SCHOOL_HOLIDAY_FACTOR[kind] if seasons.school_holiday(d) else 1.0)
                    for d in window
                ]
                for kind in range(3)
            ]
        )
        # Per kind, the share of the year's visits before each window day (366 points).
        self.day_cdf = np.concatenate([np.zeros((3, 1)), _cdf(weights)], axis=1)
        self.weekday = np.array([d.weekday() for d in window])
        self.window_yyyymmdd = _yyyymmdd(np.arange(self.first_n, self.today_n))

    def _utc_us(self, days: Array, minutes: Array) -> Array:
        """Microseconds since 2000 (UTC) of a wall-clock minute on a local day."""
        local = days * _US_PER_DAY + np.round(minutes * _US_PER_MINUTE).astype(np.int64)
        result: Array = local - self.offset_us[days - self.offset_base]
        return result

    def build_holders(self) -> None:
        """Everything but the check-ins: institutions, products, members and their cards."""
        self._institutions()
        self._products()
        self._memberships()
        self._members()
        self._terms()
        self._cards()

    # -- institutions and products -------------------------------------------------------

    def _institutions(self) -> None:
        rng, n = self.rng, self.size.institutions
        population = np.array([city[4] for city in CITIES], dtype=np.float64)
        share = population**0.85 / (population**0.85).sum() * n
        per_city = np.floor(share).astype(np.int64)
        per_city[np.argsort(-(share - per_city), kind="stable")[: n - per_city.sum()]] += 1
        city = np.repeat(np.arange(len(CITIES)), per_city)
        # Fame: the big cities hold the famous museums, but a small town can have a star too.
        fame = rng.gumbel(size=n) + 0.9 * np.log(population[city])
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(-fame, kind="stable")] = np.arange(n)
        kind = _pick(_cdf(np.array(_KIND_SHARE)), rng.random(n))
        kind[rank < 8] = _MUSEUM
        admission = np.round((900 + 1500 * (1 - rank / n) + rng.normal(0, 250, n)) / 50) * 50
        admission = np.clip(admission, 600, 2750).astype(np.int64)
        tariff = np.round(admission * rng.uniform(0.38, 0.5, n) / 5).astype(np.int64) * 5
        raise_ = 25 * rng.integers(1, 4, n)
        joined = _day_number(date(2015, 1, 1)) + rng.integers(0, self.first_n - 400 - 5479, n)
        venue_count = np.where(
            rank < 20, 3, _pick(_cdf(np.array([0.7, 0.22, 0.08])), rng.random(n)) + 1
        )
        codes: list[str] = []
        names: list[str] = []
        seen: dict[str, int] = {}
        for index in range(n):
            city_name = CITIES[city[index]][0]
            prefix = _ascii(city_name).upper()[:3]
            seen[prefix] = seen.get(prefix, 0) + 1
            number = seen[prefix] - 1
            codes.append(f"{prefix}-{number + 1:03d}")
            types = (_MUSEUM_TYPES, _THEATRE_TYPES, _GARDEN_TYPES)[kind[index]]
            again = number // len(types)
            names.append(
                f"{types[number % len(types)]} {city_name}" + (f" {again + 1}" if again else "")
            )
        self.i_ids = _uuid4(rng, n)
        self.i_codes, self.i_names, self.i_city, self.i_kind = codes, names, city, kind
        self.i_weight = (rank + 1.0) ** -0.95
        self.i_admission, self.i_tariff, self.i_raise, self.i_joined = (
            admission,
            tariff,
            raise_,
            joined,
        )
        self.i_venue_first = np.concatenate([[0], np.cumsum(venue_count)[:-1]])
        self.i_venue_count = venue_count
        self.venue_institution = np.repeat(np.arange(n), venue_count)
        self.venue_slot = (
            np.arange(len(self.venue_institution)) - self.i_venue_first[self.venue_institution]
        )
        self.venue_ids = _uuid4(rng, len(self.venue_institution))
        self.device_ids = _uuid4(rng, len(self.venue_institution))
        self.tariff_ids = _uuid4(rng, 2 * n)
        self.policy_ids = _uuid4(rng, 2)
        # Where a member of each city goes: popularity times nearness, plus day trips.
        lat = np.array([c[2] for c in CITIES])
        lon = np.array([c[3] for c in CITIES])
        dy = (lat[:, None] - lat[None, :]) * 111.0
        dx = (lon[:, None] - lon[None, :]) * 111.0 * np.cos(np.radians(52.2))
        distance = np.hypot(dx, dy)[:, city]
        self.home_cdf = _cdf(self.i_weight[None, :] * (0.03 + np.exp(-distance / 20.0)))
        # The second stop of a day out: another institution in the same city.
        self.same_city_cdf = _cdf(self.i_weight[None, :] * (city[None, :] == city[:, None]))

    def _products(self) -> None:
        theatres = np.flatnonzero(self.i_kind == _THEATRE)
        theatres = theatres[np.argsort(-self.i_weight[theatres], kind="stable")]
        others = np.flatnonzero(self.i_kind != _THEATRE)
        others = others[np.argsort(-self.i_weight[others], kind="stable")]
        clubs = np.concatenate([theatres, others])[:_CLUBS]
        self.product_codes = [p[0] for p in _PRODUCTS] + [f"CLUB-{self.i_codes[c]}" for c in clubs]
        self.product_names = [p[1] for p in _PRODUCTS] + [
            f"Clubkaart {self.i_names[c]}" for c in clubs
        ]
        self.product_kinds = [p[2] for p in _PRODUCTS] + ["club"] * len(clubs)
        self.product_prices = np.array([p[3] for p in _PRODUCTS] + [_CLUB_PRICE] * len(clubs))
        self.product_ages = [(p[4], p[5]) for p in _PRODUCTS] + [(16, None)] * len(clubs)
        self.product_holders = np.array([p[6] for p in _PRODUCTS] + [1] * len(clubs))
        self.product_club = np.concatenate([np.full(len(_PRODUCTS), -1), clubs])
        self.product_ids = _uuid4(self.rng, len(self.product_codes))

    # -- memberships, members, terms, cards ----------------------------------------------

    def _memberships(self) -> None:
        rng = self.rng
        shares = [p[7] for p in _PRODUCTS] + [_CLUB_SHARE / _CLUBS] * _CLUBS
        holders = np.array(shares) @ self.product_holders
        n = round(self.size.members / holders)
        product = _pick(_cdf(np.array(shares)), rng.random(n))
        first = self.today_n - rng.integers(1, 3 * 365 + 1, n)
        auto_renew = rng.random(n) < _AUTO_RENEW_SHARE
        covering = np.ones(n, np.int64)
        for terms in range(1, 5):
            covering = np.where(_add_years(first, terms) <= self.today_n, terms + 1, covering)
        chosen = np.minimum(covering, rng.geometric(1 - _MANUAL_RENEWAL_RATE, n))
        n_terms = np.where(auto_renew, covering, chosen)
        last_start = _add_years(first, n_terms - 1)
        last_end = _add_years(first, n_terms)
        refunded = (rng.random(n) < _REFUND_SHARE) & (last_start >= self.first_n)
        status = np.select(
            [refunded, last_end > self.today_n, last_end + GRACE_DAYS > self.today_n],
            [_REFUNDED, _ACTIVE, _IN_GRACE],
            _LAPSED,
        )
        self.ms_ids = _uuid4(rng, n)
        self.ms_product, self.ms_auto_renew, self.ms_status = product, auto_renew, status
        self.ms_first, self.ms_terms, self.ms_last_start = first, n_terms, last_start
        self.ms_refunded = refunded
        # Days a paid term covers (a refunded term gave no visits: it was withdrawn at once).
        self.ms_covered_until = np.where(refunded, last_start, last_end)
        self.ms_city = _pick(
            _cdf(np.array([c[4] for c in CITIES], dtype=np.float64)), rng.random(n)
        )
        self.ms_holders = self.product_holders[product]
        self.ms_member_first = np.concatenate([[0], np.cumsum(self.ms_holders)[:-1]])
        # A first purchase is paid up to three days before its first day, in the daytime.
        self.ms_paid_at = self._utc_us(first - rng.integers(0, 4, n), rng.uniform(480, 1380, n))

    def _members(self) -> None:
        rng = self.rng
        membership = np.repeat(np.arange(len(self.ms_ids)), self.ms_holders)
        n = len(membership)
        product = self.ms_product[membership]
        female, male = DutchNames.first_names_female, DutchNames.first_names_male
        first_names = (*female, *male)
        first = np.where(
            rng.random(n) < 0.56,
            rng.integers(0, len(female), n),
            len(female) + rng.integers(0, len(male), n),
        )
        last = rng.integers(0, len(DutchNames.last_names), n)
        # A duo is a household: the second holder shares the first one's surname and address.
        second = np.flatnonzero(np.arange(n) != self.ms_member_first[membership])
        last[second] = last[second - 1]
        domains = np.array([b"@example.nl", b"@example.com", b"@example.org"])
        emails = np.strings.add(
            np.strings.add(
                np.strings.add(_vocabulary(first_names, _ascii)[first], b"."),
                _vocabulary(DutchNames.last_names, _ascii)[last],
            ),
            np.strings.add((np.arange(n) + 1).astype(np.bytes_), domains[rng.integers(0, 3, n)]),
        )
        # Card holders are older than the country: a peak at 60-70, another with young families.
        adult_age = np.where(
            rng.random(n) < 0.55, rng.normal(63, 10, n), rng.normal(38, 9, n)
        ).clip(18.2, 94)
        youth_age = rng.uniform(4.5, 17.9, n)
        age = np.where(np.array(self.product_kinds)[product] == "youth", youth_age, adult_age)
        birth = self.today_n - np.round(age * 365.25).astype(np.int64)
        unknown_birth = rng.random(n) < 0.03
        city_prefix = np.array([c[1].encode() for c in CITIES])[self.ms_city[membership]]
        digits = (rng.integers(0, 100, n)).astype("S2")
        digits = np.strings.zfill(digits, 2)
        letters = _POSTAL_LETTERS[rng.integers(0, len(_POSTAL_LETTERS), (n, 2))]
        postal = np.strings.add(
            np.strings.add(city_prefix, digits),
            np.strings.add(b" ", letters.copy().view("S2").ravel()),
        )
        postal[second] = postal[second - 1]
        created = self.ms_paid_at[membership] + rng.integers(60, 600, n) * 1_000_000
        self.m_membership, self.m_product, self.m_created = membership, product, created
        self.m_ids = _uuid4(rng, n)
        self.m_first = _vocabulary(first_names)[first]
        self.m_last = _vocabulary(DutchNames.last_names)[last]
        self.m_email = emails
        self.m_birth, self.m_birth_unknown = birth, unknown_birth
        self.m_birth_yyyymmdd = _yyyymmdd(birth)
        self.m_postal = postal
        self.m_language = np.where(rng.random(n) < 0.06, 1, 0)
        self.m_visitor_key = _hex(rng.integers(0, 256, (n, 16), dtype=np.uint8))
        self.m_marketing = rng.random(n) < 0.35
        self.m_share = rng.random(n) < 0.3
        now_us = self._utc_us(np.array([self.today_n]), np.zeros(1))[0]
        consent = created + rng.integers(0, 30 * 24 * 3600, n) * 1_000_000
        self.m_consent_at = np.minimum(consent, now_us - 1_000_000)

    def _terms(self) -> None:
        rng = self.rng
        membership = np.repeat(np.arange(len(self.ms_ids)), self.ms_terms)
        n = len(membership)
        number = np.arange(n) - np.concatenate([[0], np.cumsum(self.ms_terms)[:-1]])[membership]
        starts = _add_years(self.ms_first[membership], number)
        ends = _add_years(self.ms_first[membership], number + 1)
        refunded = self.ms_refunded[membership] & (number == self.ms_terms[membership] - 1)
        # Renewals: auto-renew is charged the day before; by hand, up to a month before.
        auto = self.ms_auto_renew[membership]
        renew_day = starts - np.where(auto, 1, rng.integers(1, 31, n))
        renew_minute = np.where(auto, 360.0, rng.uniform(480, 1380, n))
        paid_at = np.where(
            number == 0,
            self.ms_paid_at[membership],
            self._utc_us(renew_day, renew_minute),
        )
        amount = self.product_prices[self.ms_product[membership]]
        refund_of = np.flatnonzero(refunded)
        refund_day = np.minimum(
            starts[refund_of] + rng.integers(1, 15, len(refund_of)), self.today_n - 1
        )
        refund_at = self._utc_us(refund_day, rng.uniform(540, 1020, len(refund_of)))
        self.term_ids = _uuid4(rng, n)
        self.t_membership, self.t_number, self.t_starts, self.t_ends = (
            membership,
            number,
            starts,
            ends,
        )
        self.t_refunded = refunded
        # Only a membership's last term is ever refunded, so its active terms are the first ones.
        active = self.ms_terms - self.ms_refunded.astype(np.int64)
        self.ms_paid_until = _add_years(self.ms_first, active)
        self.ms_unpaid = active == 0
        self.payment_ids = _uuid4(rng, n + len(refund_of))
        self.p_references = _references(rng, n + len(refund_of), self.programme_code)
        self.p_paid_at = np.concatenate([paid_at, np.maximum(refund_at, paid_at[refund_of] + 1)])
        self.p_amount = np.concatenate([amount, amount[refund_of]])
        self.p_membership = np.concatenate([membership, membership[refund_of]])
        self.p_refund_of = refund_of
        self.ms_refund_day = np.full(len(self.ms_ids), -1)
        self.ms_refund_day[membership[refund_of]] = refund_day

    def _cards(self) -> None:
        rng = self.rng
        n = len(self.m_ids)
        membership = self.m_membership
        status_of_membership = np.array(
            [CardStatus.ACTIVE, CardStatus.ACTIVE, CardStatus.EXPIRED, CardStatus.BLOCKED]
        )
        current_status = status_of_membership[self.ms_status[membership]]
        # Lost cards replaced during the year: the old card stays on the visits made with it.
        start = np.maximum(self.ms_first[membership], self.first_n)
        stop = np.minimum(self.ms_covered_until[membership], self.today_n)
        replaced = (rng.random(n) < _REPLACED_CARD_SHARE) & (stop - start > 2)
        replaced_day = np.where(
            replaced, start + 1 + (rng.random(n) * np.maximum(stop - start - 2, 1)).astype(int), -1
        )
        old = np.flatnonzero(replaced)
        replaced_at = self._utc_us(replaced_day[old], rng.uniform(600, 1000, len(old)))
        issued = self.m_created + 120_000_000
        self.card_ids = _uuid4(rng, n + len(old))
        self.card_numbers = _card_numbers(rng, n + len(old))
        self.card_member = np.concatenate([np.arange(n), old])
        self.card_status = np.concatenate([current_status, np.full(len(old), "replaced")])
        self.card_issued = np.concatenate([issued.copy(), issued[old]])
        self.card_issued[old] = replaced_at
        changed = np.full(n + len(old), -1, np.int64)
        changed[n:] = replaced_at
        blocked = np.flatnonzero(current_status == CardStatus.BLOCKED)
        changed[blocked] = self._utc_us(
            self.ms_refund_day[membership[blocked]], np.full(len(blocked), 1020.0)
        )
        self.card_changed = changed
        self.card_replaced_by = np.concatenate([np.full(n, -1), old])
        self.card_old = np.full(n, -1)
        self.card_old[old] = n + np.arange(len(old))
        self.m_replaced_day = replaced_day

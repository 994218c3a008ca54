"""The check-ins: each membership's outings over the days its terms cover, with the door's rules.

Kept apart from the population because they are drawn in a thread while the other tables load,
and because this is where the rules of a counted visit live: one counted visit per visitor,
institution and local day; re-entries and `already_used` refusals only after one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from membership.national.arrays import _EPOCH, Array, _byte_rank, _cdf, _hex, _pick, _pick_by_row
from membership.national.population import Population
from membership.national.shape import (
    _ADMIT,
    _ALREADY_USED,
    _BLOCKED,
    _CLOSING,
    _DUO_TOGETHER,
    _ENGAGEMENT_SHAPE,
    _EXPIRED,
    _GARDEN,
    _GARDEN_HOURS,
    _LAPSED,
    _MUSEUM,
    _MUSEUM_HOURS,
    _NOT_HERE,
    _OFFLINE,
    _OUTINGS_PER_YEAR,
    _REENTER,
    _REENTRY,
    _REFUNDED,
    _REPLACED,
    _SECOND_STOP,
    _SHARED_CARD,
    _THEATRE,
    GRACE_DAYS,
    TIMEZONE,
    NationalSummary,
)


@dataclass(frozen=True)
class _ScanDetails:
    venue: Array
    offline: Array
    received: Array
    scan_id: Array
    card: Array
    age_band: Array


class Generator(Population):
    """The population and its check-ins; `build_checkins` may run in a thread after
    `build_holders` while the population's rows are being loaded."""

    def build_checkins(self) -> None:
        """The check-ins, after `build_holders`; the rows of the other tables do not wait for it."""
        self._checkins()
        self._day_counts()
        self._visitor_rows()

    def summary(self) -> NationalSummary:
        visits = int((self.c_outcome == _ADMIT).sum())
        return NationalSummary(
            institutions=self.size.institutions,
            venues=len(self.venue_ids),
            products=len(self.product_codes),
            members=len(self.m_ids),
            memberships=len(self.ms_ids),
            terms=len(self.term_ids),
            payments=len(self.payment_ids),
            cards=len(self.card_ids),
            checkins=len(self.c_member),
            visits=visits,
            reentries=int((self.c_outcome == _REENTER).sum()),
            refusals=int((self.c_outcome >= _ALREADY_USED).sum()),
            first_day=self.first_day,
            last_day=self.today - timedelta(days=1),
        )

    # -- check-ins ------------------------------------------------------------------------

    def _days(self, kind: Array, low: Array, high: Array) -> Array:
        """A window day index in [low, high) for each row, by its institution kind's season."""
        below, above = self.day_cdf[kind, low], self.day_cdf[kind, high]
        value = below + self.rng.random(len(kind)) * (above - below)
        # The CDF has a leading 0, so the entry found is one past the day.
        result: Array = np.clip(_pick_by_row(self.day_cdf, kind, value) - 1, low, high - 1)
        return result

    def _minutes(self, institution: Array, day: Array) -> Array:
        """Arrival on the wall clock: museum day hours, gardens a little earlier, evening shows."""
        rng = self.rng
        n = len(institution)
        kind = self.i_kind[institution]
        minutes = np.empty(n)
        for k, hours in ((_MUSEUM, _MUSEUM_HOURS), (_GARDEN, _GARDEN_HOURS)):
            rows = np.flatnonzero(kind == k)
            hour = np.array(list(hours))[
                _pick(_cdf(np.array(list(hours.values()))), rng.random(len(rows)))
            ]
            minutes[rows] = hour * 60 + rng.uniform(0, 60, len(rows))
        rows = np.flatnonzero(kind == _THEATRE)
        matinee = self.weekday[day[rows]] == 6
        minutes[rows] = np.where(matinee, 13.5 * 60, 19 * 60) + rng.uniform(0, 75, len(rows))
        return minutes

    def _home_pick(self, city: Array) -> Array:
        """An institution for each row, drawn for the row's home city."""
        return _pick_by_row(self.home_cdf, city, self.rng.random(len(city)))

    def _checkins(self) -> None:
        rng = self.rng
        self._institution_rank = _byte_rank(self.i_ids)
        self._visitor_rank = _byte_rank(self.m_visitor_key)
        # Outings per membership over the days its terms cover in the window.
        low = np.clip(self.ms_first, self.first_n, self.today_n) - self.first_n
        high = np.clip(self.ms_covered_until, self.first_n, self.today_n) - self.first_n
        engagement = rng.gamma(_ENGAGEMENT_SHAPE, 1 / _ENGAGEMENT_SHAPE, len(self.ms_ids))
        youth = np.array(self.product_kinds)[self.ms_product] == "youth"
        expected = _OUTINGS_PER_YEAR * engagement * np.where(youth, 0.55, 1.0) * (high - low) / 365
        outing_ms = np.repeat(np.arange(len(self.ms_ids)), rng.poisson(expected))
        club = self.product_club[self.ms_product[outing_ms]]
        place = np.where(club >= 0, club, self._home_pick(self.ms_city[outing_ms]))
        day = self._days(self.i_kind[place], low[outing_ms], high[outing_ms])
        minute = self._minutes(place, day)
        # A second stop the same day, in the same city, some hours after the first.
        stop = np.flatnonzero((club < 0) & (self.i_kind[place] != _THEATRE))
        stop = stop[rng.random(len(stop)) < _SECOND_STOP]
        second_city = self.i_city[place[stop]]
        second_place = _pick_by_row(self.same_city_cdf, second_city, rng.random(len(stop)))
        second_minute = minute[stop] + rng.uniform(80, 190, len(stop))
        evening = self.i_kind[second_place] == _THEATRE
        second_minute[evening] = 19 * 60 + rng.uniform(0, 75, int(evening.sum()))
        keep = second_minute < _CLOSING[_MUSEUM] - 30
        visit_ms = np.concatenate([outing_ms, outing_ms[stop][keep]])
        visit_place = np.concatenate([place, second_place[keep]])
        visit_day = np.concatenate([day, day[stop][keep]])
        visit_minute = np.concatenate([minute, second_minute[keep]])
        # Duo holders mostly come together; otherwise one of the two comes alone.
        holders = self.ms_holders[visit_ms]
        together = (holders == 2) & (rng.random(len(visit_ms)) < _DUO_TOGETHER)
        alone_holder = (rng.random(len(visit_ms)) * holders).astype(np.int64)
        repeat = np.where(together, 2, 1)
        row = np.repeat(np.arange(len(visit_ms)), repeat)
        offset = np.arange(len(row)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        holder = np.where(together[row], offset, alone_holder[row])
        member = self.ms_member_first[visit_ms[row]] + holder
        place, day = visit_place[row], visit_day[row]
        minute = visit_minute[row] + offset * rng.uniform(0.05, 0.8, len(row))
        # One counted visit per visitor, institution and local day: the earliest scan counts.
        # The storage order (below) sorts by exactly these, then by time, so one sort serves.
        layout = self._layout(member, place, day, minute)
        order = np.argsort(layout)
        visit_key = layout[order] >> 17
        first_of_key = np.ones(len(order), bool)
        first_of_key[1:] = visit_key[1:] != visit_key[:-1]
        counted = order[first_of_key]
        member, place, day, minute = member[counted], place[counted], day[counted], minute[counted]
        kind = self.i_kind[place]
        # Re-entries after a break, and cards handed back over the barrier within the window.
        again = np.flatnonzero((kind != _THEATRE) & (rng.random(len(member)) < _REENTRY))
        again_minute = minute[again] + rng.uniform(30, 150, len(again))
        inside = again_minute < np.array(_CLOSING)[kind[again]]
        again, again_minute = again[inside], again_minute[inside]
        shared = np.flatnonzero(rng.random(len(member)) < _SHARED_CARD)
        shared_minute = minute[shared] + rng.uniform(0.5, 14, len(shared))
        parts = [
            (member, place, day, minute, _ADMIT),
            (member[again], place[again], day[again], again_minute, _REENTER),
            (member[shared], place[shared], day[shared], shared_minute, _ALREADY_USED),
            *self._refusals(),
        ]
        all_member = np.concatenate([p[0] for p in parts])
        all_place = np.concatenate([p[1] for p in parts])
        all_day = np.concatenate([p[2] for p in parts])
        all_minute = np.concatenate([p[3] for p in parts])
        outcome = np.concatenate([np.full(len(p[0]), p[4], np.int8) for p in parts])
        absolute_day = all_day + self.first_n
        scanned = self._utc_us(absolute_day, all_minute)
        # The counted visits come sorted; a stable sort (a merge) slots the rest in cheaply.
        order = np.argsort(self._layout(all_member, all_place, all_day, all_minute), kind="stable")
        self.c_member = all_member[order]
        self.c_institution = all_place[order]
        self.c_day = absolute_day[order]
        self.c_scanned = scanned[order]
        self.c_outcome = outcome[order]

    def _day_counts(self) -> None:
        """The check-in counters (`institution_day_counts`) summed from the arrays.

        `membership.rollups.rebuild` would group 12 million rows in SQL after the load (about
        90 s at full scale); grouping the arrays here takes seconds, in the drawing thread.
        The key is the one `rollups.key_of` gives: the scan's hour on the wall clock, taken from
        the time zone database per UTC hour as PostgreSQL does, not from how it was drawn.
        """
        us_per_hour = 3_600_000_000
        utc_hour = self.c_scanned // us_per_hour
        first = int(utc_hour.min()) if len(utc_hour) else 0
        last = int(utc_hour.max()) if len(utc_hour) else 0
        zone = ZoneInfo(TIMEZONE)
        start = datetime(_EPOCH.year, _EPOCH.month, _EPOCH.day, tzinfo=UTC)
        local_hour = np.array(
            [
                (start + timedelta(hours=hour)).astimezone(zone).hour
                for hour in range(first, last + 1)
            ],
            dtype=np.int64,
        )
        days = self.today_n - self.first_n
        products = len(self.product_codes)
        key = (
            (
                (self.c_institution.astype(np.int64) * days + (self.c_day - self.first_n)) * 24
                + local_hour[utc_hour - first]
            )
            * products
            + self.m_product[self.c_member]
        ) * 7 + self.c_outcome
        unique, self.k_checkins = np.unique(key, return_counts=True)
        unique, self.k_outcome = np.divmod(unique, 7)
        unique, self.k_product = np.divmod(unique, products)
        unique, self.k_hour = np.divmod(unique, 24)
        self.k_institution, day = np.divmod(unique, days)
        self.k_day = day + self.first_n

    def _visitor_rows(self) -> None:
        """The visitor rows (`institution_visitors`) from the arrays, in primary-key order.

        Per institution and visitor: the first counted visit and the latest four; every
        generated visit carries its member, so the latest is also the latest linked one. What
        the check-in service would merge visit by visit, taken here from one sort.
        """
        counted = np.flatnonzero(self.c_outcome == _ADMIT)
        place, member, day = (
            self.c_institution[counted],
            self.c_member[counted],
            self.c_day[counted],
        )
        order = np.lexsort((-day, self._visitor_rank[member], self._institution_rank[place]))
        place, member, day = place[order], member[order], day[order]
        starts = np.flatnonzero(
            np.r_[True, (place[1:] != place[:-1]) | (member[1:] != member[:-1])]
        )
        ends = np.r_[starts[1:], len(day)]
        self.v_institution = place[starts]
        self.v_member = member[starts]
        self.v_first = day[ends - 1]
        # Column k: the (k+1)-th latest visit, or -1 (NULL) for a visitor with fewer.
        self.v_latest = np.full((len(starts), 4), -1, np.int64)
        for k in range(4):
            has = starts + k < ends
            self.v_latest[has, k] = day[(starts + k)[has]]

    def _layout(self, member: Array, place: Array, day: Array, minute: Array) -> Array:
        """The storage order: institution, day, visitor (as PostgreSQL orders those keys), time.

        The reports read one institution's days (few pages each), and the index builds that
        lead with these columns get their input already sorted, which their sort checks first.
        The key is unique per visitor, institution and day above its low 17 bits (the second).
        """
        key: Array = (
            (self._institution_rank[place] * 512 + day) * (1 << 21) + self._visitor_rank[member]
        ) * (1 << 17) + (minute * 60).astype(np.int64)
        return key

    def scan_details(self, s: slice) -> _ScanDetails:
        """Columns of a chunk of check-ins that nothing else depends on.

        Drawn per chunk from a generator seeded by (seed, first row), so they are computed in
        the COPY threads, overlapping the load, and stay deterministic.
        """
        rng = np.random.default_rng([self.seed, s.start or 0])
        member, institution, day = self.c_member[s], self.c_institution[s], self.c_day[s]
        n = len(member)
        venue_count = self.i_venue_count[institution]
        side = 1 + (rng.random(n) * np.maximum(venue_count - 1, 1)).astype(np.int64)
        main = (venue_count == 1) | (rng.random(n) < 0.75)
        offline = rng.random(n) < _OFFLINE
        delay = np.where(
            offline,
            rng.integers(5 * 60_000_000, 240 * 60_000_000, n),
            rng.integers(120_000, 1_500_000, n),
        )
        old_card = self.card_old[member]
        with_old = (old_card >= 0) & (
            (day < self.m_replaced_day[member]) | (self.c_outcome[s] == _REPLACED)
        )
        birth = self.m_birth_yyyymmdd[member]
        age = (self.window_yyyymmdd[day - self.first_n] - birth) // 10_000
        band = np.searchsorted(self.age_band_lows, age, side="right") - 1
        return _ScanDetails(
            venue=self.i_venue_first[institution] + np.where(main, 0, side),
            offline=offline,
            received=self.c_scanned[s] + delay,
            scan_id=_hex(rng.integers(0, 256, (n, 16), dtype=np.uint8)),
            card=np.where(with_old, old_card, member),
            age_band=np.where(self.m_birth_unknown[member] | (age < 0), -1, band),
        )

    def _refusals(self) -> list[tuple[Array, Array, Array, Array, int]]:
        """Refused scans that stand alone: lapsed, refunded, replaced and club-only cards."""
        rng = self.rng
        parts: list[tuple[Array, Array, Array, Array, int]] = []
        n_ms = len(self.ms_ids)
        holder = self.ms_member_first
        # Expired: a member tries the old card after the grace days are over.
        lapsed_from = np.maximum(self.ms_covered_until + GRACE_DAYS, self.first_n)
        trying = (
            (self.ms_status == _LAPSED) & (lapsed_from < self.today_n) & (rng.random(n_ms) < 0.25)
        )
        # Blocked: the card of a refunded membership.
        blocked_from = np.maximum(self.ms_refund_day + 1, self.first_n)
        blocked = (
            (self.ms_status == _REFUNDED) & (blocked_from < self.today_n) & (rng.random(n_ms) < 0.3)
        )
        for chosen, start, outcome in (
            (trying, lapsed_from, _EXPIRED),
            (blocked, blocked_from, _BLOCKED),
        ):
            ms = np.flatnonzero(chosen)
            club = self.product_club[self.ms_product[ms]]
            place = np.where(club >= 0, club, self._home_pick(self.ms_city[ms]))
            day = self._days(self.i_kind[place], start[ms] - self.first_n, np.full(len(ms), 365))
            parts.append((holder[ms], place, day, self._minutes(place, day), outcome))
        # Replaced: the lost card turns up again and is scanned.
        members = np.flatnonzero(
            (self.card_old >= 0)
            & (
                self.m_replaced_day + 1
                < np.minimum(self.ms_covered_until[self.m_membership], self.today_n)
            )
        )
        members = members[rng.random(len(members)) < 0.25]
        stop = np.minimum(self.ms_covered_until[self.m_membership[members]], self.today_n)
        place = self._home_pick(self.ms_city[self.m_membership[members]])
        day = self._days(
            self.i_kind[place], self.m_replaced_day[members] + 1 - self.first_n, stop - self.first_n
        )
        parts.append((members, place, day, self._minutes(place, day), _REPLACED))
        # Not accepted here: a club card shown at another institution.
        club_ms = np.flatnonzero(
            (self.product_club[self.ms_product] >= 0) & (rng.random(n_ms) < 0.08)
        )
        low = np.clip(self.ms_first[club_ms], self.first_n, self.today_n) - self.first_n
        high = np.clip(self.ms_covered_until[club_ms], self.first_n, self.today_n) - self.first_n
        place = self._home_pick(self.ms_city[club_ms])
        keep = (high > low) & (place != self.product_club[self.ms_product[club_ms]])
        club_ms, low, high, place = club_ms[keep], low[keep], high[keep], place[keep]
        day = self._days(self.i_kind[place], low, high)
        parts.append((holder[club_ms], place, day, self._minutes(place, day), _NOT_HERE))
        return parts

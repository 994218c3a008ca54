"""Renewal date arithmetic: properties that must hold for every date (rule 3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from membership import renewals
from membership.clock import local_date
from membership.renewals import Standing

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
months = st.integers(min_value=1, max_value=36)
grace = st.integers(min_value=0, max_value=90)


class TestAddMonths:
    @given(day=days, count=months)
    def test_lands_in_the_right_month_never_later_than_the_same_day(
        self, day: date, count: int
    ) -> None:
        later = renewals.add_months(day, count)
        assert (later.year * 12 + later.month) - (day.year * 12 + day.month) == count
        assert later.day <= day.day
        assert later.day == day.day or (later + timedelta(days=1)).day == 1

    def test_month_ends_and_29_february(self) -> None:
        assert renewals.add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
        assert renewals.add_months(date(2024, 2, 29), 48) == date(2028, 2, 29)
        assert renewals.add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
        assert renewals.add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
        assert renewals.add_months(date(2025, 8, 31), 1) == date(2025, 9, 30)
        assert renewals.add_months(date(2025, 12, 15), 1) == date(2026, 1, 15)


class TestRenewalTerm:
    @given(end=days, early=st.integers(min_value=0, max_value=400), count=months, g=grace)
    def test_renewing_early_never_loses_a_paid_day(
        self, end: date, early: int, count: int, g: int
    ) -> None:
        today = end - timedelta(days=early)
        term = renewals.renewal_term(
            today=today, current_end=end, grace_days=g, validity_months=count
        )
        assert term.starts_on == end
        assert term.ends_on == renewals.add_months(end, count)

    @given(end=days, late=st.integers(min_value=0, max_value=200), count=months, g=grace)
    def test_within_grace_continues_and_after_grace_starts_today(
        self, end: date, late: int, count: int, g: int
    ) -> None:
        today = end + timedelta(days=late)
        term = renewals.renewal_term(
            today=today, current_end=end, grace_days=g, validity_months=count
        )
        assert term.starts_on == (end if late <= g else today)
        assert 28 * count <= (term.ends_on - term.starts_on).days <= 31 * count

    @given(today=days, count=months)
    def test_first_term_starts_today(self, today: date, count: int) -> None:
        term = renewals.first_term(today=today, validity_months=count)
        assert term.starts_on == today
        assert term.ends_on == renewals.add_months(today, count)


class TestStanding:
    @given(end=days, offset=st.integers(min_value=-400, max_value=400), g=grace)
    def test_active_then_grace_then_expired(self, end: date, offset: int, g: int) -> None:
        today = end + timedelta(days=offset)
        expected = (
            Standing.ACTIVE if offset < 0 else Standing.IN_GRACE if offset < g else Standing.EXPIRED
        )
        assert renewals.standing(today=today, paid_until=end, grace_days=g) == expected

    def test_without_a_term_is_expired(self) -> None:
        assert renewals.standing(today=date(2026, 1, 1), paid_until=None, grace_days=14) == (
            Standing.EXPIRED
        )


class TestReminders:
    @given(end=days, left=st.integers(min_value=-10, max_value=60))
    def test_the_closest_threshold_not_yet_passed(self, end: date, left: int) -> None:
        due = renewals.reminder_due(today=end - timedelta(days=left), paid_until=end)
        if left <= 0 or left > 30:
            assert due is None
        elif left <= 7:
            assert due == 7
        else:
            assert due == 30


class TestProgrammeTimeZone:
    def test_a_payment_late_on_new_years_eve_utc_starts_on_new_years_day_in_amsterdam(
        self,
    ) -> None:
        moment = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
        today = local_date(moment, "Europe/Amsterdam")
        assert today == date(2027, 1, 1)
        assert renewals.first_term(today=today, validity_months=12).ends_on == date(2028, 1, 1)
        assert local_date(moment, "America/New_York") == date(2026, 12, 31)

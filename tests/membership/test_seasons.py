"""The holiday calendar both seeds weigh visits by."""

from __future__ import annotations

from datetime import date

import pytest

from membership import seasons


@pytest.mark.parametrize(
    ("year", "sunday"),
    [(2024, date(2024, 3, 31)), (2025, date(2025, 4, 20)), (2026, date(2026, 4, 5))],
)
def test_easter_sunday(year: int, sunday: date) -> None:
    assert seasons.easter(year) == sunday


def test_kings_day_moves_to_saturday_when_27_april_is_a_sunday() -> None:
    assert date(2025, 4, 26) in seasons.public_holidays(2025)
    assert date(2025, 4, 27) not in seasons.public_holidays(2025)
    assert date(2026, 4, 27) in seasons.public_holidays(2026)


def test_whit_monday_and_ascension_hang_off_easter() -> None:
    holidays = seasons.public_holidays(2026)
    assert {date(2026, 5, 14), date(2026, 5, 24), date(2026, 5, 25)} <= holidays


def test_summer_is_a_school_holiday_and_march_is_not() -> None:
    assert seasons.school_holiday(date(2026, 8, 1))
    assert not seasons.school_holiday(date(2026, 3, 10))

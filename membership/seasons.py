"""When the Netherlands goes out: public and school holidays, which both seeds weigh visits by."""

from __future__ import annotations

from datetime import date, timedelta


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm): the movable Dutch holidays hang off it."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


def public_holidays(year: int) -> set[date]:
    sunday = easter(year)
    kings_day = date(year, 4, 27)
    if kings_day.weekday() == 6:
        kings_day = date(year, 4, 26)
    return {
        date(year, 1, 1),
        sunday,
        sunday + timedelta(days=1),
        kings_day,
        date(year, 5, 5),
        sunday + timedelta(days=39),
        sunday + timedelta(days=49),
        sunday + timedelta(days=50),
        date(year, 12, 25),
        date(year, 12, 26),
    }


def school_holiday(day: date) -> bool:
    """Roughly the Dutch school holidays, when families fill the museums."""
    md = (day.month, day.day)
    return (
        md >= (12, 21)
        or md <= (1, 5)
        or (2, 15) <= md <= (2, 23)
        or (4, 26) <= md <= (5, 4)
        or (7, 12) <= md <= (8, 31)
        or (10, 18) <= md <= (10, 26)
    )

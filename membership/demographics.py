"""Age band and region of a visitor, fixed on each check-in when it is made.

A check-in keeps the band and region its visitor had on the visit's local day, so removing the
member link later (erasure, retention: DESIGN.md rule 5) never changes an age or region figure.
The reports read these columns; they must not recompute them from members.
"""

from __future__ import annotations

from datetime import date

# Lower bounds of the age bands in whole years; the last band is open-ended.
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0-12"),
    (13, "13-17"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-54"),
    (55, "55-64"),
    (65, "65+"),
)
REGION_PREFIX_LENGTH = 2


def age_on(birth_date: date, day: date) -> int:
    """Whole years on `day`: `(yyyymmdd(day) - yyyymmdd(birth)) // 10000`.

    Someone born on 29 February turns a year older on 1 March in common years.
    """
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def age_band(birth_date: date | None, day: date) -> str | None:
    """The band of the age on `day`; None without a birth date or for a birth after `day`."""
    if birth_date is None:
        return None
    age = age_on(birth_date, day)
    if age < 0:
        return None
    label = None
    for low, name in AGE_BANDS:
        if age >= low:
            label = name
    return label


def region(postal_code: str | None) -> str | None:
    """The postal-code prefix that stands for a region; None when there is no postal code."""
    return postal_code[:REGION_PREFIX_LENGTH] if postal_code else None

"""What the national programme looks like: its size, cities, kinds of institution, seasons,
hours, products and the rates of renewals, refunds, re-entries and refusals.

Kept apart from the drawing code so that the figures a reader may want to tune (or check against
docs/reports.md, "Scale data") sit in one place, and so the size and summary types can be
imported without numpy work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from membership.door import Reason
from membership.models import CheckinResult, MembershipStatus

NATIONAL_MEMBERS = 1_500_000
NATIONAL_INSTITUTIONS = 500
TIMEZONE = "Europe/Amsterdam"
CURRENCY = "EUR"
VAT_BP = 900
GRACE_DAYS = 14
DEFAULT_SEED = 2024


# name, postal-code prefix (two digits: the region), latitude, longitude, inhabitants (thousands)
CITIES: tuple[tuple[str, str, float, float, int], ...] = (
    ("Amsterdam", "10", 52.37, 4.90, 920),
    ("Rotterdam", "30", 51.92, 4.48, 660),
    ("Den Haag", "25", 52.08, 4.30, 560),
    ("Utrecht", "35", 52.09, 5.12, 370),
    ("Eindhoven", "56", 51.44, 5.47, 240),
    ("Groningen", "97", 53.22, 6.57, 240),
    ("Tilburg", "50", 51.56, 5.09, 225),
    ("Almere", "13", 52.37, 5.21, 220),
    ("Breda", "48", 51.59, 4.78, 185),
    ("Nijmegen", "65", 51.84, 5.86, 180),
    ("Apeldoorn", "73", 52.21, 5.97, 165),
    ("Arnhem", "68", 51.98, 5.91, 165),
    ("Haarlem", "20", 52.38, 4.64, 165),
    ("Enschede", "75", 52.22, 6.89, 160),
    ("Amersfoort", "38", 52.16, 5.39, 160),
    ("Zaandam", "15", 52.44, 4.83, 160),
    ("'s-Hertogenbosch", "52", 51.69, 5.30, 160),
    ("Zwolle", "80", 52.51, 6.09, 130),
    ("Leiden", "23", 52.16, 4.49, 125),
    ("Maastricht", "62", 50.85, 5.69, 120),
    ("Dordrecht", "33", 51.81, 4.67, 120),
    ("Zoetermeer", "27", 52.06, 4.49, 125),
    ("Ede", "67", 52.04, 5.66, 120),
    ("Leeuwarden", "89", 53.20, 5.80, 125),
    ("Alkmaar", "18", 52.63, 4.75, 110),
    ("Delft", "26", 52.01, 4.36, 105),
    ("Emmen", "78", 52.79, 6.90, 107),
    ("Venlo", "59", 51.37, 6.17, 102),
    ("Deventer", "74", 52.25, 6.16, 101),
    ("Helmond", "57", 51.48, 5.66, 93),
    ("Hilversum", "12", 52.23, 5.17, 92),
    ("Heerlen", "64", 50.89, 5.98, 87),
    ("Roermond", "60", 51.19, 5.99, 59),
    ("Gouda", "28", 52.01, 4.71, 74),
    ("Hoorn", "16", 52.64, 5.06, 74),
    ("Lelystad", "82", 52.52, 5.47, 80),
    ("Assen", "94", 52.99, 6.56, 69),
    ("Middelburg", "43", 51.50, 3.61, 49),
    ("Den Helder", "17", 52.96, 4.76, 56),
    ("Bergen op Zoom", "46", 51.49, 4.29, 68),
)

# Institution kinds, their share of the institutions, and the last minute of a re-entry.
_MUSEUM, _THEATRE, _GARDEN = 0, 1, 2
_KIND_SHARE = (0.85, 0.07, 0.08)
_CLOSING = (17 * 60 + 30, 23 * 60, 18 * 60)
_MUSEUM_TYPES = (
    "Museum",
    "Stedelijk Museum",
    "Historisch Museum",
    "Kunstmuseum",
    "Kunsthal",
    "Fotomuseum",
    "Natuurmuseum",
    "Scheepvaartmuseum",
    "Textielmuseum",
    "Museum voor Moderne Kunst",
    "Stadsarchief",
    "Prentenkabinet",
    "Kindermuseum",
    "Openluchtmuseum",
    "Spoorwegmuseum",
    "Verzetsmuseum",
    "Designmuseum",
    "Wetenschapsmuseum",
)
_ENTRANCES = (("MAIN", "Hoofdingang"), ("GROUP", "Groepsingang"), ("SOUTH", "Zuidingang"))
_THEATRE_TYPES = ("Schouwburg", "Concertzaal", "Stadstheater", "Muziekgebouw")
_GARDEN_TYPES = ("Hortus", "Kasteel", "Landgoed", "Buitenplaats")

# Relative visits per month, per weekday (Monday first), and per hour, by institution kind.
_MONTH_WEIGHT = (
    (0.75, 0.85, 0.85, 1.0, 1.0, 0.85, 1.15, 1.3, 0.85, 1.05, 0.9, 1.2),
    (1.1, 1.1, 1.1, 1.0, 0.9, 0.6, 0.1, 0.15, 1.0, 1.1, 1.2, 1.3),
    (0.25, 0.3, 0.6, 1.4, 1.7, 1.7, 1.8, 1.8, 1.3, 0.9, 0.4, 0.5),
)
_WEEKDAY_WEIGHT = (
    (0.35, 0.85, 0.95, 1.0, 1.15, 2.1, 2.4),
    (0.1, 0.6, 0.8, 1.3, 2.0, 2.2, 1.3),
    (0.6, 0.8, 0.9, 0.9, 1.0, 1.9, 2.3),
)
_HOLIDAY_FACTOR = (2.2, 1.2, 2.0)
_SCHOOL_HOLIDAY_FACTOR = (1.5, 1.0, 1.3)
_MUSEUM_HOURS = {10: 1.0, 11: 1.6, 12: 1.4, 13: 1.5, 14: 1.7, 15: 1.2, 16: 0.5}
_GARDEN_HOURS = {9: 0.5, 10: 1.2, 11: 1.5, 12: 1.2, 13: 1.4, 14: 1.5, 15: 1.1, 16: 0.6}

# Products: code, name, kind, price, minimum and maximum age, holders, share of memberships.
_PRODUCTS: tuple[tuple[str, str, str, int, int | None, int | None, int, float], ...] = (
    ("MK-ADULT", "Museumkaart volwassene", "annual", 7500, 18, None, 1, 0.72),
    ("MK-YOUTH", "Museumkaart jongeren", "youth", 3750, None, 17, 1, 0.13),
    ("MK-DUO", "Museumkaart duo", "duo", 13500, 18, None, 2, 0.11),
)
_CLUB_SHARE = 0.04
_CLUBS = 3  # club cards of the three busiest theatres (or institutions)
_CLUB_PRICE = 4500

_AUTO_RENEW_SHARE = 0.55
_MANUAL_RENEWAL_RATE = 0.72
_REFUND_SHARE = 0.005
_REPLACED_CARD_SHARE = 0.02
_OUTINGS_PER_YEAR = 10.0
_ENGAGEMENT_SHAPE = 0.8
_DUO_TOGETHER = 0.8
_SECOND_STOP = 0.13
_REENTRY = 0.05
_SHARED_CARD = 0.012
_OFFLINE = 0.015
_POSTAL_LETTERS = np.frombuffer(b"ABCDEFGHJKLMNPRTVWXZ", dtype=np.uint8)

_RESULTS = (CheckinResult.ADMITTED, CheckinResult.REENTRY, CheckinResult.REFUSED)
# (result, reason) of each kind of check-in the seed makes, by code.
_OUTCOMES: tuple[tuple[CheckinResult, Reason], ...] = (
    (CheckinResult.ADMITTED, Reason.OK),
    (CheckinResult.REENTRY, Reason.REENTRY),
    (CheckinResult.REFUSED, Reason.ALREADY_USED),
    (CheckinResult.REFUSED, Reason.EXPIRED),
    (CheckinResult.REFUSED, Reason.BLOCKED),
    (CheckinResult.REFUSED, Reason.REPLACED),
    (CheckinResult.REFUSED, Reason.NOT_ACCEPTED_HERE),
)
_ADMIT, _REENTER, _ALREADY_USED, _EXPIRED, _BLOCKED, _REPLACED, _NOT_HERE = range(7)
# Membership status codes of the generator, in this order.
_MEMBERSHIP_STATUSES = (
    MembershipStatus.ACTIVE,
    MembershipStatus.IN_GRACE,
    MembershipStatus.EXPIRED,
    MembershipStatus.REFUNDED,
)
_ACTIVE, _IN_GRACE, _LAPSED, _REFUNDED = range(4)


@dataclass(frozen=True)
class NationalSize:
    """How much to make; `factor` shrinks members and check-ins, institutions less (√factor).

    Institutions shrink more slowly so that a small run still has a network to report on.
    """

    institutions: int
    members: int

    @classmethod
    def for_factor(cls, factor: float) -> NationalSize:
        if not 0 < factor <= 1:
            raise ValueError("factor must be in (0, 1]")
        return cls(
            institutions=max(24, round(NATIONAL_INSTITUTIONS * factor**0.5)),
            members=max(400, round(NATIONAL_MEMBERS * factor)),
        )


@dataclass
class NationalSummary:
    """What the seed wrote, and how long each phase took (seconds)."""

    institutions: int = 0
    venues: int = 0
    products: int = 0
    members: int = 0
    memberships: int = 0
    terms: int = 0
    payments: int = 0
    cards: int = 0
    checkins: int = 0
    visits: int = 0
    reentries: int = 0
    refusals: int = 0
    first_day: date | None = None
    last_day: date | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)

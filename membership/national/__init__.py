"""National-scale data: a believable programme of 1.5 million members to measure the reports on.

`membership seed --scale national` (issue 8) fills an empty PostgreSQL database with 500
institutions in 40 Dutch cities, 1.5 million members and a year of about 12 million check-ins:

- popularity skewed like real museums (Zipf: a few institutions get a large share of the visits,
  a long tail gets a few thousand each), a few theatres with evening hours and gardens that peak
  in summer;
- members live in a city (postal code, so a region) and mostly visit institutions in or near it,
  with some day trips across the country and same-day visits to a neighbouring institution;
- seasonality, school and public holidays, weekday and hour patterns;
- re-entries later on the day of a counted visit, `already_used` refusals inside the
  anti-passback window, and refusals of expired, refunded, replaced and club cards;
- memberships with paid terms (purchases, renewals, refunds), duo cards with two holders, club
  cards accepted at one institution, auto-renew on or off (so some memberships are renewal at
  risk), lost cards replaced, consents to share contact details, and clearing terms that switch
  from the tariff model to the pool model half-way through the year.

Every row keeps the database rules: one counted visit per visitor, institution and local day; a
re-entry or an `already_used` refusal only after a counted visit that day; a visit only on a day
a paid term covers; one live card per holder; each check-in's age band and region as the
check-in service would have fixed them (membership.demographics).

The content is a pure function of (seed, factor, today): generation is vectorised with numpy and
holds no database state, so it is tested on its own. Loading streams PostgreSQL's binary COPY
format built straight from the arrays; the bulk tables are truncated and loaded with FREEZE, with
their keys, indexes and foreign keys dropped for the load and re-created from their own catalogue
definitions afterwards (so the schema ends exactly as the migrations made it, and every foreign
key is validated once, set-based). The check-in counters (`institution_day_counts`) are summed
from the arrays and loaded the same way, rather than recounted from the loaded rows in SQL. All
of it is one transaction: a failed seed leaves nothing.

The package: `shape` (sizes, cities, rates), `arrays` (day numbers, vectorised helpers),
`population` (institutions to cards), `visits` (check-ins and their counters), `copy` (the binary
COPY format), `tables` (the rows, table by table) and `load` (the transaction).
"""

from __future__ import annotations

from datetime import date

from membership.national.load import (
    BULK_TABLES,
    NationalScaleNeedsPostgres,
    PhaseCallback,
    ProgrammeNotEmpty,
    seed_national,
)
from membership.national.shape import (
    CITIES,
    CURRENCY,
    DEFAULT_SEED,
    GRACE_DAYS,
    NATIONAL_INSTITUTIONS,
    NATIONAL_MEMBERS,
    TIMEZONE,
    VAT_BP,
    NationalSize,
    NationalSummary,
)
from membership.national.tables import Programme, _tables
from membership.national.visits import Generator

__all__ = [
    "BULK_TABLES",
    "CITIES",
    "CURRENCY",
    "DEFAULT_SEED",
    "GRACE_DAYS",
    "NATIONAL_INSTITUTIONS",
    "NATIONAL_MEMBERS",
    "TIMEZONE",
    "VAT_BP",
    "NationalScaleNeedsPostgres",
    "NationalSize",
    "NationalSummary",
    "PhaseCallback",
    "Programme",
    "ProgrammeNotEmpty",
    "generate",
    "seed_national",
]


def generate(
    *, today: date, factor: float = 1.0, seed: int = DEFAULT_SEED, programme_code: str = "MK"
) -> Programme:
    """The whole programme for the 365 local days before `today`; no I/O, so testable alone."""
    generator = Generator(
        today=today, size=NationalSize.for_factor(factor), seed=seed, programme_code=programme_code
    )
    generator.build_holders()
    generator.build_checkins()
    return Programme(tables=_tables(generator), summary=generator.summary())

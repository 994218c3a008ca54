"""The retention cut (DESIGN.md rule 5): after `retention_days` a visit loses its member link.

Visit history is personal data. A check-in keeps its pseudonymous visitor key, age band and
region, which every report counts by, and loses `member_id` and `card_id`, the links to the
person (a card names its holder); so no figure changes, while the contact list and the renewal
segment, which need the person, no longer find visitors whose links are all older than the
cut-off (docs/reports.md, "Retention").

The cut runs in bounded batches, each its own short transaction: a report refresh waits for
every transaction that holds the check-ins' write lock (`reports.periods.high_water`), so one
statement over millions of old check-ins would stall it. Each batch takes the oldest linked
check-ins from the index of linked check-ins by day (`ix_checkins_linked_local_date`), skipping
rows another runner holds, and clears in the same transaction the visitor rows whose link it
took away.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import cast

from sqlalchemy import Table, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership.clock import local_date
from membership.models import Checkin, InstitutionVisitor
from membership.settings import Settings

log = logging.getLogger(__name__)

# Check-ins per transaction. Each cut row is a new row version in every index of the check-ins
# (about 11 WAL records a row), so a batch costs about 0.13 ms a row: 1 000 rows hold the
# check-ins' write lock for 0.13 s (p95 0.18 s) on a copy of the national seed, where 5 000
# held it for 0.8 s (p95 4 s; at a higher load). A refresh waits that long at most
# (docs/reports.md, "Retention").
BATCH_SIZE = 1_000
# Batches per job pass: about 15 s on the national seed. A first cut of years of history is
# then spread over passes instead of holding up the job runner's next pass for an hour.
BATCHES_PER_PASS = 100
_VISITORS = cast(Table, InstitutionVisitor.__table__)


@dataclass(frozen=True, slots=True)
class Cut:
    """How many check-ins and visitor rows lost their member link."""

    checkins: int = 0
    visitors: int = 0

    def __add__(self, other: Cut) -> Cut:
        return Cut(self.checkins + other.checkins, self.visitors + other.visitors)


@dataclass(frozen=True, slots=True)
class Batch:
    cut: Cut
    last_day: date | None


def cut_off(*, settings: Settings, now: datetime) -> date:
    """The first day whose links are kept: today in the programme's time zone, less the period.

    Check-ins are compared by their own `local_date` (the institution's day), so a visit keeps
    its link for the same number of calendar days wherever it was made.
    """
    return local_date(now, settings.programme_timezone) - timedelta(days=settings.retention_days)


async def cut_batch(
    session: AsyncSession, *, before: date, from_day: date | None, limit: int
) -> Batch:
    """Remove the links of up to `limit` linked check-ins dated before `before`, oldest first,
    from `from_day` on, and of the visitor rows whose latest linked visit was among them.

    A visitor row's link is its latest linked visit, so when that is older than the cut-off
    every linked visit of the visitor at the institution is, and one of them is in this batch
    or an earlier one: the rows to clear are found by primary key from the batch, not by a walk
    over the visitor rows. A row whose latest link is on or after the cut-off keeps it, and a
    door that links it again meanwhile moves `linked_on` past the cut-off, which the update
    re-checks under the row lock.
    """
    oldest = select(Checkin.id).where(Checkin.member_id.is_not(None), Checkin.local_date < before)
    if from_day is not None:
        oldest = oldest.where(Checkin.local_date >= from_day)
    # SKIP LOCKED: a second runner takes the next rows instead of waiting for these.
    # Materialized: as a plain subquery PostgreSQL may run it again for rows of the update
    # (a nested-loop semi-join), and a second run of a LIMIT with SKIP LOCKED need not pick
    # the same rows, so a batch came out short and the pass ended early (seen in CI).
    batch = (
        oldest.order_by(Checkin.local_date)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("oldest")
        .prefix_with("MATERIALIZED")
    )
    rows = (
        await session.execute(
            update(Checkin)
            # The link may have gone meanwhile (an erasure): it is then not counted again.
            .where(Checkin.id.in_(select(batch.c.id)), Checkin.member_id.is_not(None))
            # The card names its holder as well, so it goes with the member link.
            .values(member_id=None, card_id=None)
            .returning(Checkin.institution_id, Checkin.visitor_key, Checkin.local_date)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if not rows:
        return Batch(Cut(), None)
    keys = {(row.institution_id, row.visitor_key) for row in rows if row.visitor_key is not None}
    visitors = await _unlink_visitors(session, keys=keys, before=before)
    return Batch(Cut(len(rows), visitors), max(row.local_date for row in rows))


async def _unlink_visitors(
    session: AsyncSession, *, keys: set[tuple[uuid.UUID, str]], before: date
) -> int:
    """Clear these visitor rows whose latest link is older than the cut-off.

    The rows are locked in key order first, the order in which a door's commit locks the visitor
    rows it merges (membership.rollups), so a cut and a door never deadlock.
    """
    if not keys:
        return 0
    key = tuple_(_VISITORS.c.institution_id, _VISITORS.c.visitor_key)
    # Materialized, as the batch is: locked once, in key order, not again per row updated.
    stale = (
        select(_VISITORS.c.institution_id, _VISITORS.c.visitor_key)
        .where(key.in_(sorted(keys)), _VISITORS.c.linked_on < before)
        .order_by(_VISITORS.c.institution_id, _VISITORS.c.visitor_key)
        .with_for_update()
        .cte("stale")
        .prefix_with("MATERIALIZED")
    )
    # Counted from RETURNING: SQLite reports no row count for an UPDATE that opens with WITH.
    cleared = await session.execute(
        update(_VISITORS)
        .where(
            key.in_(select(stale.c.institution_id, stale.c.visitor_key)),
            _VISITORS.c.linked_on < before,
        )
        .values(member_id=None, linked_on=None)
        .returning(_VISITORS.c.visitor_key)
    )
    return len(cleared.all())


async def cut_links(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    now: datetime,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> Cut:
    """Remove the member links older than the retention period, one batch per transaction:
    all of them, or what `max_batches` batches take (the next call goes on from there).

    Each batch goes on from the day the previous one ended, so the entries of rows already cut
    (left in the index until vacuum) are walked again only for that one day. The pass ends at
    the first batch short of `batch_size`: rows skipped there are another runner's, and a scan
    that arrives late with an old date is cut by the next pass.
    """
    before = cut_off(settings=settings, now=now)
    total = Cut()
    from_day: date | None = None
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        async with sessionmaker() as session:
            batch = await cut_batch(session, before=before, from_day=from_day, limit=batch_size)
            await session.commit()
        total += batch.cut
        if batch.cut.checkins < batch_size:
            break
        from_day = batch.last_day
    if total.checkins:
        log.info(
            "retention.cut.done",
            extra={"before": before, "checkins": total.checkins, "visitors": total.visitors},
        )
    return total

"""An institution's own reports of closed standard periods, stored and served while they hold.

A large institution's visits or flows over a closed month take over a second to count, over a
year ten: its distinct visitors among more than a million visits cannot be counted faster
(docs/reports.md, "Scale"). So the refresh that computes a period's rollups (reports/periods.py)
also stores both reports of every institution visited in it, as JSON, for the programme's
suppression k. `visits_report` and `flows_report` read them here first, and count live when
there is none for this institution, period and k, or when a check-in up to the period's end
or an override arrived above the period's marks (`period_changed`).
"""

from __future__ import annotations

import dataclasses
import uuid
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import ReportPeriod, StoredReport, StoredReportKind
from reports.common import Period
from reports.periods import Marks, period_changed, stored_period

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SOURCE_STORED = "stored"
SOURCE_LIVE = "live"

Report = TypeVar("Report", bound="DataclassInstance")


@cache
def _adapter(report_type: type[Any]) -> TypeAdapter[Any]:
    return TypeAdapter(report_type)


def payload(report: DataclassInstance) -> str:
    """The report as JSON that `stored_report` turns back into an equal report (dates, UUIDs
    and floats round-trip exactly)."""
    return _adapter(type(report)).dump_json(report).decode()


def from_payload(report_type: type[Report], text: str) -> Report:
    report: Report = _adapter(report_type).validate_json(text)
    return report


async def stored_report(
    session: AsyncSession,
    report_type: type[Report],
    *,
    report: StoredReportKind,
    institution_id: uuid.UUID,
    period: Period,
    k: int,
) -> Report | None:
    """The stored report, marked as such, or None when there is none or it no longer holds.

    One statement reads the figures with the marks they were computed at, so they belong
    together even while a refresh replaces them.
    """
    which = stored_period(period)
    if which is None:
        return None
    row = (
        await session.execute(
            select(
                ReportPeriod.checkin_mark,
                ReportPeriod.audit_mark,
                ReportPeriod.computed_at,
                StoredReport.payload,
            )
            .join(
                StoredReport,
                and_(
                    StoredReport.period_id == ReportPeriod.id,
                    StoredReport.institution_id == institution_id,
                    StoredReport.report == report,
                    StoredReport.k == k,
                ),
            )
            .where(which)
        )
    ).one_or_none()
    if row is None:
        return None
    checkin_mark, audit_mark, computed_at, text = row
    if await period_changed(session, period=period, marks=Marks(checkin_mark, audit_mark)):
        return None
    return dataclasses.replace(
        from_payload(report_type, text), source=SOURCE_STORED, computed_at=computed_at
    )

"""Reports: an institution's own (`/v1/institutions/{id}/reports/…`) and the operator's.

Scope is enforced by the auth dependencies: institution staff reach only their own institution's
reports, the contact and visit exports need a manager, network and programme payouts the operator.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from api import problems
from api.auth import CurrentStaff, Manager, OperatorAdmin
from api.deps import SessionDep, SettingsDep
from api.schemas.reports import (
    ContactsQuery,
    ExportQuery,
    PayoutQuery,
    PeriodQuery,
    ReportFormat,
    SegmentsQuery,
    csv_response,
)
from membership.clock import utcnow
from reports import csv
from reports.affinity import AffinityReport, FlowsReport, affinity_report, flows_report
from reports.contacts import start_export as start_contacts_export
from reports.contacts import stream_export as stream_contacts
from reports.export import MEDIA_TYPES, id_secret, start_export, stream_export
from reports.network import NetworkReport, network_report
from reports.payouts import MonthClearing, PayoutStatement, close_month, payout_statement
from reports.segments import SegmentsReport, segments_report
from reports.visits import VisitsReport, visits_report

router = APIRouter(tags=["reports"])
institution_router = APIRouter(prefix="/v1/institutions/{institution_id}/reports")
operator_router = APIRouter(prefix="/v1/reports")

_CSV = {200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with `format=csv`."}}
_INSTITUTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **problems.responses(401, 403, 404),
    **_CSV,
}


@institution_router.get("/visits", response_model=VisitsReport, responses=_INSTITUTION_ERRORS)
async def visits(
    institution_id: uuid.UUID,
    query: Annotated[PeriodQuery, Query()],
    session: SessionDep,
    settings: SettingsDep,
    _principal: CurrentStaff,
) -> Any:
    """Visits, visitors, heatmap, reasons, frequency, products, age bands and regions."""
    report = await visits_report(
        session, institution_id=institution_id, period=query.period(), k=settings.suppression_k
    )
    if query.format is ReportFormat.CSV:
        return csv_response(csv.visits_csv(report), filename="visits.csv")
    return report


@institution_router.get(
    "/visits/export",
    response_class=StreamingResponse,
    responses={
        **problems.responses(401, 403, 404, 503),
        200: {
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
            "description": "Every counted visit, one row each; a download.",
        },
    },
)
async def visits_export(
    institution_id: uuid.UUID,
    query: Annotated[ExportQuery, Query()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Manager,
) -> StreamingResponse:
    """Managers only: the period's visits with a per-institution visitor id (audited)."""
    export = await start_export(
        session,
        institution_id=institution_id,
        period=query.period(),
        format=query.format,
        secret=id_secret(settings),
        actor=principal.actor,
    )
    return StreamingResponse(
        stream_export(request.app.state.sessionmaker, export),
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )


@institution_router.get("/affinity", response_model=AffinityReport, responses=_INSTITUTION_ERRORS)
async def affinity(
    institution_id: uuid.UUID,
    query: Annotated[PeriodQuery, Query()],
    session: SessionDep,
    settings: SettingsDep,
    _principal: CurrentStaff,
) -> Any:
    """Other institutions ranked by lift and by share; cells below k withheld."""
    report = await affinity_report(
        session, institution_id=institution_id, period=query.period(), k=settings.suppression_k
    )
    if query.format is ReportFormat.CSV:
        return csv_response(csv.affinity_csv(report), filename="affinity.csv")
    return report


@institution_router.get("/flows", response_model=FlowsReport, responses=_INSTITUTION_ERRORS)
async def flows(
    institution_id: uuid.UUID,
    query: Annotated[PeriodQuery, Query()],
    session: SessionDep,
    settings: SettingsDep,
    _principal: CurrentStaff,
) -> Any:
    """Where visitors went before and after a visit here on the same day."""
    report = await flows_report(
        session, institution_id=institution_id, period=query.period(), k=settings.suppression_k
    )
    if query.format is ReportFormat.CSV:
        return csv_response(csv.flows_csv(report), filename="flows.csv")
    return report


@institution_router.get("/segments", response_model=SegmentsReport, responses=_INSTITUTION_ERRORS)
async def segments(
    institution_id: uuid.UUID,
    query: Annotated[SegmentsQuery, Query()],
    session: SessionDep,
    _principal: CurrentStaff,
) -> Any:
    """Every visitor in exactly one segment, with the rule of each segment."""
    report = await segments_report(session, institution_id=institution_id, as_of=query.as_of)
    if query.format is ReportFormat.CSV:
        return csv_response(csv.segments_csv(report), filename="segments.csv")
    return report


@institution_router.get(
    "/segments/contacts.csv",
    response_class=StreamingResponse,
    responses={
        **problems.responses(401, 403, 404, 422),
        200: {
            "content": {"text/csv": {}},
            "description": "Consenting visitors by name, one row each; a download.",
        },
    },
)
async def contacts(
    institution_id: uuid.UUID,
    query: Annotated[ContactsQuery, Query()],
    request: Request,
    session: SessionDep,
    principal: Manager,
) -> StreamingResponse:
    """Managers only: visitors who consented to share their contact details (audited)."""
    export = await start_contacts_export(
        session,
        institution_id=institution_id,
        actor=principal.actor,
        as_of=query.as_of,
        segments=query.segment,
    )
    return StreamingResponse(
        stream_contacts(request.app.state.sessionmaker, export),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )


@institution_router.get(
    "/payout",
    response_model=PayoutStatement,
    responses={**_INSTITUTION_ERRORS, **problems.responses(409)},
)
async def payout(
    institution_id: uuid.UUID,
    query: Annotated[PayoutQuery, Query()],
    session: SessionDep,
    settings: SettingsDep,
    _principal: CurrentStaff,
) -> Any:
    """This institution's clearing statement for a year, by month and product."""
    statement = await payout_statement(
        session,
        year=query.year,
        currency=settings.default_currency,
        timezone=settings.programme_timezone,
        institution_id=institution_id,
    )
    if query.format is ReportFormat.CSV:
        return csv_response(csv.payout_csv(statement), filename=f"payout-{query.year}.csv")
    return statement


@operator_router.get(
    "/network",
    response_model=NetworkReport,
    responses={**problems.responses(401, 403), **_CSV},
)
async def network(
    query: Annotated[PeriodQuery, Query()],
    session: SessionDep,
    settings: SettingsDep,
    _principal: OperatorAdmin,
) -> Any:
    """The affinity matrix of all institutions and the top same-day flows (CSV: the matrix)."""
    report = await network_report(session, period=query.period(), k=settings.suppression_k)
    if query.format is ReportFormat.CSV:
        return csv_response(csv.network_csv(report), filename="network.csv")
    return report


@operator_router.get(
    "/payouts",
    response_model=PayoutStatement,
    responses={**problems.responses(401, 403, 409), **_CSV},
)
async def payouts(
    query: Annotated[PayoutQuery, Query()],
    session: SessionDep,
    settings: SettingsDep,
    _principal: OperatorAdmin,
) -> Any:
    """Every institution's clearing for a year; the lines add up to the totals to the cent."""
    statement = await payout_statement(
        session,
        year=query.year,
        currency=settings.default_currency,
        timezone=settings.programme_timezone,
    )
    if query.format is ReportFormat.CSV:
        return csv_response(csv.payout_csv(statement), filename=f"payouts-{query.year}.csv")
    return statement


@operator_router.post(
    "/payouts/{year}/{month}/close",
    response_model=MonthClearing,
    responses=problems.responses(401, 403, 409),
)
async def close_payout_month(
    year: Annotated[int, Path(ge=2000, le=2100)],
    month: Annotated[int, Path(ge=1, le=12)],
    session: SessionDep,
    settings: SettingsDep,
    principal: OperatorAdmin,
) -> Any:
    """Close a month that is over, after the last closed one: its lines are stored and its
    statement never changes (audited). Its later visits are paid as corrections of the next
    month closed."""
    return await close_month(
        session,
        month=date(year, month, 1),
        currency=settings.default_currency,
        timezone=settings.programme_timezone,
        actor=principal.actor,
        now=utcnow(),
    )


router.include_router(institution_router)
router.include_router(operator_router)

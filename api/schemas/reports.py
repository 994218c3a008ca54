"""Report queries and answers.

The answers are the typed results of `reports/` (dataclasses, which FastAPI documents and
serialises as they are); this module holds the query parameters and the CSV response.
"""

from __future__ import annotations

import enum
from datetime import date

from fastapi.responses import Response
from pydantic import Field

from api.schemas.common import RequestModel
from reports.common import Period
from reports.export import ExportFormat
from reports.segments import Segment


class ReportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


class FormatQuery(RequestModel):
    format: ReportFormat = Field(
        default=ReportFormat.JSON, description="`csv` for spreadsheets; JSON otherwise."
    )


class PeriodQuery(FormatQuery):
    start: date = Field(description="First local day of the period, included.")
    end: date = Field(description="Last local day of the period, included.")

    def period(self) -> Period:
        return Period(self.start, self.end)


class ExportQuery(RequestModel):
    start: date = Field(description="First local day of the period, included.")
    end: date = Field(description="Last local day of the period, included.")
    format: ExportFormat = Field(
        default=ExportFormat.CSV, description="`csv` for spreadsheets, `parquet` for pandas or BI."
    )

    def period(self) -> Period:
        return Period(self.start, self.end)


class SegmentsQuery(FormatQuery):
    as_of: date | None = Field(
        default=None, description="Reference day; today in the institution's time zone if left out."
    )


class ContactsQuery(RequestModel):
    as_of: date | None = Field(
        default=None, description="Reference day; today in the institution's time zone if left out."
    )
    segment: list[Segment] = Field(
        default_factory=list,
        description="Only visitors in these segments (repeat for several); all if left out.",
    )


class PayoutQuery(FormatQuery):
    year: int = Field(ge=2000, le=2100)


def csv_response(text: str, *, filename: str) -> Response:
    """A download, so a browser saves it instead of showing it; UTF-8 with BOM for Excel."""
    return Response(
        content="\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

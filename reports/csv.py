"""CSV renderings of the reports, for finance departments and spreadsheets.

Withheld figures stay empty cells with `suppressed` = true, never zero. Text that a spreadsheet
would run as a formula (a name starting with "=", "+", "-" or "@") is prefixed with a quote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from reports.affinity import AffinityReport, FlowsReport
from reports.network import NetworkReport
from reports.payouts import PayoutStatement
from reports.segments import SegmentsReport
from reports.visits import VisitsReport

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | bool | date | datetime | None


# A byte-order mark opens every exported file: Excel opens a CSV without one in the Windows code
# page (cp1252 in the Netherlands) and garbles every accented name; pandas, Power BI and
# Python's `utf-8-sig` all read the mark as what it is.
BOM = "\ufeff"


def spreadsheet_text(value: Cell) -> str:
    """A cell as text a spreadsheet shows as typed: a value starting like a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return str(value)


def render(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([spreadsheet_text(value) for value in row] for row in rows)
    return buffer.getvalue()


def visits_csv(report: VisitsReport) -> str:
    """One long table: a section, its bucket, and the counts that apply to it."""
    rows: list[Sequence[Cell]] = [("total", "", report.visits, report.visitors, False)]
    rows.append(("new_visitors", "", None, report.new_visitors, False))
    rows.append(("repeat_visitors", "", None, report.repeat_visitors, False))
    for name, buckets in (
        ("day", report.by_day),
        ("week", report.by_week),
        ("month", report.by_month),
    ):
        rows.extend((name, b.start, b.visits, b.visitors, False) for b in buckets)
    rows.extend(
        ("heatmap", f"{c.weekday}:{c.hour:02d}", c.visits, None, False) for c in report.heatmap
    )
    rows.extend(
        ("not_counted", f"{r.result}:{r.reason}", r.checkins, None, False)
        for r in report.not_counted
    )
    rows.extend(
        ("visits_per_visitor", f"{b.visits}{'+' if b.or_more else ''}", None, b.visitors, False)
        for b in report.visits_per_visitor
    )
    rows.extend(
        ("product", p.product_code or "unknown", p.visits, p.visitors, False)
        for p in report.product_mix
    )
    rows.extend(("age_band", g.group, None, g.visitors, g.suppressed) for g in report.age_bands)
    rows.extend(("region", g.group, None, g.visitors, g.suppressed) for g in report.regions)
    return render(("section", "bucket", "visits", "visitors", "suppressed"), rows)


def affinity_csv(report: AffinityReport) -> str:
    return render(
        ("institution_code", "institution_name", "both", "share", "lift", "jaccard", "suppressed"),
        (
            (
                r.institution_code,
                r.institution_name,
                r.both,
                r.share,
                r.lift,
                r.jaccard,
                r.suppressed,
            )
            for r in report.by_lift
        ),
    )


def flows_csv(report: FlowsReport) -> str:
    rows = [("before", r) for r in report.before] + [("after", r) for r in report.after]
    return render(
        ("direction", "institution_code", "institution_name", "visitors", "visits", "suppressed"),
        (
            (d, r.institution_code, r.institution_name, r.visitors, r.visits, r.suppressed)
            for d, r in rows
        ),
    )


def segments_csv(report: SegmentsReport) -> str:
    return render(
        ("segment", "visitors", "rule"),
        ((s.segment, s.visitors, s.rule) for s in report.segments),
    )


def payout_csv(statement: PayoutStatement) -> str:
    """The statement lines; amounts both in minor units and as a decimal for spreadsheets.

    `correction_for` names the closed month whose late visits a correction line pays.
    """
    models = {m.month: m.model for m in statement.months}
    return render(
        (
            "month",
            "model",
            "institution_code",
            "product_code",
            "visits",
            "amount_minor",
            "amount",
            "currency",
            "correction_for",
        ),
        (
            (
                line.month.strftime("%Y-%m"),
                models[line.month],
                line.institution_code,
                line.product_code,
                line.visits,
                line.amount_minor,
                _decimal(line.amount_minor),
                statement.currency,
                line.correction_for.strftime("%Y-%m") if line.correction_for else None,
            )
            for line in statement.lines
        ),
    )


def network_csv(report: NetworkReport) -> str:
    return render(
        ("a_code", "b_code", "both", "share_ab", "share_ba", "lift", "jaccard", "suppressed"),
        (
            (c.a_code, c.b_code, c.both, c.share_ab, c.share_ba, c.lift, c.jaccard, c.suppressed)
            for c in report.matrix
        ),
    )


def _decimal(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"

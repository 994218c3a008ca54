"""Suppression withholds, never rounds; CSV keeps withheld cells empty and defuses formulas."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.affinity import affinity_figures
from reports.csv import render, segments_csv, visits_csv
from reports.privacy import suppress, suppress_breakdown
from reports.segments import SegmentCount, SegmentsReport
from reports.visits import GroupCount, VisitsReport


class TestSuppression:
    def test_below_k_is_withheld_and_zero_overlap_too(self) -> None:
        assert suppress(9, 10) is None
        assert suppress(0, 10) is None
        assert suppress(10, 10) == 10

    def test_one_withheld_cell_takes_the_next_smallest_with_it(self) -> None:
        cells = {"a": 3, "b": 40, "c": 12, "d": 12}
        result = suppress_breakdown(cells, 10, sort_key={key: key for key in cells})
        assert result == {"a": None, "b": 40, "c": None, "d": 12}

    @settings(max_examples=200, deadline=None)
    @given(
        cells=st.dictionaries(st.text(min_size=1, max_size=3), st.integers(1, 30), max_size=8),
        k=st.integers(1, 12),
    )
    def test_no_shown_cell_below_k_and_never_exactly_one_withheld(
        self, cells: dict[str, int], k: int
    ) -> None:
        result = suppress_breakdown(cells, k, sort_key={key: key for key in cells})
        shown = [value for value in result.values() if value is not None]
        assert all(value >= k for value in shown)
        assert all(result[key] in (None, cells[key]) for key in cells)
        withheld = [key for key, value in result.items() if value is None]
        assert len(withheld) != 1 or len(cells) == 1

    def test_affinity_is_withheld_when_the_other_institution_is_small(self) -> None:
        small_b = affinity_figures(both=12, visitors_a=100, visitors_b=9, visitors_any=500, k=10)
        assert (small_b.both, small_b.lift, small_b.suppressed) == (None, None, True)
        shown = affinity_figures(both=12, visitors_a=100, visitors_b=40, visitors_any=500, k=10)
        assert (shown.both, shown.share, shown.lift, shown.jaccard) == (12, 0.12, 1.5, 0.09375)


class TestCsv:
    def test_withheld_cells_are_empty_and_formulas_defused(self) -> None:
        text = render(("name", "count", "suppressed"), [("=HYPERLINK()", None, True)])
        rows = list(csv.reader(io.StringIO(text)))
        assert rows == [["name", "count", "suppressed"], ["'=HYPERLINK()", "", "true"]]

    def test_visits_csv_lists_every_section(self) -> None:
        report = VisitsReport(
            institution_id=uuid.uuid4(),
            start=date(2026, 1, 1),
            end=date(2026, 1, 31),
            timezone="Europe/Amsterdam",
            k=10,
            visits=30,
            visitors=20,
            new_visitors=5,
            repeat_visitors=4,
            repeat_visit_rate=0.2,
            by_day=[],
            by_week=[],
            by_month=[],
            heatmap=[],
            not_counted=[],
            visits_per_visitor=[],
            product_mix=[],
            age_bands=[GroupCount("18-24", None, True), GroupCount("25-34", 17, False)],
            regions=[],
        )
        rows = list(csv.DictReader(io.StringIO(visits_csv(report))))
        assert [row["section"] for row in rows] == [
            "total",
            "new_visitors",
            "repeat_visitors",
            "age_band",
            "age_band",
        ]
        assert (rows[3]["visitors"], rows[3]["suppressed"]) == ("", "true")

    def test_segments_csv(self) -> None:
        report = SegmentsReport(uuid.uuid4(), date(2026, 1, 1), 3, [SegmentCount("new", 3, "r")])
        assert segments_csv(report).splitlines() == ["segment,visitors,rule", "new,3,r"]

"""Affinity and same-day flows equal the brute force, and never show a count below k."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from sqlalchemy.ext.asyncio import AsyncSession

from reports.affinity import affinity_report, flows_report
from reports.common import Period
from tests.reports.dataset import Dataset, brute_affinity, brute_flows, datasets, load

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestAffinity:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_every_figure(self, session: AsyncSession, dataset: Dataset) -> None:
        loaded = await load(session, dataset)
        period = Period(*dataset.period)
        for index, institution in enumerate(loaded.institutions):
            report = await affinity_report(
                session, institution_id=institution.id, period=period, k=dataset.k
            )
            expected = brute_affinity(dataset, index)
            got = {
                loaded.by_id[row.institution_id]: (
                    None if row.suppressed else (row.both, row.share, row.lift, row.jaccard)
                )
                for row in report.by_lift
            }
            assert got == expected
            assert {row.institution_id for row in report.by_share} == {
                row.institution_id for row in report.by_lift
            }
            for ranking, measure in ((report.by_lift, "lift"), (report.by_share, "share")):
                shown = [getattr(row, measure) for row in ranking if not row.suppressed]
                assert shown == sorted(shown, reverse=True)
                flags = [row.suppressed for row in ranking]
                assert flags == sorted(flags), "withheld rows come last"
            for row in report.by_lift:
                assert row.suppressed == (row.both is None)
                assert row.both is None or row.both >= dataset.k


class TestFlows:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_every_figure(self, session: AsyncSession, dataset: Dataset) -> None:
        loaded = await load(session, dataset)
        period = Period(*dataset.period)
        for index, institution in enumerate(loaded.institutions):
            report = await flows_report(
                session, institution_id=institution.id, period=period, k=dataset.k
            )
            expected = brute_flows(dataset, index)
            for direction in ("before", "after"):
                rows = getattr(report, direction)
                got = {
                    loaded.by_id[row.institution_id]: (
                        None if row.suppressed else (row.visitors, row.visits)
                    )
                    for row in rows
                }
                assert got == expected[direction]
                for row in rows:
                    assert row.visitors is None or row.visitors >= dataset.k

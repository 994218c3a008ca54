"""The operator's affinity matrix and top flows equal the brute force; small cells withheld."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from sqlalchemy.ext.asyncio import AsyncSession

from reports.common import Period
from reports.network import network_report
from tests.reports.dataset import Dataset, brute_network, datasets, load

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestNetwork:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_matrix_and_flows(self, session: AsyncSession, dataset: Dataset) -> None:
        await load(session, dataset)
        report = await network_report(session, period=Period(*dataset.period), k=dataset.k)
        matrix, flows = brute_network(dataset)
        index = {f"I{i}": i for i in range(len(dataset.zones))}
        got = {
            (index[c.a_code], index[c.b_code]): (
                None if c.suppressed else (c.both, c.share_ab, c.share_ba, c.lift, c.jaccard)
            )
            for c in report.matrix
        }
        assert got == matrix
        assert [
            (index[f.from_code], index[f.to_code], f.visitors, f.visits) for f in report.top_flows
        ] == flows
        for cell in report.matrix:
            assert cell.both is None or cell.both >= dataset.k
        for institution in report.institutions:
            assert institution.visitors is None or institution.visitors >= dataset.k

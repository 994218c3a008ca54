"""The operator's affinity matrix and top flows equal the brute force; small cells withheld."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from sqlalchemy.ext.asyncio import AsyncSession

from reports.affinity import affinity_report
from reports.common import Period
from reports.network import network_report
from reports.periods import programme_counts
from tests.factories import create_checkin, create_institution, create_member, create_venue
from tests.reports.dataset import Dataset, brute_network, datasets, load, reset

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


class TestProgrammeCounts:
    """The counts under the matrix, affinity and the rollups, for the edges a brute force on
    random data may not draw."""

    async def test_edges(self, session: AsyncSession) -> None:
        await reset(session)
        a, b, c, d = [await create_institution(session, code=code) for code in "ABCD"]
        venues = {i.code: await create_venue(session, institution=i) for i in (a, b, c, d)}
        both, only_a, only_c, keyless = [await create_member(session) for _ in range(4)]
        keyless.visitor_key = None
        day = datetime(2026, 3, 2, 10, tzinfo=UTC)
        for member, code, days in (
            (both, "A", 0),
            (both, "A", 1),  # a second visit of the same institution counts once
            (both, "B", 0),
            (only_a, "A", 0),
            (only_c, "C", 2),
            (keyless, "A", 0),  # no visitor: in no count
            (keyless, "B", 0),
            (keyless, "D", 0),
        ):
            await create_checkin(
                session, venue=venues[code], member=member, scanned_at=day + timedelta(days=days)
            )
        await session.commit()
        period = Period(date(2026, 3, 1), date(2026, 3, 31))

        counts = await programme_counts(session, period=period)
        assert counts.visitors_any == 3
        assert counts.visitors == {a.id: 2, b.id: 1, c.id: 1}
        # A pair sharing nobody is absent; a < b, as the rollup stores pairs.
        assert counts.shared == {(min(a.id, b.id), max(a.id, b.id)): 1}

        affinity = await affinity_report(session, institution_id=a.id, period=period, k=1)
        assert affinity.visitors == 2
        assert {row.institution_code: row.both for row in affinity.by_lift} == {"B": 1, "C": None}
        report = await network_report(session, period=period, k=1)
        assert report.visitors == 3
        assert {(cell.a_code, cell.b_code): cell.both for cell in report.matrix} == {
            ("A", "B"): 1,
            ("A", "C"): None,
            ("B", "C"): None,
        }

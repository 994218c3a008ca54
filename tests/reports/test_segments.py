"""Each visitor in exactly one segment, as the written rules say; contacts only with consent."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from sqlalchemy.ext.asyncio import AsyncSession

from reports.contacts import ContactExport, contact_batches
from reports.segments import Segment, segments_report
from tests.reports.dataset import Dataset, brute_contacts, brute_segments, datasets, load
from tests.reports.segment_sources import segment_source

__all__ = ["segment_source"]

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestSegments:
    @EXAMPLES
    @given(dataset=datasets())
    async def test_counts_and_contacts(
        self, session: AsyncSession, segment_source: str, dataset: Dataset
    ) -> None:
        loaded = await load(session, dataset)
        for index, institution in enumerate(loaded.institutions):
            report = await segments_report(
                session, institution_id=institution.id, as_of=dataset.as_of_date
            )
            expected = brute_segments(dataset, index)
            counts = Counter(expected.values())
            assert {s.segment: s.visitors for s in report.segments} == {
                s.value: counts.get(s.value, 0) for s in Segment
            }
            assert report.visitors == len(expected) == sum(s.visitors for s in report.segments)

            export = ContactExport(
                institution.id, institution.code, dataset.as_of_date, tuple(Segment)
            )
            contacts = [c async for batch in contact_batches(session, export) for c in batch]
            member_index = {member.id: i for i, member in enumerate(loaded.members)}
            got = {member_index[c.member_id]: c.segment for c in contacts}
            assert got == brute_contacts(dataset, index)
            assert all(dataset.members[i].share for i in got)

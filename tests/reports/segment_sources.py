"""Both ways the segments are answered, for tests that must give identical figures on each."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from reports import segments


@pytest.fixture(params=["visitor_rows", "visitor_rows_hashed", "checkins"])
def segment_source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """`visitor_rows`: as the reports choose (the visitor rows whenever they answer, renewal
    probed per visitor at these sizes); `visitor_rows_hashed`: the same with the programme's
    members at risk found once, as for a large population; `checkins`: the live query over the
    check-ins, always."""
    if request.param == "visitor_rows_hashed":
        monkeypatch.setattr(segments, "PROBE_MEMBERS_UP_TO", -1)
    if request.param == "checkins":

        async def never(session: AsyncSession, institution_id: uuid.UUID, as_of: date) -> bool:
            return False

        monkeypatch.setattr(segments, "_visitor_rows_answer", never)
    return str(request.param)

"""The server `benchmarks/checkin.py` runs: the real app plus one bare INSERT route.

The ceiling has to be measured on the same process, database and pool as `POST /v1/checkins`,
or the ratio compares two different servers. Mounting the route here, and only here, keeps a
benchmark route out of the product. It pays exactly what every scanner call pays anyway (request
parsing, device-key authentication, one transaction) plus a single INSERT into `checkins`; the
difference to the real route is the door decision itself. The INSERT is built once, as the door's
own is, so that the ceiling is not lowered by statement building the real route does not do.

Served from the checkout root: `uvicorn --factory benchmarks._ceiling_app:create_app`.
"""

from __future__ import annotations

import typing

from fastapi import APIRouter, FastAPI
from sqlalchemy import Table, insert

from api.app import create_app as create_product_app
from api.deps import SessionDep
from api.device_auth import CurrentDevice
from api.schemas.checkins import CheckinCreate
from membership.clock import local_date, utcnow
from membership.models import Checkin, CheckinResult
from membership.settings import Settings

CEILING_PATH = "/_bench/insert"
# Rows written here are not visits: refused, uncounted and without a visitor, so they can never
# meet the one-counted-visit index and never change what the real route decides.
BENCH_REASON = "benchmark"

router = APIRouter(include_in_schema=False)
_checkins = typing.cast(Table, Checkin.__table__)
_INSERT = insert(_checkins).returning(_checkins.c.id)


@router.post(CEILING_PATH)
async def insert_checkin(
    body: CheckinCreate, session: SessionDep, device: CurrentDevice
) -> dict[str, int | None]:
    """One INSERT ... RETURNING id, nothing else: the practical ceiling of a check-in."""
    institution = device.venue.institution
    checkin_id = await session.scalar(
        _INSERT,
        {
            "client_scan_id": body.client_scan_id,
            "device_id": device.id,
            "institution_id": institution.id,
            "venue_id": device.venue_id,
            "scanned_at": body.scanned_at,
            "received_at": utcnow(),
            "local_date": local_date(body.scanned_at, institution.timezone),
            "result": CheckinResult.REFUSED,
            "reason": BENCH_REASON,
            "counted": False,
            "offline": False,
            "flagged": False,
            "imported": False,
        },
    )
    return {"id": checkin_id}


def create_app() -> FastAPI:
    """The product app exactly as `membership serve` builds it, plus the ceiling route."""
    app = create_product_app(Settings())
    app.include_router(router)
    return app

"""Liveness and readiness for load balancers and `make run`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import SessionDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(session: SessionDep) -> Health | JSONResponse:
    """200 only when the database answers: a worker without its database must leave the pool."""
    try:
        await session.execute(text("SELECT 1"))
    except Exception:
        body = Health(status="unavailable", database="unreachable")
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", database="ok")

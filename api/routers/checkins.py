"""The door: scanners post scans here and get the decision the doorman sees."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import FileResponse
from pydantic import TypeAdapter, ValidationError

from api import problems
from api.auth import Manager
from api.deps import SessionDep, SettingsDep
from api.device_auth import CurrentDevice
from api.schemas.checkins import (
    BatchItemResult,
    BatchResult,
    CheckinBatch,
    CheckinCreate,
    CheckinRead,
    OfflineCheckin,
    OverrideCreate,
)
from membership import checkins, photos
from membership.clock import utcnow
from membership.errors import NotFound
from membership.keys import KeyStore

router = APIRouter(prefix="/v1/checkins", tags=["check-in"])

_offline_item = TypeAdapter(OfflineCheckin)


@router.post("", response_model=CheckinRead, responses=problems.responses(401))
async def create_checkin(
    body: CheckinCreate, session: SessionDep, settings: SettingsDep, device: CurrentDevice
) -> CheckinRead:
    """Decide one scan. A refusal is an answer (200 with `result: refused`), not an error."""
    outcome = await checkins.record_scan(
        session,
        device=device,
        scan=checkins.Scan(
            code=body.code, client_scan_id=body.client_scan_id, scanned_at=body.scanned_at
        ),
        received_at=utcnow(),
        keys=KeyStore.from_settings(settings).public_keys(),
        programme=settings.programme_code,
    )
    return CheckinRead.of(outcome)


@router.post("/batch", response_model=BatchResult, responses=problems.responses(401))
async def create_checkin_batch(
    body: CheckinBatch, session: SessionDep, settings: SettingsDep, device: CurrentDevice
) -> BatchResult:
    """Up to 1,000 scans made offline; each item is answered on its own, re-sending is harmless."""
    results: dict[int, BatchItemResult] = {}
    valid: list[tuple[int, OfflineCheckin]] = []
    for index, raw in enumerate(body.items):
        scan_id = raw.get("client_scan_id")
        try:
            valid.append((index, _offline_item.validate_python(raw)))
        except ValidationError as exc:
            errors = [
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
            results[index] = BatchItemResult(
                index=index,
                client_scan_id=scan_id if isinstance(scan_id, str) else None,
                status="rejected",
                errors=errors,
            )
    outcomes = await checkins.record_batch(
        session,
        device=device,
        scans=[
            checkins.Scan(
                code=item.code,
                client_scan_id=item.client_scan_id,
                scanned_at=item.scanned_at,
                offline_result=item.offline_result,
                offline_reason=item.offline_reason,
            )
            for _, item in valid
        ],
        received_at=utcnow(),
        keys=KeyStore.from_settings(settings).public_keys(),
        programme=settings.programme_code,
    )
    for (index, item), outcome in zip(valid, outcomes, strict=True):
        results[index] = BatchItemResult(
            index=index,
            client_scan_id=item.client_scan_id,
            status="duplicate" if outcome.replayed else "recorded",
            checkin=CheckinRead.of(outcome),
        )
    items = [results[index] for index in range(len(body.items))]
    return BatchResult(
        recorded=sum(r.status == "recorded" for r in items),
        duplicates=sum(r.status == "duplicate" for r in items),
        rejected=sum(r.status == "rejected" for r in items),
        items=items,
    )


@router.get(
    "/{checkin_id}/photo",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}}},
        **problems.responses(401, 404),
    },
)
async def checkin_photo(
    checkin_id: int, session: SessionDep, settings: SettingsDep, device: CurrentDevice
) -> FileResponse:
    """The holder's photo for the doorman's screen, only for a scan this device made."""
    relative = await checkins.holder_photo(session, checkin_id=checkin_id, device_id=device.id)
    path = photos.resolve(settings.photo_dir, relative)
    if path is None:
        raise NotFound("No photo for this scan.")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private"})


@router.post(
    "/{checkin_id}/override",
    response_model=CheckinRead,
    status_code=status.HTTP_200_OK,
    responses=problems.responses(401, 403, 404, 409),
)
async def override_checkin(
    checkin_id: int, body: OverrideCreate, session: SessionDep, principal: Manager
) -> CheckinRead:
    """A manager admits a refused card with a reason; audited, and counted once."""
    outcome = await checkins.override(
        session,
        checkin_id=checkin_id,
        reason=body.reason,
        institution_scope=None if principal.is_operator else principal.institution_id,
        actor=principal.actor,
        now=utcnow(),
    )
    return CheckinRead.of(outcome)

"""Scanner devices: a manager registers one for a venue; the device pairs itself with the code."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api import problems
from api.auth import Manager
from api.deps import SessionDep
from api.schemas.checkins import (
    DeviceCreate,
    DeviceRead,
    PairedDeviceRead,
    PairingCodeRead,
    PairRequest,
)
from membership import devices
from membership.clock import utcnow
from membership.errors import NotFound
from membership.models import Device

router = APIRouter(tags=["devices"])


def _read(device: Device) -> DeviceRead:
    return DeviceRead.model_validate(device, from_attributes=True)


def _pairing(pairing: devices.PairingCode) -> PairingCodeRead:
    return PairingCodeRead(
        device_id=pairing.device.id,
        pairing_code=devices.display_pairing_code(pairing.code),
        expires_at=pairing.expires_at,
    )


async def _own_device(
    session: SessionDep, institution_id: uuid.UUID, device_id: uuid.UUID
) -> Device:
    device = await devices.get_device(session, device_id=device_id)
    if device.venue.institution_id != institution_id:
        raise NotFound("No such device.")
    return device


@router.post(
    "/v1/institutions/{institution_id}/devices",
    response_model=PairingCodeRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404),
)
async def register_device(
    institution_id: uuid.UUID, body: DeviceCreate, session: SessionDep, principal: Manager
) -> PairingCodeRead:
    """The pairing code is shown once and works for 15 minutes."""
    pairing = await devices.register_device(
        session,
        institution_id=institution_id,
        venue_id=body.venue_id,
        name=body.name,
        actor=principal.actor,
        now=utcnow(),
    )
    return _pairing(pairing)


@router.get(
    "/v1/institutions/{institution_id}/devices",
    response_model=list[DeviceRead],
    responses=problems.responses(401, 403),
)
async def list_devices(
    institution_id: uuid.UUID, session: SessionDep, principal: Manager
) -> list[DeviceRead]:
    return [_read(d) for d in await devices.list_devices(session, institution_id=institution_id)]


@router.post(
    "/v1/institutions/{institution_id}/devices/{device_id}/pairing-code",
    response_model=PairingCodeRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def renew_pairing_code(
    institution_id: uuid.UUID, device_id: uuid.UUID, session: SessionDep, principal: Manager
) -> PairingCodeRead:
    """Re-pair a device (new phone, wiped scanner): its old key stops working at once."""
    device = await _own_device(session, institution_id, device_id)
    pairing = await devices.renew_pairing_code(
        session, device=device, actor=principal.actor, now=utcnow()
    )
    return _pairing(pairing)


@router.post(
    "/v1/institutions/{institution_id}/devices/{device_id}/revoke",
    response_model=DeviceRead,
    responses=problems.responses(401, 403, 404),
)
async def revoke_device(
    institution_id: uuid.UUID, device_id: uuid.UUID, session: SessionDep, principal: Manager
) -> DeviceRead:
    device = await _own_device(session, institution_id, device_id)
    return _read(
        await devices.revoke_device(session, device=device, actor=principal.actor, now=utcnow())
    )


@router.post("/v1/devices/pair", response_model=PairedDeviceRead, responses=problems.responses(401))
async def pair_device(body: PairRequest, session: SessionDep) -> PairedDeviceRead:
    """Exchange a pairing code for the device's own key (shown once, stored hashed)."""
    paired = await devices.pair(session, code=body.pairing_code, now=utcnow())
    return PairedDeviceRead(
        device=_read(paired.device),
        device_key=paired.key,
        institution_id=paired.device.venue.institution_id,
        venue_id=paired.device.venue_id,
    )

"""Scanner devices authenticate with their own key: `Authorization: Bearer dk_…`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep
from membership import devices
from membership.clock import utcnow
from membership.models import Device

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="DeviceKey",
    description="The key a scanner got from `POST /v1/devices/pair`.",
)


async def current_device(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Device:
    """The paired, unrevoked device with its venue and institution loaded, or a 401 problem."""
    if credentials is None or not credentials.credentials:
        raise devices.InvalidDeviceKey()
    return await devices.authenticate(session, key=credentials.credentials, now=utcnow())


CurrentDevice = Annotated[Device, Depends(current_device)]

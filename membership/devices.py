"""Scanner devices: registered by a manager, paired once with a short code, then keyed.

The pairing code is typed on a door device by a person, so it is short; it is therefore
single-use and lives 15 minutes. The device key that replaces it is long, shown once and
stored hashed, and revoking the device kills it at once.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from membership import audit
from membership.audit import Actor
from membership.errors import AuthenticationRequired, Conflict, NotFound
from membership.models import Device, Venue
from membership.staff import hash_token

PAIRING_TTL = timedelta(minutes=15)
# Unambiguous when read aloud or typed: no 0/O or 1/I/L.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_CODE_LENGTH = 8
KEY_PREFIX = "dk_"
# last_seen_at is for the operator's overview; writing it on every scan would double the
# writes of the hottest path, so it is refreshed at most once a minute.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


class InvalidPairingCode(AuthenticationRequired):
    code = "invalid-pairing-code"
    title = "The pairing code is unknown, used or expired"


class InvalidDeviceKey(AuthenticationRequired):
    code = "invalid-device-key"
    title = "The device key is missing, unknown or revoked"


class DeviceRevoked(Conflict):
    code = "device-revoked"
    title = "This device has been revoked"


@dataclass(frozen=True)
class PairingCode:
    device: Device
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class PairedDevice:
    device: Device
    key: str


def normalise_pairing_code(raw: str) -> str:
    return "".join(char for char in raw.upper() if char.isalnum())


def _new_pairing_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))


def display_pairing_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


async def get_device(session: AsyncSession, *, device_id: uuid.UUID) -> Device:
    device = await session.scalar(
        select(Device)
        .where(Device.id == device_id)
        .options(selectinload(Device.venue).selectinload(Venue.institution))
    )
    if device is None:
        raise NotFound("No such device.")
    return device


async def list_devices(session: AsyncSession, *, institution_id: uuid.UUID) -> list[Device]:
    rows = await session.scalars(
        select(Device)
        .join(Venue, Venue.id == Device.venue_id)
        .where(Venue.institution_id == institution_id)
        .options(selectinload(Device.venue))
        .order_by(Device.created_at, Device.id)
    )
    return list(rows)


async def _issue_pairing_code(
    session: AsyncSession, *, device: Device, now: datetime
) -> PairingCode:
    code = _new_pairing_code()
    device.pairing_code_hash = hash_token(code)
    device.pairing_expires_at = now + PAIRING_TTL
    await session.flush()
    return PairingCode(device=device, code=code, expires_at=now + PAIRING_TTL)


async def register_device(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    venue_id: uuid.UUID,
    name: str,
    actor: Actor,
    now: datetime,
) -> PairingCode:
    """A device belongs to one venue of the manager's own institution."""
    venue = await session.scalar(
        select(Venue).where(Venue.id == venue_id, Venue.institution_id == institution_id)
    )
    if venue is None or not venue.active:
        raise NotFound("No such active venue at this institution.")
    device = Device(venue_id=venue.id, name=name)
    session.add(device)
    await session.flush()
    pairing = await _issue_pairing_code(session, device=device, now=now)
    await audit.record(
        session,
        actor=actor,
        action="device.register",
        entity_type="device",
        entity_id=device.id,
        institution_id=institution_id,
        changes={"name": name, "venue_id": str(venue.id)},
    )
    return pairing


async def renew_pairing_code(
    session: AsyncSession, *, device: Device, actor: Actor, now: datetime
) -> PairingCode:
    """A new code for a device being replaced or re-installed; its old key stops working."""
    if device.revoked_at is not None:
        raise DeviceRevoked()
    device.key_hash = None
    device.key_prefix = None
    pairing = await _issue_pairing_code(session, device=device, now=now)
    await audit.record(
        session,
        actor=actor,
        action="device.repair",
        entity_type="device",
        entity_id=device.id,
        institution_id=device.venue.institution_id,
    )
    return pairing


async def pair(session: AsyncSession, *, code: str, now: datetime) -> PairedDevice:
    """Exchange a pairing code for the device's own key, once.

    The conditional UPDATE clears the code in the same statement that checks it, so two
    devices racing with one code cannot both get a key.
    """
    code_hash = hash_token(normalise_pairing_code(code))
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    device_id = await session.scalar(
        update(Device)
        .where(
            Device.pairing_code_hash == code_hash,
            Device.pairing_expires_at > now,
            Device.revoked_at.is_(None),
        )
        .values(
            pairing_code_hash=None,
            pairing_expires_at=None,
            key_hash=hash_token(key),
            key_prefix=key[:12],
            paired_at=now,
        )
        .returning(Device.id)
    )
    if device_id is None:
        raise InvalidPairingCode()
    return PairedDevice(device=await get_device(session, device_id=device_id), key=key)


# Built once: every scanner call authenticates, and building and hashing the statement anew
# cost about as much as running it. Read from the database on every call, so a revoked key
# stops working at once.
_BY_KEY = (
    select(Device)
    .where(Device.key_hash == bindparam("key_hash"), Device.revoked_at.is_(None))
    .options(joinedload(Device.venue).joinedload(Venue.institution))
)


async def authenticate(session: AsyncSession, *, key: str, now: datetime) -> Device:
    """The device behind a key, with its venue and institution, or 401."""
    device = await session.scalar(_BY_KEY, {"key_hash": hash_token(key)})
    if device is None:
        raise InvalidDeviceKey()
    if device.last_seen_at is None or now - device.last_seen_at >= LAST_SEEN_RESOLUTION:
        device.last_seen_at = now
    return device


async def revoke_device(
    session: AsyncSession, *, device: Device, actor: Actor, now: datetime
) -> Device:
    if device.revoked_at is None:
        device.revoked_at = now
        device.key_hash = None
        device.pairing_code_hash = None
        await audit.record(
            session,
            actor=actor,
            action="device.revoke",
            entity_type="device",
            entity_id=device.id,
            institution_id=device.venue.institution_id,
        )
    return device

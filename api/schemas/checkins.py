"""What scanners send and what the doorman sees."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from api.schemas.common import RequestModel
from membership import card_numbers
from membership.checkins import ScanOutcome
from membership.models import CheckinResult

ClientScanId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$"),
    Field(description="The device's own id for this scan; re-sending it changes nothing."),
]
ScannedCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=512),
    Field(description="The QR text as scanned, or a typed card number."),
]


class CheckinCreate(RequestModel):
    code: ScannedCode
    client_scan_id: ClientScanId
    scanned_at: AwareDatetime = Field(description="The device clock at the scan.")


class OfflineCheckin(CheckinCreate):
    """A scan the device recorded while offline, with the decision it showed at the door."""

    offline_result: CheckinResult | None = None
    offline_reason: str | None = Field(default=None, max_length=40)


class CheckinBatch(RequestModel):
    # Items are validated one by one so that one bad scan does not reject its neighbours.
    items: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class Holder(BaseModel):
    name: str
    photo_url: str | None
    product: str | None
    product_code: str | None
    valid_until: date | None
    card_number: str


class CheckinRead(BaseModel):
    id: int
    client_scan_id: str
    result: CheckinResult
    reason: str
    counted: bool
    offline: bool
    flagged: bool
    replayed: bool
    scanned_at: datetime
    received_at: datetime
    visits_today: int
    holder: Holder | None

    @classmethod
    def of(cls, outcome: ScanOutcome) -> CheckinRead:
        checkin = outcome.checkin
        holder = None
        if outcome.holder is not None:
            seen = outcome.holder
            holder = Holder(
                name=seen.name,
                photo_url=f"/v1/checkins/{checkin.id}/photo" if seen.has_photo else None,
                product=seen.product_name,
                product_code=seen.product_code,
                valid_until=seen.valid_until,
                card_number=card_numbers.display(seen.card_number),
            )
        return cls(
            id=checkin.id,
            client_scan_id=checkin.client_scan_id,
            result=checkin.result,
            reason=checkin.reason,
            counted=checkin.counted,
            offline=checkin.offline,
            flagged=checkin.flagged,
            replayed=outcome.replayed,
            scanned_at=checkin.scanned_at,
            received_at=checkin.received_at,
            visits_today=outcome.visits_today,
            holder=holder,
        )


class BatchItemResult(BaseModel):
    index: int
    client_scan_id: str | None
    status: Literal["recorded", "duplicate", "rejected"]
    checkin: CheckinRead | None = None
    errors: list[dict[str, Any]] = []


class BatchResult(BaseModel):
    recorded: int
    duplicates: int
    rejected: int
    items: list[BatchItemResult]


class OverrideCreate(RequestModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]


class DeviceCreate(RequestModel):
    venue_id: uuid.UUID
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class PairingCodeRead(BaseModel):
    device_id: uuid.UUID
    pairing_code: str
    expires_at: datetime


class PairRequest(RequestModel):
    pairing_code: Annotated[str, StringConstraints(min_length=4, max_length=20)]


class DeviceRead(BaseModel):
    id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    paired_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    key_prefix: str | None


class PairedDeviceRead(BaseModel):
    device: DeviceRead
    device_key: str = Field(description="Shown once; store it on the device.")
    institution_id: uuid.UUID
    venue_id: uuid.UUID

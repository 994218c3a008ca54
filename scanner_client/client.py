"""The HTTP side of the scanner: one small class over the API, after httpx's own design.

`Client` knows the five calls a door device makes and turns every way a network can fail into
`ServerUnavailable`, the one error the door loop answers by deciding offline. The transport is
injectable (`httpx.MockTransport` in tests, a real socket otherwise), and answers are parsed into
small typed models that ignore fields they do not know, so a newer server never breaks an older
scanner.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from scanner_client import __version__
from scanner_client.errors import (
    DeviceKeyRejected,
    PairingFailed,
    ServerRejected,
    ServerUnavailable,
)

DOOR_TIMEOUT = 1.5
"""Seconds a doorman waits for the server before the scanner decides offline."""
BULK_TIMEOUT = 15.0
BATCH_LIMIT = 1000

_Model = TypeVar("_Model", bound=BaseModel)


class Result(enum.StrEnum):
    ADMITTED = "admitted"
    REENTRY = "reentry"
    REFUSED = "refused"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Holder(_Answer):
    name: str | None = None  # offline the device knows the code, not who holds it
    product: str | None = None
    product_code: str | None = None
    valid_until: date | None = None
    card_number: str
    photo_url: str | None = None


class Decision(_Answer):
    """What the doorman sees: from the server when online, from `offline.decide` otherwise."""

    client_scan_id: str
    result: Result
    reason: str
    counted: bool = False
    offline: bool = False
    replayed: bool = False
    scanned_at: datetime
    visits_today: int | None = None
    holder: Holder | None = None
    # Known to the device itself (the code or the typed digits), even when the server has no card.
    card_number: str | None = None

    @property
    def admitted(self) -> bool:
        return self.result is not Result.REFUSED


class DeviceRead(_Answer):
    id: str
    name: str
    venue_id: str


class Pairing(_Answer):
    device_key: str
    device: DeviceRead
    institution_id: str
    venue_id: str


class InstitutionRules(_Answer):
    id: str
    code: str
    name: str
    timezone: str
    anti_passback_minutes: int


class AcceptedProduct(_Answer):
    code: str
    name: str


class PublicKey(_Answer):
    key_id: str
    algorithm: str = "Ed25519"
    status: str
    public_key: str


class RevocationEntry(_Answer):
    id: int
    card_number: str
    min_version: int
    revoked: bool
    reason: str


class RevocationPage(_Answer):
    entries: list[RevocationEntry]
    cursor: int
    has_more: bool


class SyncPage(_Answer):
    server_time: datetime
    programme: str
    venue_name: str
    institution: InstitutionRules
    products: list[AcceptedProduct]
    keys: list[PublicKey]
    revocations: RevocationPage


@dataclass(frozen=True)
class SyncAnswer:
    """One sync call and when it was made, so the caller can measure the clock skew."""

    page: SyncPage
    sent_at: float
    received_at: float

    @property
    def clock_skew_seconds(self) -> float:
        """Server clock minus device clock, taking the answer as made half-way through the call."""
        midpoint = (self.sent_at + self.received_at) / 2
        return self.page.server_time.timestamp() - midpoint


@dataclass(frozen=True)
class UploadItem:
    code: str
    client_scan_id: str
    scanned_at: datetime
    offline_result: Result | None = None
    offline_reason: str | None = None

    def body(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "code": self.code,
            "client_scan_id": self.client_scan_id,
            "scanned_at": self.scanned_at.isoformat(),
        }
        if self.offline_result is not None:
            item["offline_result"] = self.offline_result.value
            item["offline_reason"] = self.offline_reason
        return item


class BatchItem(_Answer):
    index: int
    client_scan_id: str | None
    status: Literal["recorded", "duplicate", "rejected"]


class BatchAnswer(_Answer):
    recorded: int
    duplicates: int
    rejected: int
    items: list[BatchItem]


class Client:
    """The API as a door device sees it; use as a context manager, or call `close()`."""

    def __init__(
        self,
        server: str,
        *,
        device_key: str | None = None,
        timeout: float = DOOR_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"membership-scan/{__version__}"}
        if device_key:
            headers["Authorization"] = f"Bearer {device_key}"
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=server.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def pair(self, pairing_code: str) -> Pairing:
        """Exchange the manager's one-time code for this device's own key (shown once)."""
        try:
            return self._call(
                Pairing, "POST", "/v1/devices/pair", json={"pairing_code": pairing_code}
            )
        except DeviceKeyRejected as exc:
            raise PairingFailed(exc.status, exc.code, exc.detail) from exc

    def checkin(self, *, code: str, client_scan_id: str, scanned_at: datetime) -> Decision:
        """One scan decided by the server within the door timeout."""
        body = {
            "code": code,
            "client_scan_id": client_scan_id,
            "scanned_at": scanned_at.isoformat(),
        }
        return self._call(Decision, "POST", "/v1/checkins", json=body)

    def upload(self, items: Sequence[UploadItem]) -> BatchAnswer:
        """Scans kept on the device; the server answers each on its own, re-sending is harmless."""
        if not 1 <= len(items) <= BATCH_LIMIT:
            raise ValueError(f"a batch holds 1 to {BATCH_LIMIT} scans")
        body = {"items": [item.body() for item in items]}
        return self._call(
            BatchAnswer, "POST", "/v1/checkins/batch", json=body, timeout=BULK_TIMEOUT
        )

    def sync(self, cursor: int) -> SyncAnswer:
        sent_at = time.time()
        page = self._call(
            SyncPage, "GET", "/v1/scanner/sync", params={"cursor": cursor}, timeout=BULK_TIMEOUT
        )
        return SyncAnswer(page=page, sent_at=sent_at, received_at=time.time())

    def _call(
        self,
        model: type[_Model],
        method: str,
        url: str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Model:
        try:
            response = self._http.request(
                method, url, timeout=timeout if timeout is not None else self.timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise ServerUnavailable(f"server answered {response.status_code}")
        if response.status_code >= 400:
            raise _rejection(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            # A captive portal or a proxy's page is not an answer from the service.
            raise ServerUnavailable("the answer is not the service's") from exc


def _rejection(response: httpx.Response) -> ServerRejected:
    slug = f"http-{response.status_code}"
    detail = None
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        slug = str(problem.get("type") or slug).rsplit("/", 1)[-1]
        detail = problem.get("detail") or problem.get("title")
    error = DeviceKeyRejected if response.status_code == 401 else ServerRejected
    return error(response.status_code, slug, str(detail) if detail else None)

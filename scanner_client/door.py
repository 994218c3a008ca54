"""Online first, offline always: one scan in, one decision out, nothing lost on the way.

`Door.scan` writes the scan to the device's file before it asks the server, and the decision
before it returns it for display. The server gets `DOOR_TIMEOUT` to answer; after a failure the
door stays offline for a short back-off, so a hanging network costs the queue at the door one
timeout, not one per visitor. `Uploader` runs beside it in a thread: it empties the queue
through the batch endpoint and syncs keys, rules and revocations periodically.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scanner_client import offline
from scanner_client.client import BATCH_LIMIT, Client, Decision, Result
from scanner_client.errors import DeviceKeyRejected, ScannerError, ServerUnavailable
from scanner_client.queue import ScanStore

MAX_CODE_LENGTH = 512
"""The API's limit for a scanned code; anything longer is not a card, whatever it is."""
# Acknowledged scans are kept this long for the offline anti-passback and "today" checks.
KEEP_ACKNOWLEDGED = timedelta(days=2)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_scan_id() -> str:
    return uuid.uuid4().hex


def readable(text: str) -> bool:
    """Printable text of a plausible length: binary noise and 10 kB lines are not scans."""
    return 0 < len(text) <= MAX_CODE_LENGTH and text.isprintable()


class OnlineGate:
    """Remembers a recent failure, so that scans skip the network until the back-off ends.

    Shared by the door and the uploader thread: an upload that succeeds reopens it at once.
    """

    def __init__(self, backoff: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff
        self._clock = clock
        self._closed_until = 0.0
        self._lock = threading.Lock()

    def open(self) -> bool:
        with self._lock:
            return self._clock() >= self._closed_until

    def failed(self) -> None:
        with self._lock:
            self._closed_until = self._clock() + self.backoff

    def succeeded(self) -> None:
        with self._lock:
            self._closed_until = 0.0


@dataclass
class Door:
    """The scanner's decision point; one per door thread (it owns a `ScanStore`)."""

    store: ScanStore
    client: Client | None
    gate: OnlineGate = field(default_factory=OnlineGate)
    clock: Callable[[], datetime] = utc_now
    new_id: Callable[[], str] = new_scan_id
    problem: str | None = None  # the last thing the doorman should tell a manager about
    _rules: offline.Rules | None = field(default=None, init=False)
    _generation: int = field(default=-1, init=False)

    def scan(self, raw: str) -> Decision:
        text = raw.strip()
        scan_id = self.new_id()
        scanned_at = self.clock()
        if not readable(text):
            # Not a scan, so nothing to keep: the API itself would reject it as input.
            return Decision(
                client_scan_id=scan_id,
                result=Result.REFUSED,
                reason=offline.INVALID_CODE,
                offline=True,
                scanned_at=scanned_at,
            )
        self.store.add(client_scan_id=scan_id, code=text, scanned_at=scanned_at)
        decision = self._online(text, scan_id, scanned_at)
        if decision is None:
            decision = self._offline(text, scan_id, scanned_at)
        self.store.decide(
            scan_id,
            result=decision.result,
            reason=decision.reason,
            card_number=decision.card_number,
            offline=decision.offline,
        )
        return decision

    def _online(self, text: str, scan_id: str, scanned_at: datetime) -> Decision | None:
        if self.client is None or not self.gate.open():
            return None
        try:
            answer = self.client.checkin(code=text, client_scan_id=scan_id, scanned_at=scanned_at)
        except ServerUnavailable:
            self.gate.failed()
            return None
        except DeviceKeyRejected:
            self.problem = "The server no longer accepts this device's key: pair it again."
            self.gate.failed()
            return None
        except ScannerError as exc:
            self.problem = f"The server refused the scan: {exc}"
            return None
        self.gate.succeeded()
        self.problem = None
        number = answer.holder.card_number.replace(" ", "") if answer.holder else None
        return answer.model_copy(update={"card_number": number, "offline": False})

    def _current_rules(self) -> offline.Rules | None:
        """The rules of the latest sync, which the uploader thread may have just written."""
        generation = self.store.generation()
        if generation != self._generation:
            self._rules = offline.Rules.from_state(self.store.state())
            self._generation = generation
        return self._rules

    def _offline(self, text: str, scan_id: str, scanned_at: datetime) -> Decision:
        return offline.decide(
            text,
            client_scan_id=scan_id,
            scanned_at=scanned_at,
            rules=self._current_rules(),
            revocations=self.store.revocations,
            admissions=lambda number, since: self.store.admissions(number, since=since),
        )

    def counts_today(self) -> dict[str, int]:
        """This device's decisions since local midnight, for the doorman's counter."""
        rules = self._current_rules()
        timezone = rules.timezone if rules else UTC
        midnight = (
            self.clock().astimezone(timezone).replace(hour=0, minute=0, second=0, microsecond=0)
        )
        return self.store.tally(since=midnight)


@dataclass(frozen=True)
class UploadReport:
    recorded: int = 0
    duplicates: int = 0
    rejected: int = 0
    remaining: int = 0


def upload_queue(
    client: Client, store: ScanStore, *, orphaned_before: datetime | None = None
) -> UploadReport:
    """Send every queued scan in batches; each acknowledged batch leaves the queue at once.

    Raises `ServerUnavailable` when the server cannot be reached; what was acknowledged
    before stays acknowledged, and the rest is sent next time.
    """
    recorded = duplicates = rejected = 0
    while True:
        batch = store.queued(limit=BATCH_LIMIT, now=utc_now(), orphaned_before=orphaned_before)
        if not batch:
            break
        answer = client.upload([scan.upload_item() for scan in batch])
        # Items answer by index: a rejected item may not even have a readable scan id.
        done = [batch[i.index].client_scan_id for i in answer.items if i.status != "rejected"]
        refused = [batch[i.index].client_scan_id for i in answer.items if i.status == "rejected"]
        store.acknowledge(done, rejected=refused)
        recorded += answer.recorded
        duplicates += answer.duplicates
        rejected += answer.rejected
        if len(batch) < BATCH_LIMIT:
            break
    return UploadReport(recorded, duplicates, rejected, remaining=store.queue_length())


def sync(client: Client, store: ScanStore) -> int:
    """Bring keys, rules and revocations up to date; returns the number of calls it took."""
    calls = 0
    while True:
        answer = client.sync(store.state().cursor)
        store.apply_sync(answer)
        calls += 1
        if not answer.page.revocations.has_more:
            return calls


class Uploader(threading.Thread):
    """Background work of `membership-scan run`: upload the queue, sync now and then."""

    def __init__(
        self,
        *,
        make_client: Callable[[], Client],
        open_store: Callable[[], ScanStore],
        gate: OnlineGate,
        upload_every: float = 5.0,
        sync_every: float = 60.0,
    ) -> None:
        super().__init__(name="membership-scan-uploader", daemon=True)
        self._make_client = make_client
        self._open_store = open_store
        self._gate = gate
        self._upload_every = upload_every
        self._sync_every = sync_every
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self.problem: str | None = None
        self.last_upload: UploadReport | None = None
        # Undecided scans older than this were left by a process that died, not by our door.
        self.started_at = utc_now()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        self._wake.set()
        self.join(timeout)

    def wake(self) -> None:
        """Upload now (an offline decision was just queued and the server may be back)."""
        self._wake.set()

    def run(self) -> None:
        store = self._open_store()
        client = self._make_client()
        next_sync = 0.0
        try:
            while not self._stop_event.is_set():
                if time.monotonic() >= next_sync:
                    next_sync = time.monotonic() + self._sync_every
                    self._attempt(lambda: sync(client, store))
                self._attempt(lambda: self._upload(client, store))
                self._wake.wait(self._upload_every)
                self._wake.clear()
        finally:
            client.close()
            store.close()

    def _upload(self, client: Client, store: ScanStore) -> bool:
        store.forget_before(utc_now() - KEEP_ACKNOWLEDGED)
        if not store.queue_length():
            return False
        self.last_upload = upload_queue(client, store, orphaned_before=self.started_at)
        return True

    def _attempt(self, work: Callable[[], object]) -> None:
        """Run one piece of network work; only an answer from the server reopens the gate."""
        try:
            contacted = work()
        except ServerUnavailable:
            self._gate.failed()
            return
        except ScannerError as exc:
            self.problem = str(exc)
            return
        if contacted is not False:
            self.problem = None
            self._gate.succeeded()

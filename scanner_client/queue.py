"""The device's own SQLite file: every scan until the server has it, and what a sync brought.

Rule 2 of the design, "nothing scanned is lost", is kept here. A scan is written before it is
sent and its decision before it is shown, in WAL mode with `synchronous=FULL`: a committed row
is on disk when `commit` returns, so a `kill -9` or a power cut after the doorman saw the answer
cannot lose it. Rows leave the queue only when the server acknowledged them (recorded or
duplicate); re-sending is harmless because the server keys scans by client scan id.

Each thread opens its own `ScanStore` (sqlite3 connections are not shared between threads);
WAL lets the door thread write while the uploader reads.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scanner_client.client import Result, SyncAnswer, UploadItem
from scanner_client.codes import Revocation

SCHEMA_VERSION = 1
# A scan still without a decision after this long belongs to a client that died mid-scan; it is
# uploaded without a decision, and the server decides it as of its scan time. A restarted `run`
# does not wait this long: whatever is undecided from before it started is orphaned.
ORPHAN_AFTER = timedelta(seconds=30)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    client_scan_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    scanned_at TEXT NOT NULL,
    card_number TEXT,
    result TEXT,
    reason TEXT,
    offline INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'acknowledged', 'rejected')),
    acknowledged_at TEXT
);
CREATE INDEX IF NOT EXISTS scans_queued ON scans (state, scanned_at);
CREATE INDEX IF NOT EXISTS scans_card ON scans (card_number, scanned_at);
CREATE TABLE IF NOT EXISTS revocations (
    card_number TEXT PRIMARY KEY,
    min_version INTEGER NOT NULL,
    revoked INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _iso(moment: datetime) -> str:
    """A fixed-width UTC form, so that text order is time order in SQL comparisons."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class QueuedScan:
    client_scan_id: str
    code: str
    scanned_at: datetime
    result: Result | None
    reason: str | None
    offline: bool

    def upload_item(self) -> UploadItem:
        """An offline decision travels with the scan; it happened at the door and stands."""
        return UploadItem(
            code=self.code,
            client_scan_id=self.client_scan_id,
            scanned_at=self.scanned_at,
            offline_result=self.result if self.offline else None,
            offline_reason=self.reason if self.offline else None,
        )


@dataclass(frozen=True)
class SyncedState:
    """What the last sync brought: enough to decide at the door without the network."""

    generation: int
    programme: str | None = None
    venue_name: str | None = None
    institution_name: str | None = None
    timezone: str = "UTC"
    anti_passback_minutes: int = 15
    products: Mapping[str, str] | None = None  # code -> name
    keys: Mapping[str, str] | None = None  # key id -> base64 public key
    cursor: int = 0
    last_sync_at: datetime | None = None
    clock_skew_seconds: float | None = None

    @property
    def synced(self) -> bool:
        return self.programme is not None and bool(self.keys)


class _Revocations(Mapping[str, Revocation]):
    """The revocation list as the verifier wants it, read from disk one card at a time."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __getitem__(self, card_number: str) -> Revocation:
        row = self._connection.execute(
            "SELECT min_version, revoked, reason FROM revocations WHERE card_number = ?",
            (card_number,),
        ).fetchone()
        if row is None:
            raise KeyError(card_number)
        return Revocation(min_version=row[0], revoked=bool(row[1]), reason=row[2])

    def __iter__(self) -> Iterator[str]:
        for (number,) in self._connection.execute("SELECT card_number FROM revocations"):
            yield number

    def __len__(self) -> int:
        count: int = self._connection.execute("SELECT count(*) FROM revocations").fetchone()[0]
        return count


class ScanStore:
    """One connection to the device's file; open one per thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created private before SQLite opens it: its WAL and shm files copy this mode.
        path.touch(mode=0o600, exist_ok=True)
        self.path = path
        # Autocommit mode: every write below is its own explicit, durable transaction.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self.revocations: Mapping[str, Revocation] = _Revocations(self._db)

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def pragma(self, name: str) -> Any:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    # Scans ------------------------------------------------------------------------------

    def add(self, *, client_scan_id: str, code: str, scanned_at: datetime) -> None:
        """Keep the scan before anything is sent: even a crash mid-request loses nothing."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO scans (client_scan_id, code, scanned_at) VALUES (?, ?, ?)",
                (client_scan_id, code, _iso(scanned_at)),
            )

    def decide(
        self,
        client_scan_id: str,
        *,
        result: Result,
        reason: str,
        card_number: str | None,
        offline: bool,
    ) -> None:
        """Store the decision before it is shown; an online one is acknowledged already."""
        with self._transaction():
            self._db.execute(
                "UPDATE scans SET result = ?, reason = ?, card_number = ?, offline = ?, "
                "state = CASE WHEN ? THEN state ELSE 'acknowledged' END, "
                "acknowledged_at = CASE WHEN ? THEN acknowledged_at ELSE ? END "
                "WHERE client_scan_id = ?",
                (
                    result.value,
                    reason,
                    card_number,
                    int(offline),
                    int(offline),
                    int(offline),
                    _iso(datetime.now(UTC)),
                    client_scan_id,
                ),
            )

    def queued(
        self, *, limit: int, now: datetime, orphaned_before: datetime | None = None
    ) -> list[QueuedScan]:
        """Scans the server has not acknowledged, oldest first.

        A scan without a decision is skipped while a door thread may still be deciding it: until
        `ORPHAN_AFTER` has passed, or, for a process that knows when it started, if it was made
        before then (by a process that died).
        """
        cutoff = now - ORPHAN_AFTER
        if orphaned_before is not None:
            cutoff = max(cutoff, orphaned_before)
        rows = self._db.execute(
            "SELECT client_scan_id, code, scanned_at, result, reason, offline FROM scans "
            "WHERE state = 'queued' AND (result IS NOT NULL OR scanned_at < ?) "
            "ORDER BY scanned_at, client_scan_id LIMIT ?",
            (_iso(cutoff), limit),
        ).fetchall()
        return [
            QueuedScan(
                client_scan_id=row[0],
                code=row[1],
                scanned_at=datetime.fromisoformat(row[2]),
                result=Result(row[3]) if row[3] else None,
                reason=row[4],
                offline=bool(row[5]),
            )
            for row in rows
        ]

    def acknowledge(self, client_scan_ids: Sequence[str], *, rejected: Sequence[str] = ()) -> None:
        """The server has these: they leave the queue (rejected ones too: resending cannot help)."""
        now = _iso(datetime.now(UTC))
        with self._transaction():
            self._db.executemany(
                "UPDATE scans SET state = 'acknowledged', acknowledged_at = ? "
                "WHERE client_scan_id = ?",
                [(now, scan_id) for scan_id in client_scan_ids],
            )
            self._db.executemany(
                "UPDATE scans SET state = 'rejected', acknowledged_at = ? WHERE client_scan_id = ?",
                [(now, scan_id) for scan_id in rejected],
            )

    def queue_length(self) -> int:
        count: int = self._db.execute(
            "SELECT count(*) FROM scans WHERE state = 'queued'"
        ).fetchone()[0]
        return count

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, count(*) FROM scans GROUP BY state").fetchall())

    def tally(self, *, since: datetime) -> dict[str, int]:
        """Decisions per result since a moment: the door's counter for today."""
        rows = self._db.execute(
            "SELECT result, count(*) FROM scans WHERE scanned_at >= ? AND result IS NOT NULL "
            "GROUP BY result",
            (_iso(since),),
        ).fetchall()
        return dict(rows)

    def admissions(self, card_number: str, *, since: datetime) -> list[datetime]:
        """This device's admissions of one card since a moment: its offline anti-passback memory."""
        rows = self._db.execute(
            "SELECT scanned_at FROM scans WHERE card_number = ? AND scanned_at >= ? "
            "AND result IN ('admitted', 'reentry')",
            (card_number, _iso(since)),
        ).fetchall()
        return [datetime.fromisoformat(row[0]) for row in rows]

    def forget_before(self, moment: datetime) -> int:
        """Acknowledged scans older than the anti-passback memory are no longer needed here."""
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM scans WHERE state != 'queued' AND scanned_at < ?", (_iso(moment),)
            )
        return cursor.rowcount

    # Sync -------------------------------------------------------------------------------

    def state(self) -> SyncedState:
        values = {
            name: json.loads(value)
            for name, value in self._db.execute("SELECT name, value FROM sync_state")
        }
        last_sync = values.get("last_sync_at")
        institution = values.get("institution") or {}
        return SyncedState(
            generation=int(values.get("generation", 0)),
            programme=values.get("programme"),
            venue_name=values.get("venue_name"),
            institution_name=institution.get("name"),
            timezone=institution.get("timezone", "UTC"),
            anti_passback_minutes=int(institution.get("anti_passback_minutes", 15)),
            products=values.get("products"),
            keys=values.get("keys"),
            cursor=int(values.get("cursor", 0)),
            last_sync_at=datetime.fromisoformat(last_sync) if last_sync else None,
            clock_skew_seconds=values.get("clock_skew_seconds"),
        )

    def generation(self) -> int:
        """Bumped by every sync, so a door thread knows when to reload its keys and rules."""
        row = self._db.execute("SELECT value FROM sync_state WHERE name = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    def apply_sync(self, answer: SyncAnswer) -> None:
        """Keys, rules and products replace the old ones; revocations keep the latest per card.

        One transaction, so a door never sees new keys with an old revocation list.
        """
        page = answer.page
        values: dict[str, Any] = {
            "programme": page.programme,
            "venue_name": page.venue_name,
            "institution": page.institution.model_dump(),
            "products": {product.code: product.name for product in page.products},
            "keys": {key.key_id: key.public_key for key in page.keys},
            "cursor": page.revocations.cursor,
            "last_sync_at": _iso(datetime.now(UTC)),
            "clock_skew_seconds": round(answer.clock_skew_seconds, 3),
        }
        with self._transaction():
            # The feed is oldest first: a later entry for a card overwrites an earlier one.
            self._db.executemany(
                "INSERT INTO revocations (card_number, min_version, revoked, reason) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (card_number) DO UPDATE SET "
                "min_version = excluded.min_version, revoked = excluded.revoked, "
                "reason = excluded.reason",
                [
                    (entry.card_number, entry.min_version, int(entry.revoked), entry.reason)
                    for entry in page.revocations.entries
                ],
            )
            values["generation"] = self.generation() + 1
            self._db.executemany(
                "INSERT INTO sync_state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [(name, json.dumps(value)) for name, value in values.items()],
            )


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT: the write lock is taken up front, so two threads never deadlock
    upgrading read locks, and the commit is the durable point."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")

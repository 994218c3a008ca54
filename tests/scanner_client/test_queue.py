"""The device's SQLite file: durable settings, the queue's life cycle, and what a sync stores."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner_client.client import Result
from scanner_client.codes import Revocation
from scanner_client.queue import ORPHAN_AFTER, ScanStore
from tests.scanner_client.helpers import KEY_ID, sync_answer

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ScanStore]:
    store = ScanStore(tmp_path / "data" / "scans.sqlite3")
    yield store
    store.close()


class TestDurability:
    def test_wal_and_full_synchronous(self, store: ScanStore) -> None:
        assert store.pragma("journal_mode") == "wal"
        assert store.pragma("synchronous") == 2  # FULL

    def test_the_file_is_private(self, store: ScanStore) -> None:
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

    def test_a_decided_scan_is_still_queued_after_reopening(
        self, store: ScanStore, tmp_path: Path
    ) -> None:
        store.add(client_scan_id="a", code="CODE", scanned_at=NOW)
        store.decide("a", result=Result.ADMITTED, reason="ok", card_number="1", offline=True)
        reopened = ScanStore(store.path)
        try:
            [scan] = reopened.queued(limit=10, now=NOW)
        finally:
            reopened.close()
        assert (scan.client_scan_id, scan.result, scan.offline) == ("a", Result.ADMITTED, True)
        assert scan.upload_item().body()["offline_result"] == "admitted"


class TestQueue:
    def test_online_decisions_are_not_queued(self, store: ScanStore) -> None:
        store.add(client_scan_id="a", code="CODE", scanned_at=NOW)
        store.decide("a", result=Result.ADMITTED, reason="ok", card_number="1", offline=False)
        assert store.queue_length() == 0
        assert store.tally(since=NOW - timedelta(hours=1)) == {"admitted": 1}

    def test_a_scan_without_a_decision_waits_then_goes_without_one(self, store: ScanStore) -> None:
        store.add(client_scan_id="a", code="CODE", scanned_at=NOW)
        assert store.queued(limit=10, now=NOW) == []
        [orphan] = store.queued(limit=10, now=NOW + ORPHAN_AFTER + timedelta(seconds=1))
        assert orphan.result is None
        assert "offline_result" not in orphan.upload_item().body()

    def test_a_restarted_client_does_not_wait_for_scans_of_the_dead_one(
        self, store: ScanStore
    ) -> None:
        store.add(client_scan_id="before", code="CODE", scanned_at=NOW - timedelta(seconds=2))
        store.add(client_scan_id="mine", code="CODE", scanned_at=NOW + timedelta(seconds=1))
        queued = store.queued(limit=10, now=NOW + timedelta(seconds=2), orphaned_before=NOW)
        assert [scan.client_scan_id for scan in queued] == ["before"]

    def test_acknowledged_and_rejected_scans_leave_the_queue(self, store: ScanStore) -> None:
        for scan_id in "abc":
            store.add(client_scan_id=scan_id, code="CODE", scanned_at=NOW)
            store.decide(scan_id, result=Result.REFUSED, reason="x", card_number=None, offline=True)
        store.acknowledge(["a"], rejected=["b"])
        assert [s.client_scan_id for s in store.queued(limit=10, now=NOW)] == ["c"]
        assert store.counts() == {"acknowledged": 1, "rejected": 1, "queued": 1}

    def test_admissions_remember_only_admitted_scans_of_that_card(self, store: ScanStore) -> None:
        for scan_id, result, number in [
            ("a", Result.ADMITTED, "111"),
            ("b", Result.REFUSED, "111"),
            ("c", Result.REENTRY, "111"),
            ("d", Result.ADMITTED, "222"),
        ]:
            store.add(client_scan_id=scan_id, code="CODE", scanned_at=NOW)
            store.decide(scan_id, result=result, reason="x", card_number=number, offline=False)
        assert len(store.admissions("111", since=NOW - timedelta(minutes=1))) == 2
        assert store.admissions("111", since=NOW + timedelta(minutes=1)) == []

    def test_forgetting_keeps_what_is_still_queued(self, store: ScanStore) -> None:
        store.add(client_scan_id="old", code="CODE", scanned_at=NOW - timedelta(days=3))
        store.decide("old", result=Result.ADMITTED, reason="ok", card_number="1", offline=False)
        store.add(client_scan_id="queued", code="CODE", scanned_at=NOW - timedelta(days=3))
        assert store.forget_before(NOW - timedelta(days=2)) == 1
        assert store.counts() == {"queued": 1}


class TestSync:
    def test_sync_stores_keys_rules_and_bumps_the_generation(self, store: ScanStore) -> None:
        assert not store.state().synced
        store.apply_sync(sync_answer(cursor=7, anti_passback_minutes=20))
        state = store.state()
        assert (state.synced, state.generation, state.cursor) == (True, 1, 7)
        assert (state.anti_passback_minutes, list(state.keys or {})) == (20, [KEY_ID])
        assert state.clock_skew_seconds is not None
        store.apply_sync(sync_answer(cursor=9))
        assert store.generation() == 2

    def test_the_latest_revocation_entry_per_card_wins(self, store: ScanStore) -> None:
        entries = [
            {"id": 1, "card_number": "111", "min_version": 1, "revoked": True, "reason": "blocked"},
            {"id": 2, "card_number": "222", "min_version": 1, "revoked": True, "reason": "lost"},
            {
                "id": 3,
                "card_number": "111",
                "min_version": 1,
                "revoked": False,
                "reason": "unblocked",
            },
        ]
        store.apply_sync(sync_answer(revocations=entries[:2], cursor=2))
        store.apply_sync(sync_answer(revocations=entries[2:], cursor=3))
        assert dict(store.revocations) == {
            "111": Revocation(1, False, "unblocked"),
            "222": Revocation(1, True, "lost"),
        }
        assert store.state().cursor == 3

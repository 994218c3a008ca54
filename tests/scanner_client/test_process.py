"""`membership-scan run` as a real process: killed with SIGKILL mid-queue, and fed garbage.

Every decision the client printed was on disk before it was printed, so a SIGKILL loses none of
them; the restarted client uploads the whole queue. Binary noise, 10 kB lines and empty lines on
stdin are refused or skipped, never a crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from membership.db import create_sessionmaker
from scanner_client.cli import app
from scanner_client.config import Config, Paths, load, save
from scanner_client.queue import ScanStore
from tests.scanner_client.conftest import ApiServer, make_venue

SCAN = str(Path(sys.executable).parent / "membership-scan")
WAIT = 90.0  # bounds a hang on a shared machine; nothing here is a timing assertion


class Scanner:
    """A `membership-scan run --output json` process and the decisions it printed so far."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [SCAN, "--config-dir", str(home), "run", "--output", "json", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "100"},
        )
        self.decisions: Queue[dict[str, Any]] = Queue()
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        with stream:
            for line in stream:
                self.decisions.put(json.loads(line))

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def take(self, count: int) -> list[dict[str, Any]]:
        taken = []
        deadline = time.monotonic() + WAIT
        while len(taken) < count:
            try:
                taken.append(self.decisions.get(timeout=max(0.1, deadline - time.monotonic())))
            except Empty:
                pytest.fail(f"got {len(taken)} of {count} decisions")
        return taken

    def finish(self) -> tuple[int, str]:
        """Close stdin (end of the day) and wait for a clean exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=WAIT)
        self._reader.join(WAIT)
        assert self.process.stderr is not None
        errors = self.process.stderr.read().decode()
        self.process.stderr.close()
        return self.process.returncode, errors

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT)
        self._reader.join(WAIT)
        for stream in (self.process.stdin, self.process.stderr):
            assert stream is not None
            stream.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.postgres
async def test_sigkill_with_a_queue_loses_nothing(
    api_server: ApiServer, server_engine: AsyncEngine, tmp_path: Path
) -> None:
    venue = await make_venue(server_engine, key_dir=api_server.key_dir, holders=30)
    home = tmp_path / "scanner"
    paired = CliRunner().invoke(
        app,
        [
            "--config-dir",
            str(home),
            "pair",
            "--server",
            api_server.url,
            "--code",
            venue.pairing_code,
        ],
    )
    assert paired.exit_code == 0, paired.output

    # The outage, for this client only: its server address leads nowhere until restored.
    paths = Paths.resolve(home)
    config = load(paths)
    save(replace(config, server="http://127.0.0.1:9"), paths)
    scanner = Scanner(home, "--offline-backoff", "600")
    scanner.send("".join(f"{text}\n" for text in venue.codes).encode())
    shown = scanner.take(12)
    scanner.kill()
    while not scanner.decisions.empty():
        shown.append(scanner.decisions.get())
    assert all(d["offline"] and d["result"] == "admitted" for d in shown)

    store = ScanStore(paths.queue_file)
    try:
        queued = {
            scan.client_scan_id
            for scan in store.queued(limit=1000, now=datetime(9999, 1, 1, tzinfo=UTC))
        }
    finally:
        store.close()
    assert {d["client_scan_id"] for d in shown} <= queued

    save(config, paths)
    restarted = Scanner(home, "--upload-every", "0.3")

    async def on_server() -> set[str]:
        async with create_sessionmaker(server_engine)() as session:
            return {c.client_scan_id for c in await venue.checkins(session)}

    deadline = time.monotonic() + WAIT
    while (await on_server()) != queued:
        if time.monotonic() > deadline:
            restarted.kill()
            pytest.fail("the queue did not reach the server")
        time.sleep(0.3)
    code, errors = restarted.finish()
    assert code == 0, errors
    async with create_sessionmaker(server_engine)() as session:
        checkins = await venue.checkins(session)
    assert (len(checkins), sum(c.counted for c in checkins)) == (len(queued), len(queued))


@pytest.mark.slow
def test_garbage_on_stdin_never_crashes(tmp_path: Path) -> None:
    """No server at all (a closed port): every line is decided offline, or skipped if empty."""
    paths = Paths.resolve(tmp_path)
    save(
        Config(
            server="http://127.0.0.1:9",
            device_key="dk_not-a-real-key",
            device_id="00000000-0000-0000-0000-000000000000",
            device_name="Test door",
            institution_id="00000000-0000-0000-0000-000000000000",
            venue_id="00000000-0000-0000-0000-000000000000",
        ),
        paths,
    )
    garbage = [
        bytes(range(256)) * 4 + b"\n",
        b"\n\n   \n\r\n",
        b"A" * 10_000 + b"\n",
        b"\xff\xfe\x00\x01" * 3000 + b"\n",
        b"\x00\x00\x00\n",
        b"AEAFMR22U5QADN54HEAAEJ6N\n",
        b"4123 4567 8905\n",
        b"1234 5678 9013\n",
        "ÄÖÜ ✓ 🎫\n".encode(),
        os.urandom(20_000),
        b"\n",
    ]
    scanner = Scanner(tmp_path, "--timeout", "0.5")
    for chunk in garbage:
        scanner.send(chunk)
    code, errors = scanner.finish()
    decisions = []
    while not scanner.decisions.empty():
        decisions.append(scanner.decisions.get())
    assert code == 0, errors
    assert "Traceback" not in errors
    assert decisions
    assert {d["result"] for d in decisions} == {"refused"}
    assert {d["reason"] for d in decisions} <= {"invalid_code", "not_synced", "needs_network"}

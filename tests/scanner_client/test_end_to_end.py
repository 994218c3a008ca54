"""The issue's end-to-end test: a real server process, an outage, and nothing lost or counted twice.

Pair a device; scan 100 cards online; stop the server; scan 50 more, decided offline (one of
them a card blocked before the outage, one a card already admitted minutes ago); restart the
server; the background uploader empties the queue; the server then holds exactly 150 scans and
148 counted visits, and sending the queue again changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from membership import cards
from membership.audit import Actor
from membership.clock import utcnow
from membership.db import create_sessionmaker
from scanner_client.cli import app
from scanner_client.client import Client, Result, UploadItem
from scanner_client.config import Paths, load
from scanner_client.door import Door, OnlineGate, Uploader
from scanner_client.queue import ScanStore
from tests.scanner_client.conftest import ApiServer, make_venue

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WAIT = 90.0  # generous: the machine is shared; this bounds a hang, it measures nothing


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def cli(home: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config-dir", str(home), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "scanner"


async def test_outage_then_upload_keeps_every_scan_once(
    api_server: ApiServer, server_engine: AsyncEngine, home: Path
) -> None:
    venue = await make_venue(server_engine, key_dir=api_server.key_dir, holders=150)
    cli(home, "pair", "--server", api_server.url, "--code", venue.pairing_code)
    paths = Paths.resolve(home)
    config = load(paths)
    store = ScanStore(paths.queue_file)
    client = Client(config.server, device_key=config.device_key)
    door = Door(store=store, client=client, gate=OnlineGate(backoff=5.0))
    try:
        online = [door.scan(text) for text in venue.codes[:100]]
        assert [(d.result, d.offline) for d in online] == [(Result.ADMITTED, False)] * 100
        assert store.queue_length() == 0

        revoked = venue.cards[148]
        async with create_sessionmaker(server_engine)() as session:
            await cards.block(
                session,
                card_id=revoked.id,
                reason="reported stolen",
                actor=Actor("test"),
                now=utcnow(),
            )
            await session.commit()
        cli(home, "sync")

        api_server.stop()
        offline = [door.scan(text) for text in venue.codes[100:148]]
        blocked = door.scan(venue.codes[148])
        passed_back = door.scan(venue.codes[0])
        assert [(d.result, d.offline) for d in offline] == [(Result.ADMITTED, True)] * 48
        assert (blocked.result, blocked.reason, blocked.offline) == (
            Result.REFUSED,
            "blocked",
            True,
        )
        assert (passed_back.result, passed_back.reason) == (Result.REFUSED, "already_used")
        assert store.queue_length() == 50

        api_server.start()
        uploader = Uploader(
            make_client=lambda: Client(config.server, device_key=config.device_key),
            open_store=lambda: ScanStore(paths.queue_file),
            gate=door.gate,
            upload_every=0.2,
        )
        uploader.start()
        try:
            wait_for(lambda: store.queue_length() == 0, "the queue to upload")
        finally:
            uploader.stop()

        async with create_sessionmaker(server_engine)() as session:
            checkins = await venue.checkins(session)
        assert len(checkins) == 150
        assert sum(c.counted for c in checkins) == 148
        assert sum(c.offline for c in checkins) == 50
        per_card: dict[object, int] = {}
        for checkin in checkins:
            per_card[checkin.card_id] = per_card.get(checkin.card_id, 0) + checkin.counted
        assert max(per_card.values()) == 1
        by_scan = {c.client_scan_id: c for c in checkins}
        assert (
            by_scan[blocked.client_scan_id].result.value,
            by_scan[blocked.client_scan_id].reason,
        ) == (
            "refused",
            "blocked",
        )
        assert by_scan[passed_back.client_scan_id].reason == "already_used"

        resent = client.upload(
            [
                UploadItem(
                    code=text,
                    client_scan_id=decision.client_scan_id,
                    scanned_at=decision.scanned_at,
                    offline_result=decision.result,
                    offline_reason=decision.reason,
                )
                for text, decision in zip(
                    [*venue.codes[100:149], venue.codes[0]],
                    [*offline, blocked, passed_back],
                    strict=True,
                )
            ]
        )
        assert (resent.recorded, resent.duplicates, resent.rejected) == (0, 50, 0)
        async with create_sessionmaker(server_engine)() as session:
            again = await venue.checkins(session)
        assert (len(again), sum(c.counted for c in again)) == (150, 148)
    finally:
        client.close()
        store.close()

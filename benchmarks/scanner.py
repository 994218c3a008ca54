"""How fast the door client decides: offline decisions/s and online round trips/s.

Starts the real API (uvicorn, SQLite in a temporary directory) on a free loopback port, pairs a
device through HTTP, and scans distinct cards' QR codes:

- offline: `Door.scan` with no server, i.e. signature check, revocation lookup, anti-passback
  query and two durable (fsync'd) SQLite commits per scan, and the pure decision alone;
- online: `Door.scan` against the server (HTTP round trip, the server's check-in transaction,
  the client's durable writes), and the bare `Client.checkin` call.

    python benchmarks/scanner.py [--holders 400] [--offline 300] [--online 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.factories: realistic rows without a seed script

import migrations  # noqa: E402
from membership import codes, devices  # noqa: E402
from membership.audit import Actor  # noqa: E402
from membership.clock import utcnow  # noqa: E402
from membership.db import create_engine, create_sessionmaker  # noqa: E402
from membership.keys import KeyStore  # noqa: E402
from scanner_client import offline  # noqa: E402
from scanner_client.client import Client  # noqa: E402
from scanner_client.door import Door, OnlineGate, sync  # noqa: E402
from scanner_client.queue import ScanStore  # noqa: E402
from tests import factories  # noqa: E402


async def make_data(database_url: str, key_dir: Path, holders: int) -> tuple[str, list[str]]:
    """A venue, a device pairing code and `holders` signed QR texts of distinct live cards."""
    _key_id, private_key = KeyStore(key_dir).signing_key()
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            institution = await factories.create_institution(session)
            venue = await factories.create_venue(session, institution=institution)
            product = await factories.create_product(session, code="ANNUAL")
            numbers = []
            for _ in range(holders):
                member = await factories.create_member(session)
                membership = await factories.create_membership(
                    session, product=product, holders=[member]
                )
                card = await factories.create_card(session, member=member, membership=membership)
                numbers.append(card.number)
            pairing = await devices.register_device(
                session,
                institution_id=institution.id,
                venue_id=venue.id,
                name="Benchmark door",
                actor=Actor(label="benchmark"),
                now=utcnow(),
            )
            await session.commit()
    finally:
        await engine.dispose()
    texts = [
        codes.encode(
            codes.CardCode(
                programme="MK",
                card_number=number,
                card_version=1,
                valid_until=date.today() + timedelta(days=200),
                product_code="ANNUAL",
            ),
            private_key=private_key,
        )
        for number in numbers
    ]
    return pairing.code, texts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(home: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMBERSHIP_")},
        "MEMBERSHIP_DATABASE_URL": database_url,
        "MEMBERSHIP_KEY_DIR": str(home / "keys"),
        "MEMBERSHIP_PHOTO_DIR": str(home / "photos"),
    }
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=home, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the API server did not start")


def rate(label: str, count: int, work: Callable[[int], object]) -> None:
    started = time.perf_counter()
    for index in range(count):
        work(index)
    elapsed = time.perf_counter() - started
    print(f"{label:<52} {count / elapsed:>9.1f}/s  ({count} in {elapsed:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=400)
    parser.add_argument("--offline", type=int, default=300)
    parser.add_argument("--online", type=int, default=200)
    args = parser.parse_args()
    needed = max(args.offline, args.online)
    if args.holders < needed:
        parser.error(f"--holders must be at least {needed}: every scan is a different card")

    with tempfile.TemporaryDirectory(prefix="bench-scanner-") as tmp:
        home = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{home / 'membership.sqlite3'}"
        migrations.upgrade(database_url)
        KeyStore(home / "keys").ensure()
        pairing_code, texts = asyncio.run(make_data(database_url, home / "keys", args.holders))
        process, url = start_server(home, database_url)
        try:
            with Client(url, timeout=15.0) as anonymous:
                paired = anonymous.pair(pairing_code)
            client = Client(url, device_key=paired.device_key, timeout=15.0)
            offline_store = ScanStore(home / "offline" / "scans.sqlite3")
            sync(client, offline_store)
            door = Door(store=offline_store, client=None)
            rate(
                "offline Door.scan (verify + 2 durable commits)",
                args.offline,
                lambda i: door.scan(texts[i]),
            )
            rules = offline.Rules.from_state(offline_store.state())
            now = datetime.now(UTC)
            rate(
                "offline decision alone (no disk)",
                args.offline,
                lambda i: offline.decide(
                    texts[i],
                    client_scan_id=str(i),
                    scanned_at=now,
                    rules=rules,
                    revocations={},
                    admissions=lambda number, since: [],
                ),
            )
            offline_store.close()

            online_store = ScanStore(home / "online" / "scans.sqlite3")
            online_door = Door(store=online_store, client=client, gate=OnlineGate())
            half = args.online // 2
            rate(
                "online Door.scan (HTTP + server check-in + queue)",
                half,
                lambda i: online_door.scan(texts[i]),
            )
            rate(
                "online Client.checkin round trip",
                args.online - half,
                lambda i: client.checkin(
                    code=texts[half + i],
                    client_scan_id=uuid.uuid4().hex,
                    scanned_at=datetime.now(UTC),
                ),
            )
            online_store.close()
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()

"""A real API server process for the scanner's end-to-end tests, and a door with cards to scan.

The server runs under uvicorn on a free loopback port against a PostgreSQL database of its own,
so these tests can stop and restart it (the outage) without touching other tests' data. Data is
made with the services and factories in the test process; the scanner only sees HTTP.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import migrations
from membership import card_numbers, codes, devices
from membership.audit import Actor
from membership.clock import utcnow
from membership.db import create_engine, create_sessionmaker
from membership.keys import KeyStore
from membership.models import (
    Card,
    CardStatus,
    Checkin,
    Institution,
    Member,
    Membership,
    MembershipStatus,
    MembershipTerm,
    Product,
    TermKind,
    Venue,
)
from tests.conftest import IN_CI, POSTGRES_URL
from tests.factories import create_institution, create_product, create_venue

SERVER_START_TIMEOUT = 90.0  # two cores shared with other test runs: generous, never asserted on


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ApiServer:
    """`membership`'s API in its own process; `stop()` and `start()` make and end an outage."""

    def __init__(self, *, database_url: str, home: Path) -> None:
        self.database_url = database_url
        self.home = home
        self.key_dir = home / "keys"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = home / "server.log"

    def start(self) -> None:
        if self._process is not None:
            return
        # Only this server's settings: a developer's MEMBERSHIP_* variables (signing keys, a
        # programme code) would make it disagree with the codes the tests sign.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMBERSHIP_")},
            "MEMBERSHIP_DATABASE_URL": self.database_url,
            "MEMBERSHIP_KEY_DIR": str(self.key_dir),
            "MEMBERSHIP_PHOTO_DIR": str(self.home / "photos"),
            "MEMBERSHIP_BASE_URL": self.url,
        }
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=self.home,  # no stray .env from the checkout
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"API server exited: {self._log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"API server did not start: {self._log.read_text()[-2000:]}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def scanner_database() -> Iterator[str]:
    """A migrated PostgreSQL database only the scanner tests' server uses."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL not reachable at {POSTGRES_URL} ({exc.__class__.__name__})"
        if IN_CI:
            pytest.fail(f"{message}; with CI=true the PostgreSQL tests must run", pytrace=False)
        pytest.skip(f"{message}: scanner end-to-end tests skipped")
    name = f"mtest_scan_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _server_process(
    scanner_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("api-server")
    KeyStore(home / "keys").ensure()
    server = ApiServer(database_url=scanner_database, home=home)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_server(_server_process: ApiServer) -> ApiServer:
    """The running server (restarted if an earlier test left it stopped)."""
    _server_process.start()
    return _server_process


@pytest.fixture
async def server_engine(api_server: ApiServer) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(api_server.database_url)
    yield engine
    await engine.dispose()


@dataclass
class Venue4Scans:
    """An institution with one venue, a device waiting to be paired, and card holders."""

    institution: Institution
    venue: Venue
    pairing_code: str
    cards: list[Card]
    codes: list[str]
    product_code: str

    async def checkins(self, session: AsyncSession) -> list[Checkin]:
        rows = await session.scalars(
            select(Checkin).where(Checkin.venue_id == self.venue.id).order_by(Checkin.id)
        )
        return list(rows)

    async def count(self, session: AsyncSession) -> int:
        return (
            await session.scalar(
                select(func.count()).select_from(Checkin).where(Checkin.venue_id == self.venue.id)
            )
            or 0
        )


async def _holders(session: AsyncSession, *, product: Product, count: int) -> list[Card]:
    """Members with an active membership and a card each, one flush per table: the factories
    flush per row, which costs seconds for 150 holders on a busy PostgreSQL."""
    today = date.today()
    members = [
        Member(
            first_name="Anna",
            last_name=f"de Vries {n}",
            email=f"scan-{uuid.uuid4().hex[:12]}@example.org",
            birth_date=date(1985, 5, 17),
            postal_code="1017 AB",
            language="nl",
        )
        for n in range(count)
    ]
    session.add_all(members)
    await session.flush()
    memberships = [
        Membership(product_id=product.id, status=MembershipStatus.ACTIVE, holders=[member])
        for member in members
    ]
    session.add_all(memberships)
    await session.flush()
    session.add_all(
        MembershipTerm(
            membership_id=membership.id,
            starts_on=today - timedelta(days=30),
            ends_on=today + timedelta(days=335),
            kind=TermKind.PURCHASE,
        )
        for membership in memberships
    )
    cards = [
        Card(
            id=uuid.uuid4(),
            number=card_numbers.generate(),
            version=1,
            status=CardStatus.ACTIVE,
            member_id=member.id,
            membership_id=membership.id,
            issued_at=utcnow(),
        )
        for member, membership in zip(members, memberships, strict=True)
    ]
    session.add_all(cards)
    await session.flush()
    return cards


async def make_venue(
    engine: AsyncEngine, *, key_dir: Path, holders: int, programme: str = "MK"
) -> Venue4Scans:
    """Everything a door needs, committed, with each holder's signed QR text."""
    _key_id, private_key = KeyStore(key_dir).signing_key()
    async with create_sessionmaker(engine)() as session:
        institution = await create_institution(session, anti_passback_minutes=15)
        venue = await create_venue(session, institution=institution)
        product = await create_product(session, code=f"ANNUAL{uuid.uuid4().hex[:6].upper()}")
        cards = await _holders(session, product=product, count=holders)
        pairing = await devices.register_device(
            session,
            institution_id=institution.id,
            venue_id=venue.id,
            name="Main door",
            actor=Actor(label="test"),
            now=utcnow(),
        )
        await session.commit()
    texts = [
        codes.encode(
            codes.CardCode(
                programme=programme,
                card_number=card.number,
                card_version=card.version,
                valid_until=date.today() + timedelta(days=200),
                product_code=product.code,
            ),
            private_key=private_key,
        )
        for card in cards
    ]
    return Venue4Scans(institution, venue, pairing.code, cards, texts, product.code)

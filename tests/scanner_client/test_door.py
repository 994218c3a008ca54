"""Online first, offline always, through an injected transport (the real server is in the
end-to-end tests): every way the network fails leads to an offline decision, never an error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanner_client.client import Client, Result
from scanner_client.door import Door, OnlineGate, sync, upload_queue
from scanner_client.errors import (
    DeviceKeyRejected,
    PairingFailed,
    ServerRejected,
    ServerUnavailable,
)
from scanner_client.queue import ScanStore
from tests.scanner_client.helpers import card_number, qr, sync_answer, sync_body

NUMBER = card_number(7)
Handler = Callable[[httpx.Request], httpx.Response]


def answer(request: httpx.Request, **changes: Any) -> httpx.Response:
    body = json.loads(request.content)
    decision = {
        "id": 1,
        "client_scan_id": body["client_scan_id"],
        "result": "admitted",
        "reason": "ok",
        "counted": True,
        "offline": False,
        "flagged": False,
        "replayed": False,
        "scanned_at": body["scanned_at"],
        "received_at": body["scanned_at"],
        "visits_today": 1,
        "holder": {
            "name": "Anna de Vries",
            "photo_url": None,
            "product": "Annual card",
            "product_code": "ANNUAL",
            "valid_until": "2027-01-01",
            "card_number": " ".join([NUMBER[:4], NUMBER[4:8], NUMBER[8:]]),
        },
        **changes,
    }
    return httpx.Response(200, json=decision)


class Server:
    """A scripted server: `handler` answers, `requests` records what the client sent."""

    def __init__(self) -> None:
        self.handler: Handler = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self) -> Client:
        return Client(
            "http://door.test", device_key="dk_secret", transport=httpx.MockTransport(self)
        )


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ScanStore]:
    store = ScanStore(tmp_path / "scans.sqlite3")
    store.apply_sync(sync_answer())
    yield store
    store.close()


@pytest.fixture
def door(server: Server, store: ScanStore) -> Iterator[Door]:
    client = server.client()
    yield Door(store=store, client=client, gate=OnlineGate(backoff=60))
    client.close()


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


def problem(status: int, slug: str) -> Handler:
    def respond(request: httpx.Request) -> httpx.Response:
        body = {"type": f"/problems/{slug}", "title": slug, "status": status}
        return httpx.Response(status, json=body)

    return respond


class TestOnline:
    def test_the_server_decides_and_nothing_is_queued(
        self, door: Door, server: Server, store: ScanStore
    ) -> None:
        decision = door.scan(qr(NUMBER) + "\r\n")
        assert (decision.result, decision.offline, decision.card_number) == (
            Result.ADMITTED,
            False,
            NUMBER,
        )
        [request] = server.requests
        assert request.headers["Authorization"] == "Bearer dk_secret"
        assert request.headers["User-Agent"].startswith("membership-scan/")
        assert json.loads(request.content)["code"] == qr(NUMBER)
        assert store.queue_length() == 0

    def test_an_online_admission_counts_for_offline_anti_passback(
        self, door: Door, server: Server
    ) -> None:
        door.scan(qr(NUMBER))
        server.handler = timeout
        decision = door.scan(qr(NUMBER))
        assert (decision.result, decision.reason, decision.offline) == (
            Result.REFUSED,
            "already_used",
            True,
        )


class TestOffline:
    @pytest.mark.parametrize(
        "handler",
        [
            timeout,
            problem(503, "unavailable"),
            lambda request: httpx.Response(200, text="<html>captive portal</html>"),
        ],
    )
    def test_no_usable_answer_means_an_offline_decision_queued(
        self, door: Door, server: Server, store: ScanStore, handler: Handler
    ) -> None:
        server.handler = handler
        decision = door.scan(qr(NUMBER))
        assert (decision.result, decision.offline) == (Result.ADMITTED, True)
        [queued] = store.queued(limit=10, now=datetime.now(UTC))
        assert (queued.client_scan_id, queued.result) == (decision.client_scan_id, Result.ADMITTED)

    def test_after_a_failure_the_door_skips_the_network_for_the_back_off(
        self, door: Door, server: Server
    ) -> None:
        server.handler = timeout
        door.scan(qr(NUMBER))
        door.scan(qr(card_number(8)))
        assert len(server.requests) == 1
        door.gate.succeeded()
        server.handler = answer
        assert not door.scan(qr(card_number(9))).offline

    def test_a_revoked_device_key_decides_offline_and_says_so(
        self, door: Door, server: Server
    ) -> None:
        server.handler = problem(401, "invalid-device-key")
        assert door.scan(qr(NUMBER)).offline
        assert door.problem is not None

    def test_unreadable_input_is_refused_and_not_kept(self, door: Door, store: ScanStore) -> None:
        for text in ["\x00\x01\x02", "A" * 10_000, "   "]:
            decision = door.scan(text)
            assert (decision.result, decision.reason) == (Result.REFUSED, "invalid_code")
        assert store.counts() == {}


class TestUpload:
    def _queue(self, door: Door, server: Server, count: int) -> list[str]:
        server.handler = timeout
        return [door.scan(qr(card_number(20 + i))).client_scan_id for i in range(count)]

    def test_recorded_duplicates_and_rejected_all_leave_the_queue(
        self, door: Door, server: Server, store: ScanStore
    ) -> None:
        ids = self._queue(door, server, 3)
        statuses = ["recorded", "duplicate", "rejected"]

        def batch(request: httpx.Request) -> httpx.Response:
            items = json.loads(request.content)["items"]
            assert [item["offline_result"] for item in items] == ["admitted"] * 3
            return httpx.Response(
                200,
                json={
                    "recorded": 1,
                    "duplicates": 1,
                    "rejected": 1,
                    "items": [
                        {"index": i, "client_scan_id": item["client_scan_id"], "status": s}
                        for i, (item, s) in enumerate(zip(items, statuses, strict=True))
                    ],
                },
            )

        server.handler = batch
        with server.client() as client:
            report = upload_queue(client, store)
        assert (report.recorded, report.duplicates, report.rejected, report.remaining) == (
            1,
            1,
            1,
            0,
        )
        assert store.counts() == {"acknowledged": 2, "rejected": 1}
        assert len(ids) == 3

    def test_an_unreachable_server_keeps_the_queue(
        self, door: Door, server: Server, store: ScanStore
    ) -> None:
        self._queue(door, server, 2)
        with server.client() as client, pytest.raises(ServerUnavailable):
            upload_queue(client, store)
        assert store.queue_length() == 2


class TestClient:
    def test_sync_follows_the_revocation_pages(self, server: Server, store: ScanStore) -> None:
        pages = iter(
            [
                sync_body(cursor=5, has_more=True),
                sync_body(cursor=9, has_more=False),
            ]
        )
        server.handler = lambda request: httpx.Response(200, json=next(pages))
        with server.client() as client:
            assert sync(client, store) == 2
        assert [r.url.params["cursor"] for r in server.requests] == ["0", "5"]
        assert store.state().cursor == 9

    def test_a_bad_pairing_code_is_its_own_error(self, server: Server) -> None:
        server.handler = problem(401, "invalid-pairing-code")
        with server.client() as client, pytest.raises(PairingFailed) as caught:
            client.pair("ABCD-EFGH")
        assert caught.value.code == "invalid-pairing-code"

    @pytest.mark.parametrize(("status", "error"), [(401, DeviceKeyRejected), (422, ServerRejected)])
    def test_problems_carry_status_and_slug(
        self, server: Server, status: int, error: type[ServerRejected]
    ) -> None:
        server.handler = problem(status, "some-problem")
        with server.client() as client, pytest.raises(error) as caught:
            client.checkin(code="X", client_scan_id="a", scanned_at=datetime.now(UTC))
        assert (caught.value.status, caught.value.code) == (status, "some-problem")

    def test_an_upload_holds_at_most_one_batch(self, server: Server) -> None:
        with server.client() as client, pytest.raises(ValueError, match="batch"):
            client.upload([])

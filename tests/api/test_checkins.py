"""The door through the API: every reason code, idempotency, batches, races and device scope."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import photos
from membership.clock import utcnow
from membership.models import (
    CardStatus,
    Checkin,
    Device,
    Member,
    MembershipStatus,
    StaffRole,
)
from membership.settings import Settings
from tests.api.conftest import Door, holder
from tests.factories import (
    auth_headers,
    create_institution,
    create_staff_user,
    create_venue,
)
from tests.helpers import one_local_day


async def counted_visits(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).where(Checkin.counted)) or 0


class TestReasons:
    async def test_first_scan_is_admitted_and_counted(self, door: Door) -> None:
        card = await holder(door.session)
        answer = await door.scan(door.qr(card))
        assert (answer["result"], answer["reason"], answer["counted"]) == ("admitted", "ok", True)
        assert answer["holder"]["name"].startswith("Anna de Vries")
        assert answer["visits_today"] == 1

    async def test_typed_number_with_spaces_is_admitted(self, door: Door) -> None:
        card = await holder(door.session)
        spaced = " ".join(card.number[i : i + 4] for i in range(0, 12, 4))
        assert (await door.scan(spaced))["result"] == "admitted"

    async def test_passback_then_reentry(self, door: Door) -> None:
        card = await holder(door.session)
        first = one_local_day(door.institution.timezone, hours=1)
        await door.scan(door.qr(card), at=first)
        again = await door.scan(door.qr(card), at=first + timedelta(minutes=5))
        assert (again["result"], again["reason"], again["counted"]) == (
            "refused",
            "already_used",
            False,
        )
        later = await door.scan(door.qr(card), at=first + timedelta(minutes=40))
        assert (later["result"], later["counted"]) == ("reentry", False)
        assert await counted_visits(door.session) == 1

    @pytest.mark.parametrize(
        ("kwargs", "reason"),
        [
            ({"card_status": CardStatus.BLOCKED}, "blocked"),
            ({"card_status": CardStatus.REPLACED}, "replaced"),
            ({"status": MembershipStatus.EXPIRED}, "expired"),
            ({"status": MembershipStatus.PENDING_PAYMENT}, "membership_inactive"),
            (
                {
                    "starts_on": date.today() - timedelta(days=400),
                    "ends_on": date.today() - timedelta(days=35),
                },
                "expired",
            ),
            (
                {
                    "starts_on": date.today() + timedelta(days=3),
                    "ends_on": date.today() + timedelta(days=368),
                },
                "not_yet_valid",
            ),
        ],
    )
    async def test_refusals(self, door: Door, kwargs: dict[str, Any], reason: str) -> None:
        card = await holder(door.session, **kwargs)
        answer = await door.scan(door.qr(card))
        assert (answer["result"], answer["reason"], answer["counted"]) == (
            "refused",
            reason,
            False,
        )

    async def test_old_version_after_reissue_is_replaced(self, door: Door) -> None:
        card = await holder(door.session, version=3)
        assert (await door.scan(door.qr(card, version=2)))["reason"] == "replaced"

    async def test_club_card_of_another_institution(self, door: Door) -> None:
        hall = await create_institution(door.session)
        card = await holder(door.session, accepted_at=[hall])
        assert (await door.scan(door.qr(card)))["reason"] == "not_accepted_here"

    @pytest.mark.parametrize("code", ["1234 5678 9013", "garbage!", "MK" * 40, "ABCDEFGH"])
    async def test_invalid_codes(self, door: Door, code: str) -> None:
        answer = await door.scan(code)
        assert (answer["reason"], answer["holder"]) == ("invalid_code", None)

    async def test_tampered_qr_is_invalid(self, door: Door) -> None:
        card = await holder(door.session)
        text = door.qr(card)
        tampered = text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]
        assert (await door.scan(tampered))["reason"] == "invalid_code"

    async def test_unknown_card(self, door: Door) -> None:
        assert (await door.scan("1000 0000 0008"))["reason"] == "unknown_card"

    async def test_temporary_card_limit(self, door: Door) -> None:
        card = await holder(door.session, card_status=CardStatus.TEMPORARY, visit_limit=1)
        assert (await door.scan(card.number, at=utcnow() - timedelta(days=1)))["counted"]
        assert (await door.scan(card.number))["reason"] == "temporary_limit_reached"


def _statement(statement: str) -> str:
    """`SELECT <first table>` or `INSERT INTO <table>`: enough to tell the door's statements."""
    words = statement.split()
    if words[0] == "SELECT":
        return f"SELECT {words[1].split('.')[0]}"
    return " ".join(words[:3])


class TestStatements:
    async def test_a_new_scan_is_five_statements(self, door: Door, app: FastAPI) -> None:
        # The hot path's budget, on both databases: who the device is, the card with every fact
        # of the decision, the scan, its day counter and, for a counted visit, its visitor row
        # (the segments read it). A change that adds a round trip to every scan at every door
        # shows here first.
        first, second = await holder(door.session), await holder(door.session)
        await door.scan(door.qr(first))  # the device's last-seen time: written once a minute
        statements: list[str] = []

        def record(*args: Any) -> None:
            statements.append(_statement(args[2]))

        engine = app.state.engine.sync_engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            answer = await door.scan(door.qr(second))
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert answer["result"] == "admitted"
        assert answer["holder"]["card_number"].replace(" ", "") == second.number
        assert statements == [
            "SELECT devices",
            "SELECT cards",
            "INSERT INTO checkins",
            "INSERT INTO institution_day_counts",
            "INSERT INTO institution_visitors",
        ]


class TestIdempotency:
    async def test_same_scan_twice_is_one_row_and_the_same_answer(self, door: Door) -> None:
        card = await holder(door.session)
        first = await door.scan(door.qr(card), scan_id="scan-1")
        second = await door.scan(door.qr(card), scan_id="scan-1")
        assert second["id"] == first["id"]
        assert (second["replayed"], second["result"]) == (True, "admitted")
        assert await door.session.scalar(select(func.count()).select_from(Checkin)) == 1


class TestConcurrency:
    async def test_twenty_doors_at_once_count_one_visit(self, door: Door) -> None:
        card = await holder(door.session)
        second_venue = await create_venue(door.session, institution=door.institution)
        await door.session.commit()
        other_device = await door.pair_device(second_venue)
        code = door.qr(card)
        now = utcnow().isoformat()

        async def scan(i: int) -> httpx.Response:
            body = {"code": code, "client_scan_id": f"race-{i}", "scanned_at": now}
            headers = door.device if i % 2 else other_device
            return await door.client.post("/v1/checkins", json=body, headers=headers)

        responses = await asyncio.gather(*(scan(i) for i in range(20)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        answers = [r.json() for r in responses]
        assert sum(a["counted"] for a in answers) == 1
        assert sum(a["result"] == "admitted" for a in answers) == 1
        assert await counted_visits(door.session) == 1
        assert await door.session.scalar(select(func.count()).select_from(Checkin)) == 20


class TestBatch:
    async def test_replayed_three_times_gives_the_same_rows(self, door: Door) -> None:
        cards = [await holder(door.session) for _ in range(3)]
        base = utcnow() - timedelta(hours=3)
        items = [
            {
                "code": door.qr(card),
                "client_scan_id": f"off-{i}",
                "scanned_at": (base + timedelta(minutes=i)).isoformat(),
                "offline_result": "admitted",
                "offline_reason": "ok",
            }
            for i, card in enumerate(cards)
        ]
        for attempt in range(3):
            response = await door.client.post(
                "/v1/checkins/batch", json={"items": items}, headers=door.device
            )
            assert response.status_code == 200, response.text
            body = response.json()
            expected = (3, 0) if attempt == 0 else (0, 3)
            assert (body["recorded"], body["duplicates"]) == expected
        # Stored card by card (record_batch), so compared by scan id rather than row id.
        rows = (await door.session.scalars(select(Checkin).order_by(Checkin.client_scan_id))).all()
        assert [(r.client_scan_id, r.counted, r.offline) for r in rows] == [
            (f"off-{i}", True, True) for i in range(3)
        ]

    async def test_bad_items_are_answered_one_by_one(self, door: Door) -> None:
        card = await holder(door.session)
        items: list[Any] = [
            {"code": card.number, "client_scan_id": "good", "scanned_at": utcnow().isoformat()},
            {"code": card.number, "client_scan_id": "no-time"},
            {"code": card.number, "client_scan_id": "naive", "scanned_at": "2026-01-01T10:00"},
            {"client_scan_id": "x" * 100, "scanned_at": utcnow().isoformat(), "code": "1"},
        ]
        response = await door.client.post(
            "/v1/checkins/batch", json={"items": items}, headers=door.device
        )
        body = response.json()
        assert [item["status"] for item in body["items"]] == [
            "recorded",
            "rejected",
            "rejected",
            "rejected",
        ]
        assert body["items"][1]["errors"][0]["loc"] == ["scanned_at"]
        assert await door.session.scalar(select(func.count()).select_from(Checkin)) == 1

    async def test_offline_admission_of_a_blocked_card_stands_and_is_flagged(
        self, door: Door
    ) -> None:
        card = await holder(door.session, card_status=CardStatus.BLOCKED)
        item = {
            "code": door.qr(card),
            "client_scan_id": "offline-blocked",
            "scanned_at": (utcnow() - timedelta(hours=2)).isoformat(),
            "offline_result": "admitted",
            "offline_reason": "ok",
        }
        response = await door.client.post(
            "/v1/checkins/batch", json={"items": [item]}, headers=door.device
        )
        checkin = response.json()["items"][0]["checkin"]
        assert (checkin["result"], checkin["flagged"], checkin["counted"]) == (
            "admitted",
            True,
            True,
        )

    async def test_more_than_a_thousand_items_is_refused_whole(self, door: Door) -> None:
        items = [{"code": "1", "client_scan_id": str(i), "scanned_at": "x"} for i in range(1001)]
        response = await door.client.post(
            "/v1/checkins/batch", json={"items": items}, headers=door.device
        )
        assert response.status_code == 422
        assert await door.session.scalar(select(func.count()).select_from(Checkin)) == 0


class TestDevices:
    async def test_a_device_checks_in_only_at_its_own_institution(self, door: Door) -> None:
        other = await create_institution(door.session)
        await door.session.commit()
        card = await holder(door.session)
        answer = await door.scan(door.qr(card))
        row = await door.session.get_one(Checkin, answer["id"])
        assert (row.institution_id, row.venue_id) == (door.institution.id, door.venue.id)
        response = await door.client.get(
            f"/v1/institutions/{other.id}/devices", headers=door.device
        )
        assert response.status_code == 401

    async def test_a_revoked_device_is_refused(self, door: Door) -> None:
        devices = await door.client.get(
            f"/v1/institutions/{door.institution.id}/devices", headers=door.manager
        )
        device_id = devices.json()[0]["id"]
        revoked = await door.client.post(
            f"/v1/institutions/{door.institution.id}/devices/{device_id}/revoke",
            headers=door.manager,
        )
        assert revoked.status_code == 200
        body = {"code": "1", "client_scan_id": "a", "scanned_at": utcnow().isoformat()}
        response = await door.client.post("/v1/checkins", json=body, headers=door.device)
        assert response.status_code == 401
        assert response.json()["type"] == "/problems/invalid-device-key"

    async def test_a_pairing_code_works_once(self, door: Door) -> None:
        response = await door.client.post(
            f"/v1/institutions/{door.institution.id}/devices",
            json={"venue_id": str(door.venue.id), "name": "Side door"},
            headers=door.manager,
        )
        code = response.json()["pairing_code"]
        first = await door.client.post("/v1/devices/pair", json={"pairing_code": code})
        second = await door.client.post("/v1/devices/pair", json={"pairing_code": code})
        assert (first.status_code, second.status_code) == (200, 401)

    async def test_an_expired_pairing_code_is_refused(self, door: Door) -> None:
        response = await door.client.post(
            f"/v1/institutions/{door.institution.id}/devices",
            json={"venue_id": str(door.venue.id), "name": "Side door"},
            headers=door.manager,
        )
        device_id = uuid.UUID(response.json()["device_id"])
        device = await door.session.get_one(Device, device_id)
        device.pairing_expires_at = utcnow() - timedelta(seconds=1)
        await door.session.commit()
        paired = await door.client.post(
            "/v1/devices/pair", json={"pairing_code": response.json()["pairing_code"]}
        )
        assert paired.status_code == 401
        assert paired.json()["type"] == "/problems/invalid-pairing-code"

    async def test_a_manager_cannot_register_at_another_institution(self, door: Door) -> None:
        other = await create_institution(door.session)
        venue = await create_venue(door.session, institution=other)
        await door.session.commit()
        response = await door.client.post(
            f"/v1/institutions/{other.id}/devices",
            json={"venue_id": str(venue.id), "name": "Sneaky"},
            headers=door.manager,
        )
        assert response.status_code == 403


class TestOverride:
    async def test_a_manager_admits_a_refused_card_once(self, door: Door) -> None:
        card = await holder(door.session, status=MembershipStatus.PENDING_PAYMENT)
        refused = await door.scan(door.qr(card))
        response = await door.client.post(
            f"/v1/checkins/{refused['id']}/override",
            json={"reason": "Paid at the desk, payment still processing"},
            headers=door.manager,
        )
        assert response.status_code == 200, response.text
        assert (response.json()["result"], response.json()["counted"]) == ("admitted", True)
        again = await door.client.post(
            f"/v1/checkins/{refused['id']}/override",
            json={"reason": "twice"},
            headers=door.manager,
        )
        assert again.status_code == 409
        assert await counted_visits(door.session) == 1


class TestPhoto:
    async def test_the_scanning_device_sees_the_holder_photo_and_no_other(
        self, door: Door, settings: Settings
    ) -> None:
        card = await holder(door.session)
        member = await door.session.get_one(Member, card.member_id)
        member.photo_path = photos.store(settings.photo_dir, b"\xff\xd8\xff jpeg bytes")
        await door.session.commit()
        answer = await door.scan(door.qr(card))
        photo_url = answer["holder"]["photo_url"]
        assert photo_url == f"/v1/checkins/{answer['id']}/photo"
        response = await door.client.get(photo_url, headers=door.device)
        assert (response.status_code, response.content) == (200, b"\xff\xd8\xff jpeg bytes")
        other_venue = await create_venue(door.session, institution=door.institution)
        await door.session.commit()
        other_device = await door.pair_device(other_venue)
        assert (await door.client.get(photo_url, headers=other_device)).status_code == 404
        assert (await door.client.get(photo_url, headers=door.manager)).status_code == 401


class TestOfflineRefusals:
    @pytest.mark.parametrize(
        ("offline_reason", "stored"),
        [
            ("needs_network", "needs_network"),
            ("cosmic_rays", "offline_refused"),
            (None, "offline_refused"),
        ],
    )
    async def test_a_refusal_at_the_door_stands_with_its_reason(
        self, door: Door, offline_reason: str | None, stored: str
    ) -> None:
        card = await holder(door.session)
        item = {
            "code": card.number,
            "client_scan_id": "offline-refused",
            "scanned_at": (utcnow() - timedelta(hours=1)).isoformat(),
            "offline_result": "refused",
            "offline_reason": offline_reason,
        }
        response = await door.client.post(
            "/v1/checkins/batch", json={"items": [item]}, headers=door.device
        )
        checkin = response.json()["items"][0]["checkin"]
        assert (checkin["result"], checkin["reason"], checkin["counted"]) == (
            "refused",
            stored,
            False,
        )


class TestErasedHolder:
    async def test_a_late_offline_scan_of_the_card_keeps_no_link_to_the_person(
        self, door: Door
    ) -> None:
        # The scanner was offline when the operator erased the holder: it admitted the card
        # and uploads the scan afterwards. The visit counts, but carries nobody (rule 5).
        card = await holder(door.session)
        operator = await create_staff_user(door.session, role=StaffRole.OPERATOR_ADMIN)
        headers = await auth_headers(door.session, staff_user=operator)
        await door.session.commit()
        erased = await door.client.post(
            f"/v1/admin/members/{card.member_id}/erasure", headers=headers
        )
        assert erased.status_code == 200, erased.text
        response = await door.client.post(
            "/v1/checkins/batch",
            json={
                "items": [
                    {
                        "code": door.qr(card),
                        "client_scan_id": "offline-after-erasure",
                        "scanned_at": (utcnow() - timedelta(minutes=5)).isoformat(),
                        "offline_result": "admitted",
                        "offline_reason": "ok",
                    }
                ]
            },
            headers=door.device,
        )
        assert response.status_code == 200, response.text
        online = await door.scan(door.qr(card))
        assert online["result"] == "refused"
        rows = (await door.session.execute(select(Checkin.member_id, Checkin.card_id))).all()
        assert len(rows) == 2
        assert set(rows) == {(None, None)}

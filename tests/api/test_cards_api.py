"""The card endpoints: operator lifecycle, desk temporary cards, images, photos, scoping."""

from __future__ import annotations

import io
import uuid
from datetime import date

import httpx
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import codes
from membership.keys import KeyStore
from membership.models import AuditEntry, Card, CardStatus, Institution, StaffRole
from membership.settings import Settings
from tests.factories import (
    auth_headers,
    create_institution,
    create_member,
    create_membership,
    create_product,
    create_staff_user,
)


@pytest.fixture
def keys(settings: Settings) -> KeyStore:
    store = KeyStore.from_settings(settings)
    store.generate()
    return store


async def _operator(session: AsyncSession) -> dict[str, str]:
    user = await create_staff_user(session, role=StaffRole.OPERATOR_ADMIN)
    return await auth_headers(session, staff_user=user)


async def _desk(session: AsyncSession, institution: Institution) -> dict[str, str]:
    user = await create_staff_user(
        session, role=StaffRole.INSTITUTION_STAFF, institution=institution
    )
    return await auth_headers(session, staff_user=user)


async def _holder(session: AsyncSession) -> dict[str, str]:
    product = await create_product(session)
    member = await create_member(session, first_name="Sanne", last_name="Bakker")
    membership = await create_membership(session, product=product, holders=[member])
    return {"membership_id": str(membership.id), "member_id": str(member.id)}


async def _count(session: AsyncSession, model: type[object]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (600, 800), (90, 60, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


class TestOperatorLifecycle:
    async def test_issue_block_unblock_lost(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()

        issued = await client.post("/v1/cards", json=body, headers=headers)
        assert issued.status_code == 201
        card = issued.json()
        assert card["status"] == "active"
        assert card["number_display"].replace(" ", "") == card["number"]

        again = await client.post("/v1/cards", json=body, headers=headers)
        assert again.status_code == 409
        assert again.json()["type"] == "/problems/card-already-issued"

        blocked = await client.post(
            f"/v1/cards/{card['id']}/block", json={"reason": "reported stolen"}, headers=headers
        )
        assert blocked.json()["status"] == "blocked"
        unblocked = await client.post(f"/v1/cards/{card['id']}/unblock", headers=headers)
        assert unblocked.json()["status"] == "active"

        lost = await client.post(f"/v1/cards/{card['id']}/lost", headers=headers)
        assert lost.status_code == 201
        assert lost.json()["number"] != card["number"]
        old = await client.get(f"/v1/cards/{card['id']}", headers=headers)
        assert old.json()["status"] == "replaced"
        assert old.json()["replaced_by_id"] == lost.json()["id"]

        reissued = await client.post(f"/v1/cards/{lost.json()['id']}/reissue", headers=headers)
        assert reissued.json()["version"] == lost.json()["version"] + 1
        assert await _count(session, Card) == 2

    async def test_lookup_by_typed_number(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()
        card = (await client.post("/v1/cards", json=body, headers=headers)).json()
        found = await client.get(
            "/v1/cards/lookup", params={"number": card["number_display"]}, headers=headers
        )
        assert found.json()["id"] == card["id"]
        typo = card["number"][:-1] + str((int(card["number"][-1]) + 1) % 10)
        refused = await client.get("/v1/cards/lookup", params={"number": typo}, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["type"] == "/problems/invalid-card-number"

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"membership_id": "not-a-uuid", "member_id": str(uuid.uuid4())},
            {"membership_id": str(uuid.uuid4()), "member_id": str(uuid.uuid4()), "x": 1},
        ],
    )
    async def test_bad_requests_change_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, payload: dict[str, object]
    ) -> None:
        headers = await _operator(session)
        await session.commit()
        response = await client.post("/v1/cards", json=payload, headers=headers)
        assert response.status_code == 422
        assert await _count(session, Card) == 0

    async def test_unknown_membership_is_404_and_blank_reason_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()
        missing = {"membership_id": str(uuid.uuid4()), "member_id": body["member_id"]}
        assert (await client.post("/v1/cards", json=missing, headers=headers)).status_code == 404
        card = (await client.post("/v1/cards", json=body, headers=headers)).json()
        blank = await client.post(
            f"/v1/cards/{card['id']}/block", json={"reason": "  "}, headers=headers
        )
        assert blank.status_code == 422
        assert (await client.get(f"/v1/cards/{card['id']}", headers=headers)).json()[
            "status"
        ] == "active"

    async def test_without_a_token_nothing_is_issued(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = await _holder(session)
        await session.commit()
        assert (await client.post("/v1/cards", json=body)).status_code == 401
        assert await _count(session, Card) == 0


class TestImages:
    async def test_qr_png_svg_code_card_and_pdf(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()
        card = (await client.post("/v1/cards", json=body, headers=headers)).json()

        code = await client.get(f"/v1/cards/{card['id']}/code", headers=headers)
        assert code.status_code == 200
        text = code.json()["text"]
        assert code.json()["qr_version"] <= 8
        verified = codes.verify(text, keys=keys.public_keys(), programme="MK", today=date.today())
        assert verified.valid
        assert verified.code is not None
        assert verified.code.card_number == card["number"]

        png = await client.get(f"/v1/cards/{card['id']}/qr.png", headers=headers)
        assert png.headers["content-type"] == "image/png"
        assert png.headers["cache-control"] == "private, no-store"
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
        assert [result.text for result in decoded] == [text]

        svg = await client.get(f"/v1/cards/{card['id']}/qr.svg", headers=headers)
        assert svg.headers["content-type"].startswith("image/svg+xml")

        image = await client.get(f"/v1/cards/{card['id']}/card.png", headers=headers)
        with Image.open(io.BytesIO(image.content)) as rendered:
            assert rendered.size == (1011, 638)
            assert [r.text for r in zxingcpp.read_barcodes(rendered)] == [text]

        pdf = await client.get(f"/v1/cards/{card['id']}/card.pdf", headers=headers)
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-")

    async def test_no_signing_key_is_a_clear_503(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()
        card = (await client.post("/v1/cards", json=body, headers=headers)).json()
        response = await client.get(f"/v1/cards/{card['id']}/qr.png", headers=headers)
        assert response.status_code == 503
        assert response.json()["type"] == "/problems/no-signing-key"

    async def test_a_blocked_card_has_no_image(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()
        card = (await client.post("/v1/cards", json=body, headers=headers)).json()
        await client.post(f"/v1/cards/{card['id']}/block", json={"reason": "x"}, headers=headers)
        response = await client.get(f"/v1/cards/{card['id']}/card.png", headers=headers)
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/card-state-conflict"


class TestDesk:
    async def test_desk_issues_a_temporary_card_then_completes_it_with_a_photo(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        institution = await create_institution(session)
        headers = await _desk(session, institution)
        body = await _holder(session)
        await session.commit()

        issued = await client.post(
            f"/v1/institutions/{institution.id}/temporary-cards", json=body, headers=headers
        )
        assert issued.status_code == 201
        temporary = issued.json()
        assert temporary["status"] == "temporary"
        assert temporary["visit_limit"] == 5

        png = await client.get(f"/v1/cards/{temporary['id']}/card.png", headers=headers)
        assert png.status_code == 200

        early = await client.post(
            f"/v1/cards/{temporary['id']}/complete-registration", headers=headers
        )
        assert early.status_code == 409
        assert early.json()["type"] == "/problems/photo-required"

        photo = await client.put(
            f"/v1/members/{body['member_id']}/photo",
            content=_photo(),
            headers={**headers, "Content-Type": "image/jpeg"},
        )
        assert photo.status_code == 204
        done = await client.post(
            f"/v1/cards/{temporary['id']}/complete-registration", headers=headers
        )
        assert done.status_code == 201
        assert done.json()["status"] == "active"
        old = await client.get(f"/v1/cards/{temporary['id']}", headers=headers)
        assert old.json()["status"] == CardStatus.REPLACED

    async def test_desk_staff_stay_inside_their_institution(
        self, client: httpx.AsyncClient, session: AsyncSession, keys: KeyStore
    ) -> None:
        own, other = await create_institution(session), await create_institution(session)
        headers = await _desk(session, own)
        operator = await _operator(session)
        body = await _holder(session)
        await session.commit()

        foreign = await client.post(
            f"/v1/institutions/{other.id}/temporary-cards", json=body, headers=headers
        )
        assert foreign.status_code == 403
        assert (await client.post("/v1/cards", json=body, headers=headers)).status_code == 403
        card = (await client.post("/v1/cards", json=body, headers=operator)).json()
        assert (await client.get(f"/v1/cards/{card['id']}", headers=headers)).status_code == 403
        photo = await client.put(
            f"/v1/members/{body['member_id']}/photo", content=_photo(), headers=headers
        )
        assert photo.status_code == 403
        assert await _count(session, Card) == 1


class TestPhotoUpload:
    @pytest.mark.parametrize(
        ("content", "status", "slug"),
        [
            (b"", 422, "invalid-photo"),
            (b"GIF89a" + b"\x00" * 100, 422, "invalid-photo"),
            (b"\xff" * (10 * 1024 * 1024 + 1), 413, "photo-too-large"),
        ],
        ids=["empty", "gif", "too-large"],
    )
    async def test_bad_photos_are_refused_and_change_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        settings: Settings,
        content: bytes,
        status: int,
        slug: str,
    ) -> None:
        headers = await _operator(session)
        body = await _holder(session)
        await session.commit()
        response = await client.put(
            f"/v1/members/{body['member_id']}/photo", content=content, headers=headers
        )
        assert response.status_code == status
        assert response.json()["type"] == f"/problems/{slug}"
        assert not settings.photo_dir.exists()
        photo_rows = select(func.count()).where(AuditEntry.action == "member.photo")
        assert await session.scalar(photo_rows) == 0

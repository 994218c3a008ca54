"""Codes signed like the server signs them, and sync answers as the server sends them."""

from __future__ import annotations

import base64
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from membership import card_numbers
from membership import codes as reference
from scanner_client.client import SyncAnswer, SyncPage

SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_ID = reference.key_id_for(SIGNER.public_key())
PUBLIC_B64 = base64.b64encode(SIGNER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def card_number(seed: int) -> str:
    body = str(41234567890 + seed)
    return body + card_numbers.luhn_digit(body)


def qr(
    number: str,
    *,
    version: int = 1,
    product: str = "ANNUAL",
    valid_until: date | None = None,
    programme: str = "MK",
    signer: Ed25519PrivateKey = SIGNER,
) -> str:
    return reference.encode(
        reference.CardCode(
            programme=programme,
            card_number=number,
            card_version=version,
            valid_until=valid_until or date.today() + timedelta(days=100),
            product_code=product,
        ),
        private_key=signer,
    )


def sync_answer(**changes: Any) -> SyncAnswer:
    """A sync answer with `sync_body`'s defaults, as the client parses it."""
    page = SyncPage.model_validate(sync_body(**changes))
    now = time.time()
    return SyncAnswer(page=page, sent_at=now, received_at=now)


def sync_body(
    *,
    revocations: list[dict[str, Any]] | None = None,
    cursor: int = 0,
    has_more: bool = False,
    timezone: str = "Europe/Amsterdam",
    anti_passback_minutes: int = 15,
    products: tuple[str, ...] = ("ANNUAL",),
) -> dict[str, Any]:
    return {
        "server_time": datetime.now(UTC).isoformat(),
        "programme": "MK",
        "device_id": "5f0c8a64-4a38-4c0b-9d3e-0c4f3a1e7a10",
        "venue_id": "1b9e2a0c-1f39-4c1e-8f7e-9b1f1b1f1b1f",
        "venue_name": "Entrance 1",
        "institution": {
            "id": "7c3c6a1e-2b4d-4e5f-8a9b-0c1d2e3f4a5b",
            "code": "RIJKS",
            "name": "Rijksmuseum",
            "timezone": timezone,
            "anti_passback_minutes": anti_passback_minutes,
        },
        "products": [{"code": code, "name": f"{code} card", "kind": "annual"} for code in products],
        "keys": [
            {
                "key_id": KEY_ID,
                "algorithm": "Ed25519",
                "status": "active",
                "public_key": PUBLIC_B64.decode(),
                "created_at": None,
                "retired_at": None,
            }
        ],
        "revocations": {"entries": revocations or [], "cursor": cursor, "has_more": has_more},
    }

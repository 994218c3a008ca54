"""Schemas of cards, their codes and keys, and the scanners' revocation feed."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import RequestModel
from membership import card_numbers
from membership.keys import KeyInfo, KeyStatus
from membership.models import Card, CardStatus


class KeyRead(BaseModel):
    """A public key that verifies card codes; `public_key` is the raw 32 bytes, base64."""

    key_id: str = Field(examples=["56475aa7"])
    algorithm: str = "Ed25519"
    status: KeyStatus
    public_key: str = Field(examples=["A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="])
    created_at: datetime | None
    retired_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyRead:
        return cls(
            key_id=info.key_id,
            status=info.status,
            public_key=info.public_key_b64,
            created_at=info.created_at,
            retired_at=info.retired_at,
        )


class RevocationRead(BaseModel):
    """One feed entry; a scanner keeps the latest per card number (see docs/qr-format.md)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    card_number: str
    min_version: int
    revoked: bool
    reason: str


class RevocationFeed(BaseModel):
    entries: list[RevocationRead]
    cursor: int = Field(description="Send as `since` next time.")
    has_more: bool = Field(description="More entries wait: call again at once with `cursor`.")


class CardCreate(RequestModel):
    membership_id: uuid.UUID
    member_id: uuid.UUID


class CardBlock(RequestModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CardRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: str
    number_display: str = Field(examples=["4123 4567 8905"])
    version: int
    status: CardStatus
    member_id: uuid.UUID
    membership_id: uuid.UUID | None
    issued_at: datetime
    expires_at: datetime | None
    visit_limit: int | None
    status_reason: str | None
    status_changed_at: datetime | None
    replaced_by_id: uuid.UUID | None
    issued_by_institution_id: uuid.UUID | None

    @classmethod
    def of(cls, card: Card) -> CardRead:
        fields = {
            name: getattr(card, name) for name in cls.model_fields if name != "number_display"
        }
        return cls(**fields, number_display=card_numbers.display(card.number))


class CardCodeRead(BaseModel):
    """The signed text of the QR code and what it says, for apps that draw the code themselves."""

    text: str
    key_id: str
    card_number: str
    card_version: int
    valid_until: date
    product_code: str
    temporary: bool
    qr_version: int = Field(description="QR version at error correction level M (at most 8).")

"""Schemas of cards, their codes and keys, and the scanners' revocation feed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from membership.keys import KeyInfo, KeyStatus


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

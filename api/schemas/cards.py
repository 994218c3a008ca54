"""Schemas of cards, their codes and keys, and the scanners' revocation feed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

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

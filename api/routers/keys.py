"""The public keys that verify card codes: scanners and third parties fetch them here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import SettingsDep
from api.schemas.cards import KeyRead
from membership.keys import KeyStore

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def get_key_store(settings: SettingsDep) -> KeyStore:
    return KeyStore.from_settings(settings)


KeyStoreDep = Annotated[KeyStore, Depends(get_key_store)]


@router.get("", response_model=list[KeyRead])
async def list_keys(store: KeyStoreDep) -> list[KeyRead]:
    """Every key that may have signed a live card; public, since verification needs no secret."""
    return [KeyRead.of(info) for info in store.all_keys()]

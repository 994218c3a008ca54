"""The signing keys of card codes: files in a directory (or the environment), never the database.

A leaked database must not let anyone forge a card, so private keys live only in `key_dir`, one
PEM file per key created with mode 0600, or in `MEMBERSHIP_SIGNING_KEYS`. Next to each key a small
JSON file holds what may be public: its status and its public key.

A key goes `pending` → `active` → `retired` → removed. A pending key is published but does not
sign yet, so scanners that sync rarely learn it before the first card signed with it appears
(`generate` now, `rotate` weeks later). The newest active key signs. A retired key keeps
verifying the cards it signed (its private half is deleted: it can never sign again) until it is
removed, which should wait until every card it signed has been reissued or has expired.
"""

from __future__ import annotations

import base64
import enum
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from membership.clock import utcnow
from membership.codes import key_id_for
from membership.errors import Conflict, DomainError, NotFound
from membership.settings import Settings


class KeyStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


class KeyNotFound(NotFound):
    code = "key-not-found"
    title = "No signing key has this id"


class KeyStateConflict(Conflict):
    code = "key-state-conflict"
    title = "The key is not in a state that allows this"


class KeyStoreReadOnly(Conflict):
    code = "key-store-read-only"
    title = "Keys come from the environment and cannot be changed here"


class NoSigningKey(DomainError):
    code = "no-signing-key"
    title = "No active signing key: run `membership keys ensure` or `membership keys rotate`"
    status = 503


@dataclass(frozen=True)
class KeyInfo:
    """The public facts about one key; safe to list, log and publish."""

    key_id: str
    status: KeyStatus
    created_at: datetime | None
    public_key: Ed25519PublicKey
    retired_at: datetime | None = None

    @property
    def public_key_b64(self) -> str:
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")


class KeyStore:
    """One directory of keys; every process reads it afresh, so workers agree after a rotation."""

    def __init__(self, directory: Path, *, env_keys: str | None = None) -> None:
        self.directory = directory
        self._env = _parse_env_keys(env_keys) if env_keys else None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        env = settings.signing_keys.get_secret_value() if settings.signing_keys else None
        return cls(settings.key_dir, env_keys=env)

    @property
    def read_only(self) -> bool:
        return self._env is not None

    def all_keys(self) -> list[KeyInfo]:
        """Every key that verifies, oldest first."""
        if self._env is not None:
            return [info for info, _private in self._env]
        if not self.directory.is_dir():
            return []
        infos = [_read_info(path) for path in self.directory.glob("*.json")]
        return sorted(infos, key=lambda info: (info.created_at or _EPOCH, info.key_id))

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every key that verifies, by id: what a scan is checked against, so it must be cheap.

        A key file is named after its key id, which is a hash of the public key; a file whose
        name, id and key agree therefore never changes its public key, and is parsed once per
        process. Only the listing is read on every call, so a removed key stops verifying and
        a new one starts at once, in every worker.
        """
        if self._env is not None:
            return {info.key_id: info.public_key for info, _private in self._env}
        try:
            names = [entry.name for entry in os.scandir(self.directory)]
        except (FileNotFoundError, NotADirectoryError):
            return {}
        keys: dict[str, Ed25519PublicKey] = {}
        for name in names:
            if not name.endswith(".json"):
                continue
            path = self.directory / name
            public_key = _verified_public_keys.get(path)
            if public_key is None:
                try:
                    info = _read_info(path)
                except FileNotFoundError:  # removed since the listing
                    continue
                if info.key_id == path.stem == key_id_for(info.public_key):
                    _verified_public_keys[path] = info.public_key
                keys[info.key_id] = info.public_key
            else:
                keys[path.stem] = public_key
        return keys

    def get(self, key_id: str) -> KeyInfo:
        for info in self.all_keys():
            if info.key_id == key_id:
                return info
        raise KeyNotFound(f"No key {key_id!r}.", key_id=key_id)

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The newest active key: the one that signs every code rendered now."""
        if self._env is not None:
            for info, private in reversed(self._env):
                if info.status == KeyStatus.ACTIVE:
                    return info.key_id, private
            raise NoSigningKey
        active = [info for info in self.all_keys() if info.status == KeyStatus.ACTIVE]
        if not active:
            raise NoSigningKey
        key_id = active[-1].key_id
        loaded = load_pem_private_key(self._private_path(key_id).read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise NoSigningKey(f"Key file {key_id} does not hold an Ed25519 key.")
        return key_id, loaded

    def generate(self) -> KeyInfo:
        """A new key; it signs at once only if no key is active yet, else it waits as pending."""
        self._ensure_writable()
        has_active = any(info.status == KeyStatus.ACTIVE for info in self.all_keys())
        return self._create(KeyStatus.PENDING if has_active else KeyStatus.ACTIVE)

    def ensure(self) -> KeyInfo | None:
        """For `make run`: the first key of a fresh install, and nothing when keys exist."""
        if self.all_keys():
            return None
        return self.generate()

    def rotate(self) -> KeyInfo:
        """Make the oldest pending key (or a new one) active and retire the keys that signed."""
        self._ensure_writable()
        infos = self.all_keys()
        pending = [info for info in infos if info.status == KeyStatus.PENDING]
        new = pending[0] if pending else self._create(KeyStatus.PENDING)
        new = self._write_info(new, status=KeyStatus.ACTIVE)
        for info in infos:
            if info.status == KeyStatus.ACTIVE and info.key_id != new.key_id:
                self._retire(info)
        return new

    def retire(self, key_id: str) -> KeyInfo:
        self._ensure_writable()
        info = self.get(key_id)
        if info.status == KeyStatus.RETIRED:
            return info
        return self._retire(info)

    def remove(self, key_id: str) -> None:
        """Cards signed with a removed key are refused as `unknown_key` from then on."""
        self._ensure_writable()
        info = self.get(key_id)
        if info.status != KeyStatus.RETIRED:
            raise KeyStateConflict("Retire a key before removing it.", key_id=key_id)
        self._private_path(key_id).unlink(missing_ok=True)
        self._info_path(key_id).unlink()

    def _ensure_writable(self) -> None:
        if self.read_only:
            raise KeyStoreReadOnly

    def _private_path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.pem"

    def _info_path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.json"

    def _create(self, status: KeyStatus) -> KeyInfo:
        self.directory.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        key_id = key_id_for(private.public_key())
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        # Created with 0600 from the start: a chmod afterwards leaves a window where it is readable.
        descriptor = os.open(
            self._private_path(key_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        info = KeyInfo(
            key_id=key_id, status=status, created_at=utcnow(), public_key=private.public_key()
        )
        return self._write_info(info, status=status)

    def _retire(self, info: KeyInfo) -> KeyInfo:
        retired = self._write_info(info, status=KeyStatus.RETIRED, retired_at=utcnow())
        # A retired key only verifies: its private half goes, so it can never sign again.
        self._private_path(info.key_id).unlink(missing_ok=True)
        return retired

    def _write_info(
        self, info: KeyInfo, *, status: KeyStatus, retired_at: datetime | None = None
    ) -> KeyInfo:
        updated = KeyInfo(
            key_id=info.key_id,
            status=status,
            created_at=info.created_at,
            public_key=info.public_key,
            retired_at=retired_at or info.retired_at,
        )
        document = {
            "key_id": updated.key_id,
            "algorithm": "Ed25519",
            "status": updated.status.value,
            "created_at": updated.created_at.isoformat() if updated.created_at else None,
            "retired_at": updated.retired_at.isoformat() if updated.retired_at else None,
            "public_key": updated.public_key_b64,
        }
        path = self._info_path(info.key_id)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        # Atomic replace: a worker reading the directory meanwhile sees the old or the new state.
        temporary.replace(path)
        return updated


# Public keys of key files whose name, id and key agree, by path (see `KeyStore.public_keys`).
_verified_public_keys: dict[Path, Ed25519PublicKey] = {}


def _read_info(path: Path) -> KeyInfo:
    document = json.loads(path.read_text(encoding="utf-8"))
    retired_at = document.get("retired_at")
    return KeyInfo(
        key_id=document["key_id"],
        status=KeyStatus(document["status"]),
        created_at=datetime.fromisoformat(document["created_at"])
        if document.get("created_at")
        else None,
        retired_at=datetime.fromisoformat(retired_at) if retired_at else None,
        public_key=Ed25519PublicKey.from_public_bytes(base64.b64decode(document["public_key"])),
    )


_PEM_END = "-----END PRIVATE KEY-----"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=8)
def _parse_env_keys(text: str) -> tuple[tuple[KeyInfo, Ed25519PrivateKey], ...]:
    """PEM private keys one after another, oldest first: the last signs, the others verify.

    Cached: the same text is handed in on every scan, and parsing PEM costs more than the scan.
    """
    blocks = [block + _PEM_END for block in text.split(_PEM_END) if block.strip()]
    keys: list[tuple[KeyInfo, Ed25519PrivateKey]] = []
    for position, block in enumerate(blocks):
        private = load_pem_private_key(block.strip().encode("ascii"), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("MEMBERSHIP_SIGNING_KEYS must hold Ed25519 private keys only")
        status = KeyStatus.ACTIVE if position == len(blocks) - 1 else KeyStatus.RETIRED
        info = KeyInfo(
            key_id=key_id_for(private.public_key()),
            status=status,
            created_at=None,
            public_key=private.public_key(),
        )
        keys.append((info, private))
    return tuple(keys)

"""Signing keys: files with private halves unreadable to others, rotation that breaks no card."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from membership import codes
from membership.codes import CardCode, Reason
from membership.keys import (
    KeyInfo,
    KeyNotFound,
    KeyStateConflict,
    KeyStatus,
    KeyStore,
    KeyStoreReadOnly,
    NoSigningKey,
)
from membership.settings import Settings

CODE = CardCode(
    programme="MK",
    card_number="412345678905",
    card_version=1,
    valid_until=date(2027, 1, 1),
    product_code="ANNUAL",
)


def _sign(store: KeyStore) -> str:
    _key_id, private = store.signing_key()
    return codes.encode(CODE, private_key=private)


def _reason(store: KeyStore, text: str) -> Reason | None:
    return codes.verify(
        text, keys=store.public_keys(), programme="MK", today=date(2026, 6, 1)
    ).reason


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


class TestKeyFiles:
    def test_an_empty_store_has_no_signing_key(self, store: KeyStore) -> None:
        assert store.all_keys() == []
        with pytest.raises(NoSigningKey):
            store.signing_key()

    def test_the_first_key_signs_at_once_and_its_private_file_is_0600(
        self, store: KeyStore
    ) -> None:
        info = store.generate()
        assert info.status == KeyStatus.ACTIVE
        assert store.signing_key()[0] == info.key_id
        mode = stat.S_IMODE((store.directory / f"{info.key_id}.pem").stat().st_mode)
        assert mode == 0o600

    def test_the_public_listing_never_contains_the_private_key(self, store: KeyStore) -> None:
        info = store.generate()
        private = (store.directory / f"{info.key_id}.pem").read_text()
        body = "".join(private.splitlines()[1:-1])
        listing = (store.directory / f"{info.key_id}.json").read_text()
        assert body not in listing

    def test_ensure_generates_only_on_a_fresh_install(self, store: KeyStore) -> None:
        first = store.ensure()
        assert first is not None
        assert store.ensure() is None
        assert [info.key_id for info in store.all_keys()] == [first.key_id]

    def test_a_second_key_waits_as_pending_so_scanners_learn_it_first(
        self, store: KeyStore
    ) -> None:
        first = store.generate()
        second = store.generate()
        assert second.status == KeyStatus.PENDING
        assert store.signing_key()[0] == first.key_id
        assert set(store.public_keys()) == {first.key_id, second.key_id}


class TestRotation:
    def test_rotation_keeps_old_cards_valid_and_signs_new_ones_with_the_new_key(
        self, store: KeyStore
    ) -> None:
        old = store.generate()
        old_card = _sign(store)
        new = store.rotate()
        assert new.key_id != old.key_id
        assert store.get(old.key_id).status == KeyStatus.RETIRED
        assert store.signing_key()[0] == new.key_id
        assert _reason(store, old_card) is None
        assert _reason(store, _sign(store)) is None

    def test_rotation_promotes_the_pending_key(self, store: KeyStore) -> None:
        store.generate()
        pending = store.generate()
        assert store.rotate().key_id == pending.key_id
        assert len(store.all_keys()) == 2

    def test_a_retired_key_cannot_sign_any_more(self, store: KeyStore) -> None:
        old = store.generate()
        store.rotate()
        assert not (store.directory / f"{old.key_id}.pem").exists()

    def test_retiring_the_only_key_leaves_nothing_to_sign_with(self, store: KeyStore) -> None:
        info = store.generate()
        card = _sign(store)
        store.retire(info.key_id)
        with pytest.raises(NoSigningKey):
            store.signing_key()
        assert _reason(store, card) is None

    def test_removing_a_retired_key_refuses_its_cards_as_unknown_key(self, store: KeyStore) -> None:
        old = store.generate()
        card = _sign(store)
        store.rotate()
        store.remove(old.key_id)
        assert _reason(store, card) == Reason.UNKNOWN_KEY
        assert old.key_id not in store.public_keys()

    def test_another_worker_sees_a_new_and_a_removed_key_at_once(self, store: KeyStore) -> None:
        # Each worker has its own KeyStore (and parses a key file only once); the directory
        # listing is what they share, so rotation and removal reach every worker on the next scan.
        worker = KeyStore(store.directory)
        assert worker.public_keys() == {}
        old = store.generate()
        old_card = _sign(store)
        assert _reason(worker, old_card) is None
        new = store.rotate()
        assert set(worker.public_keys()) == {old.key_id, new.key_id}
        store.remove(old.key_id)
        assert _reason(worker, old_card) == Reason.UNKNOWN_KEY
        assert set(worker.public_keys()) == {new.key_id}

    def test_a_key_file_that_does_not_match_its_name_is_read_as_written(
        self, store: KeyStore
    ) -> None:
        # A public key is only remembered when the file's name, id and key agree; anything else
        # (a hand-edited file) is read afresh, so fixing the file takes effect at once.
        info = store.generate()
        path = store.directory / f"{info.key_id}.json"
        original = path.read_text()
        assert set(store.public_keys()) == {info.key_id}
        stranger = Ed25519PrivateKey.generate().public_key()
        other_id = codes.key_id_for(stranger)
        store.directory.joinpath("hand-made.json").write_text(
            original.replace(info.key_id, other_id).replace(
                info.public_key_b64,
                KeyInfo(other_id, KeyStatus.ACTIVE, None, stranger).public_key_b64,
            )
        )
        assert set(store.public_keys()) == {info.key_id, other_id}
        store.directory.joinpath("hand-made.json").unlink()
        assert set(store.public_keys()) == {info.key_id}

    def test_an_active_key_cannot_be_removed(self, store: KeyStore) -> None:
        info = store.generate()
        with pytest.raises(KeyStateConflict):
            store.remove(info.key_id)
        assert store.signing_key()[0] == info.key_id

    def test_unknown_key_id(self, store: KeyStore) -> None:
        store.generate()
        with pytest.raises(KeyNotFound):
            store.retire("00000000")


class TestEnvironmentKeys:
    @staticmethod
    def _pem(key: Ed25519PrivateKey) -> str:
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()

    def test_the_last_key_signs_and_the_earlier_ones_verify(self, tmp_path: Path) -> None:
        old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        store = KeyStore(tmp_path / "unused", env_keys=self._pem(old) + self._pem(new))
        assert store.signing_key()[0] == codes.key_id_for(new.public_key())
        statuses = {info.key_id: info.status for info in store.all_keys()}
        assert statuses == {
            codes.key_id_for(old.public_key()): KeyStatus.RETIRED,
            codes.key_id_for(new.public_key()): KeyStatus.ACTIVE,
        }
        old_card = codes.encode(CODE, private_key=old)
        assert _reason(store, old_card) is None

    def test_environment_keys_cannot_be_changed_by_the_cli(self, tmp_path: Path) -> None:
        store = KeyStore(tmp_path, env_keys=self._pem(Ed25519PrivateKey.generate()))
        with pytest.raises(KeyStoreReadOnly):
            store.rotate()
        with pytest.raises(KeyStoreReadOnly):
            store.generate()
        assert not any(tmp_path.iterdir())

    def test_settings_take_keys_from_membership_signing_keys(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key = Ed25519PrivateKey.generate()
        monkeypatch.setenv("MEMBERSHIP_SIGNING_KEYS", self._pem(key))
        monkeypatch.setenv("MEMBERSHIP_KEY_DIR", str(tmp_path / "unused"))
        store = KeyStore.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
        assert store.read_only
        assert store.signing_key()[0] == codes.key_id_for(key.public_key())

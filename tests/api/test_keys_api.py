"""Keys as operators and scanners see them: the `membership keys` commands and `GET /v1/keys`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api import cli
from membership.keys import KeyStatus, KeyStore
from membership.settings import Settings


class TestPublishedKeys:
    async def test_no_keys_yet(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/keys")
        assert response.status_code == 200
        assert response.json() == []

    async def test_active_pending_and_retired_keys_are_published_without_secrets(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        store = KeyStore.from_settings(settings)
        retired = store.generate()
        active = store.rotate()
        pending = store.generate()
        response = await client.get("/v1/keys")
        assert response.status_code == 200
        body = response.json()
        assert {(key["key_id"], key["status"]) for key in body} == {
            (retired.key_id, "retired"),
            (active.key_id, "active"),
            (pending.key_id, "pending"),
        }
        assert {key["algorithm"] for key in body} == {"Ed25519"}
        assert {key["public_key"] for key in body} == {
            info.public_key_b64 for info in store.all_keys()
        }
        assert "PRIVATE" not in response.text


class TestCommandLine:
    def test_keys_ensure_rotate_list_retire_remove(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MEMBERSHIP_KEY_DIR", str(tmp_path / "keys"))
        monkeypatch.delenv("MEMBERSHIP_SIGNING_KEYS", raising=False)
        runner = CliRunner()
        assert runner.invoke(cli.app, ["keys", "ensure"]).exit_code == 0
        assert runner.invoke(cli.app, ["keys", "ensure"]).exit_code == 0
        store = KeyStore(tmp_path / "keys")
        [first] = store.all_keys()
        assert runner.invoke(cli.app, ["keys", "rotate"]).exit_code == 0
        listing = runner.invoke(cli.app, ["keys", "list"])
        assert listing.exit_code == 0
        assert first.key_id in listing.output
        assert runner.invoke(cli.app, ["keys", "remove", "00000000"]).exit_code == 1
        assert runner.invoke(cli.app, ["keys", "remove", first.key_id]).exit_code == 0
        assert [info.status for info in store.all_keys()] == [KeyStatus.ACTIVE]
        new = store.all_keys()[0].key_id
        assert runner.invoke(cli.app, ["keys", "remove", new]).exit_code == 1
        assert runner.invoke(cli.app, ["keys", "retire", new]).exit_code == 0
        assert runner.invoke(cli.app, ["keys", "generate"]).exit_code == 0
        assert len(store.all_keys()) == 2

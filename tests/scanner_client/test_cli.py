"""The command line around the door: config files, inputs, and errors as sentences."""

from __future__ import annotations

import io
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import qrcode
from typer.testing import CliRunner

from scanner_client.cli import app
from scanner_client.config import Config, Paths, load, save
from scanner_client.errors import NotPaired
from scanner_client.queue import ScanStore
from scanner_client.sources import SourceUnavailable, image_codes, lines
from tests.scanner_client.helpers import card_number, qr, sync_answer

CONFIG = Config(
    server="http://127.0.0.1:9",
    device_key="dk_secret",
    device_id="5f0c8a64-4a38-4c0b-9d3e-0c4f3a1e7a10",
    device_name="Main door",
    institution_id="7c3c6a1e-2b4d-4e5f-8a9b-0c1d2e3f4a5b",
    venue_id="1b9e2a0c-1f39-4c1e-8f7e-9b1f1b1f1b1f",
)


class TestConfig:
    def test_the_device_key_file_is_private(self, tmp_path: Path) -> None:
        paths = Paths.resolve(tmp_path / "conf")
        written = save(CONFIG, paths)
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert load(paths) == CONFIG

    def test_an_explicit_config_dir_also_holds_the_queue(self, tmp_path: Path) -> None:
        paths = Paths.resolve(tmp_path)
        assert paths.queue_file.parent == tmp_path
        assert Paths.resolve(tmp_path, tmp_path / "data").queue_file.parent == tmp_path / "data"

    def test_not_paired(self, tmp_path: Path) -> None:
        with pytest.raises(NotPaired):
            load(Paths.resolve(tmp_path))

    def test_commands_need_pairing_and_say_so(self, tmp_path: Path) -> None:
        for command in ("status", "sync", "upload"):
            result = CliRunner().invoke(app, ["--config-dir", str(tmp_path), command])
            assert result.exit_code == 1
            assert "Traceback" not in result.output

    def test_environment_override(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        save(CONFIG, Paths.resolve(tmp_path))
        monkeypatch.setenv("MEMBERSHIP_SCAN_CONFIG_DIR", str(tmp_path))
        result = CliRunner().invoke(app, ["status", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["queue_file"] == str(tmp_path / "scans.sqlite3")


class TestStatusAndUpload:
    def test_status_reports_queue_sync_skew_and_keys(self, tmp_path: Path) -> None:
        paths = Paths.resolve(tmp_path)
        save(CONFIG, paths)
        store = ScanStore(paths.queue_file)
        try:
            store.apply_sync(sync_answer(cursor=4))
            store.add(client_scan_id="a", code="X", scanned_at=datetime.now(UTC))
        finally:
            store.close()
        result = CliRunner().invoke(app, ["--config-dir", str(tmp_path), "status", "--json"])
        assert result.exit_code == 0, result.output
        facts = json.loads(result.output)
        assert (facts["queue_length"], facts["revocation_cursor"], facts["key_ids"]) == (
            1,
            4,
            ["56475aa7"],
        )
        assert facts["last_sync"] is not None
        assert isinstance(facts["clock_skew_seconds"], float)

    def test_upload_of_an_empty_queue_needs_no_server(self, tmp_path: Path) -> None:
        save(CONFIG, Paths.resolve(tmp_path))
        result = CliRunner().invoke(app, ["--config-dir", str(tmp_path), "upload"])
        assert result.exit_code == 0, result.output

    def test_upload_without_a_server_fails_cleanly_and_keeps_the_queue(
        self, tmp_path: Path
    ) -> None:
        paths = Paths.resolve(tmp_path)
        save(CONFIG, paths)
        store = ScanStore(paths.queue_file)
        store.add(client_scan_id="a", code="X", scanned_at=datetime.now(UTC) - timedelta(hours=1))
        store.close()
        result = CliRunner().invoke(app, ["--config-dir", str(tmp_path), "upload"])
        assert result.exit_code == 1
        store = ScanStore(paths.queue_file)
        assert store.queue_length() == 1
        store.close()

    def test_pairing_with_no_server_fails_cleanly(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(
            app,
            [
                "--config-dir",
                str(tmp_path),
                "pair",
                "--server",
                "http://127.0.0.1:9",
                "--code",
                "X",
            ],
        )
        assert result.exit_code == 1
        assert not (tmp_path / "device.json").exists()


class TestSources:
    def test_lines_skip_empty_ones_and_cut_overlong_ones_once(self) -> None:
        stream = io.BytesIO(b"\n  \nABC\r\n" + b"Z" * 10_000 + b"\n\xff\xfe\nlast")
        read = list(lines(stream, max_bytes=4096))
        assert [len(text) for text in read] == [3, 4096, 2, 4]

    def test_a_qr_image_is_decoded_with_zxing(self, tmp_path: Path) -> None:
        text = qr(card_number(3))
        path = tmp_path / "card.png"
        qrcode.make(text, error_correction=qrcode.constants.ERROR_CORRECT_M).save(path)
        assert image_codes(path) == [text]

    def test_a_file_that_is_no_image(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("hello")
        with pytest.raises(SourceUnavailable):
            image_codes(path)

    def test_run_scans_the_images_and_stops(self, tmp_path: Path) -> None:
        paths = Paths.resolve(tmp_path)
        save(CONFIG, paths)
        store = ScanStore(paths.queue_file)
        store.apply_sync(sync_answer())
        store.close()
        image = tmp_path / "card.png"
        qrcode.make(qr(card_number(4))).save(image)
        result = CliRunner().invoke(
            app,
            ["--config-dir", str(tmp_path), "run", "--image", str(image), "--output", "json"],
        )
        assert result.exit_code == 0, result.output
        decisions = [
            json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")
        ]
        assert [(d["result"], d["offline"]) for d in decisions] == [("admitted", True)]

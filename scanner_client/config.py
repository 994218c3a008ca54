"""Where the device keeps its key and its queue.

The device key opens the check-in API for this venue, so the config file is created with mode
0600 (never readable by other users, not even for a moment: the mode is set at `open`) and
replaced atomically. The directories follow the platform's conventions (platformdirs); tests and
portable installs point both at one directory with `--config-dir` or the environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from scanner_client.errors import ConfigError, NotPaired

APP_NAME = "membership-scan"
CONFIG_DIR_ENV = "MEMBERSHIP_SCAN_CONFIG_DIR"
DATA_DIR_ENV = "MEMBERSHIP_SCAN_DATA_DIR"
CONFIG_FILE = "device.json"
QUEUE_FILE = "scans.sqlite3"


@dataclass(frozen=True)
class Config:
    server: str
    device_key: str
    device_id: str
    device_name: str
    institution_id: str
    venue_id: str


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path

    @classmethod
    def resolve(cls, config_dir: Path | None = None, data_dir: Path | None = None) -> Paths:
        """Explicit directories win; a chosen config dir also holds the data unless told apart."""
        if config_dir is None:
            return cls(
                config_dir=platformdirs.user_config_path(APP_NAME),
                data_dir=data_dir or platformdirs.user_data_path(APP_NAME),
            )
        return cls(config_dir=config_dir, data_dir=data_dir or config_dir)

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_FILE

    @property
    def queue_file(self) -> Path:
        return self.data_dir / QUEUE_FILE


def save(config: Config, paths: Paths) -> Path:
    """Write the config with mode 0600 from the first byte, then swap it in atomically."""
    paths.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = paths.config_file
    temporary = target.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(asdict(config), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.chmod(0o600)  # O_CREAT keeps the mode of a file left over by an earlier crash
    os.replace(temporary, target)
    return target


def load(paths: Paths) -> Config:
    try:
        raw = json.loads(paths.config_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotPaired(
            f"This device is not paired: run `membership-scan pair` ({paths.config_file})."
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read {paths.config_file}: {exc}") from exc
    try:
        return Config(**{name: str(raw[name]) for name in Config.__dataclass_fields__})
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{paths.config_file} is incomplete: pair the device again.") from exc

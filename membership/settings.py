"""Configuration of the service.

One `Settings` object is built at the edge (CLI, app factory, tests) and passed in; nothing reads
the environment at import time, so tests and several apps in one process never share state.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/membership.sqlite3"


class Settings(BaseSettings):
    """Every setting of the service; env vars are `MEMBERSHIP_<NAME>`, also read from `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="MEMBERSHIP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    database_echo: bool = False
    # Connections each worker keeps open, and how many more it may open under a burst. A door rush
    # at concurrency above pool + overflow waits for a connection; above the pool alone it opens
    # and closes connections, each preparing its statements again, so size the pool to the
    # concurrency a worker really sees.
    database_pool_size: int = Field(default=20, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    base_url: str = "http://127.0.0.1:8000"
    programme_code: str = Field(default="MK", min_length=1, max_length=8)
    programme_name: str = "Museum Card"
    programme_timezone: str = "Europe/Amsterdam"
    default_currency: str = Field(default="EUR", min_length=3, max_length=3)
    key_dir: Path = Path("./var/keys")
    # PEM Ed25519 private keys, oldest first; when set, keys come from here instead of key_dir.
    signing_keys: SecretStr | None = None
    photo_dir: Path = Path("./var/photos")
    token_ttl_hours: int = Field(default=12, ge=1, le=24 * 90)
    suppression_k: int = Field(default=10, ge=1)
    # Days a visit keeps its member and card links (membership/retention.py). More than a
    # temporary card's 31 days (cards.TEMPORARY_DAYS): the door counts its visits by card.
    retention_days: int = Field(default=3 * 365, ge=32)
    # Keys the visitor ids of the visit export (docs/reports.md, "Export"): changing it changes
    # every id, so set it once per deployment. Unset, only SQLite (the embedded development
    # database) falls back to a fixed development key; on PostgreSQL the export refuses to run.
    export_id_secret: SecretStr | None = Field(default=None, min_length=32)

    payment_provider: str = Field(default="local", pattern="^(local|stripe)$")
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Museum Card <no-reply@example.org>"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

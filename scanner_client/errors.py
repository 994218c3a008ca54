"""The client's exception tree, after httpx: catch `ScannerError` for all, or one branch.

A door refusal is never an exception: it is a `Decision`. Exceptions are for the client's own
trouble (not paired, server unreachable, key revoked), and `ServerUnavailable` is the one the
door loop expects every day: it means "decide offline".
"""

from __future__ import annotations


class ScannerError(Exception):
    """Base of every error the scanner client raises on purpose."""


class ConfigError(ScannerError):
    """The local configuration is missing or unreadable."""


class NotPaired(ConfigError):
    """No device key yet: run `membership-scan pair` first."""


class ServerUnavailable(ScannerError):
    """No usable answer in time (refused, timed out, 5xx): the door decides offline."""


class ServerRejected(ScannerError):
    """The server answered with a problem document; `code` is its stable type slug."""

    def __init__(self, status: int, code: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {code}" + (f": {detail}" if detail else ""))
        self.status = status
        self.code = code
        self.detail = detail


class DeviceKeyRejected(ServerRejected):
    """401: the device was revoked or re-paired elsewhere; scanning online must stop."""


class PairingFailed(ServerRejected):
    """The pairing code is unknown, used or expired."""


class NotSynced(ScannerError):
    """The device has never synced keys, so it cannot check a code offline."""

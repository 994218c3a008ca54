"""The door decision when the server cannot be asked: a pure function over what the last sync
brought and what this device itself admitted.

It follows the server's order so the doorman sees the same reason either way: the code (its
signature, validity date and the revocation list), the product accepted here, anti-passback,
then re-entry. What it cannot know it does not guess: scans at other doors are unknown to it
(the server reconciles them when the queue is uploaded), and a typed number carries no signed
facts, so offline it is refused and the doorman asks for the QR code.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scanner_client import codes
from scanner_client.client import Decision, Holder, Result
from scanner_client.queue import SyncedState

# Door reasons shared with the server (stable codes, see the check-in API).
OK = "ok"
REENTRY = "reentry"
ALREADY_USED = "already_used"
EXPIRED = "expired"
BLOCKED = "blocked"
REPLACED = "replaced"
NOT_ACCEPTED_HERE = "not_accepted_here"
INVALID_CODE = "invalid_code"
# The device's own reasons: it cannot decide without data it does not have.
NOT_SYNCED = "not_synced"
NEEDS_NETWORK = "needs_network"

_VERIFICATION_REASONS = {
    codes.Reason.EXPIRED: EXPIRED,
    codes.Reason.OLD_VERSION: REPLACED,
}
# The revocation feed says why a card was revoked; the door shows the server's word for it.
_REVOCATION_REASONS = {"blocked": BLOCKED, "expired": EXPIRED}

Admissions = Callable[[str, datetime], Sequence[datetime]]
"""(card number, since) -> scan times of this device's admissions of that card since then."""


@dataclass(frozen=True)
class Rules:
    """The synced state in the form the decision needs; built once per sync, not per scan."""

    programme: str
    keys: Mapping[str, Ed25519PublicKey]
    products: Mapping[str, str]
    timezone: ZoneInfo
    anti_passback: timedelta

    @classmethod
    def from_state(cls, state: SyncedState) -> Rules | None:
        """None until the device has synced: without keys no code can be checked."""
        if not state.synced or state.programme is None:
            return None
        keys: dict[str, Ed25519PublicKey] = {}
        for public_key in (state.keys or {}).values():
            try:
                key_id, key = codes.load_public_key(public_key)
            except (ValueError, binascii.Error):
                continue  # a key this client cannot read verifies nothing; the others still do
            keys[key_id] = key
        return cls(
            programme=state.programme,
            keys=keys,
            products=dict(state.products or {}),
            timezone=ZoneInfo(state.timezone),
            anti_passback=timedelta(minutes=state.anti_passback_minutes),
        )


def decide(
    text: str,
    *,
    client_scan_id: str,
    scanned_at: datetime,
    rules: Rules | None,
    revocations: Mapping[str, codes.Revocation],
    admissions: Admissions,
) -> Decision:
    """Admit, re-admit or refuse one scan with what the device knows; never raises."""

    def refuse(
        reason: str, card_number: str | None = None, holder: Holder | None = None
    ) -> Decision:
        return Decision(
            client_scan_id=client_scan_id,
            result=Result.REFUSED,
            reason=reason,
            offline=True,
            scanned_at=scanned_at,
            card_number=card_number,
            holder=holder,
        )

    typed = codes.typed_card_number(text)
    if typed is not None:
        if not codes.luhn_valid(typed):
            return refuse(INVALID_CODE)
        entry = revocations.get(typed)
        if entry is not None and entry.revoked:
            return refuse(_REVOCATION_REASONS.get(entry.reason, REPLACED), typed)
        return refuse(NEEDS_NETWORK, typed)
    if rules is None:
        return refuse(NOT_SYNCED)

    local_day = scanned_at.astimezone(rules.timezone).date()
    verification = codes.verify(
        text,
        keys=rules.keys,
        programme=rules.programme,
        today=local_day,
        revocations=revocations,
    )
    code = verification.code
    if code is None:
        return refuse(INVALID_CODE)
    holder = Holder(
        name=None,
        product=rules.products.get(code.product_code, code.product_code),
        product_code=code.product_code,
        valid_until=code.valid_until,
        card_number=codes.grouped(code.card_number),
    )
    if verification.reason is codes.Reason.REVOKED:
        entry = revocations[code.card_number]
        return refuse(_REVOCATION_REASONS.get(entry.reason, REPLACED), code.card_number, holder)
    if verification.reason is not None:
        reason = _VERIFICATION_REASONS.get(verification.reason, INVALID_CODE)
        return refuse(reason, code.card_number, holder)
    if code.product_code not in rules.products:
        return refuse(NOT_ACCEPTED_HERE, code.card_number, holder)

    day_start = datetime.combine(local_day, time(), tzinfo=rules.timezone)
    earlier = admissions(code.card_number, min(day_start, scanned_at - rules.anti_passback))
    # Either direction, as on the server: a clock set back must not reopen the window.
    if any(abs(scanned_at - moment) < rules.anti_passback for moment in earlier):
        return refuse(ALREADY_USED, code.card_number, holder)
    today = [m for m in earlier if m.astimezone(rules.timezone).date() == local_day]
    return Decision(
        client_scan_id=client_scan_id,
        result=Result.REENTRY if today else Result.ADMITTED,
        reason=REENTRY if today else OK,
        counted=not today,
        offline=True,
        scanned_at=scanned_at,
        visits_today=len(today) + 1,
        holder=holder,
        card_number=code.card_number,
    )

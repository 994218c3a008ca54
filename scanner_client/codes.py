"""The card QR code, read and verified from `docs/qr-format.md` alone.

This is a second, independent implementation of the format: the client may not import the
server's, and writing it from the document is the proof that the document suffices for third
parties. `tests/scanner_client/test_codes.py` checks it against the server's on many codes.

`verify` never raises on its input: whatever is held under the scanner gets a `Verification`
with a stable reason, in the order the format document fixes.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT_VERSION = 0x01
FLAG_TEMPORARY = 0x01
EPOCH = date(2000, 1, 1)
SIGNATURE_LENGTH = 64
CARD_NUMBER_LENGTH = 12
_HEADER_LENGTH = 15  # version 1, flags 1, key id 4, card number 5, card version 2, valid until 2
_MIN_LENGTH = _HEADER_LENGTH + 2 + 2 + SIGNATURE_LENGTH
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_VALUES = {char: index for index, char in enumerate(_ALPHABET)}
_TYPED = re.compile(r"^[0-9 \-]{1,40}$")
_SEPARATORS = re.compile(r"[ \-]+")


class Reason(enum.StrEnum):
    """The format's refusal reasons; their names and order come from the format document."""

    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    UNSUPPORTED_VERSION = "unsupported_version"
    FOREIGN_PROGRAMME = "foreign_programme"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OLD_VERSION = "old_version"


@dataclass(frozen=True)
class CardCode:
    programme: str
    card_number: str
    card_version: int
    valid_until: date
    product_code: str
    temporary: bool


@dataclass(frozen=True)
class Revocation:
    """The latest revocation-feed entry for one card number."""

    min_version: int
    revoked: bool
    reason: str = ""


@dataclass(frozen=True)
class Verification:
    code: CardCode | None
    reason: Reason | None
    key_id: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


def key_id_of(raw_public_key: bytes) -> str:
    """The format's key id: the first 4 bytes of SHA-256 of the raw public key, as hex."""
    return hashlib.sha256(raw_public_key).digest()[:4].hex()


def load_public_key(public_key_b64: str) -> tuple[str, Ed25519PublicKey]:
    """A key as `GET /v1/keys` lists it (raw 32 bytes, standard base64), with its derived id.

    The id is computed here rather than trusted from the listing, so a key id can never name
    a different key than the one it was derived from.
    """
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("public key is not base64") from exc
    return key_id_of(raw), Ed25519PublicKey.from_public_bytes(raw)


def base32_decode(text: str) -> bytes | None:
    """RFC 4648 base32 without padding, lenient at the end (see the format's step 1).

    An incomplete last character is dropped so that a cut-off code reads as truncated rather
    than malformed. None when a character is outside the alphabet.
    """
    buffer = 0
    bits = 0
    out = bytearray()
    for char in text.upper():
        value = _VALUES.get(char)
        if value is None:
            return None
        buffer = (buffer << 5 | value) & 0xFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append(buffer >> bits & 0xFF)
    return bytes(out)


def luhn_valid(number: str) -> bool:
    """A 12-digit card number, first digit not 0, whose last digit is its Luhn check digit."""
    if len(number) != CARD_NUMBER_LENGTH or not (number.isascii() and number.isdigit()):
        return False
    if number[0] == "0":
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def grouped(number: str) -> str:
    """Groups of four, as printed on the card and as the server shows it."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def typed_card_number(text: str) -> str | None:
    """The digits of what a person typed ("4123 4567-8905"), or None if it is not typed digits.

    A typed number need not be valid: the caller refuses a failed check digit as an invalid
    code, just as the server does.
    """
    stripped = text.strip()
    if not _TYPED.match(stripped):
        return None
    return _SEPARATORS.sub("", stripped)


def _printable(value: bytes) -> bool:
    return all(0x20 <= byte <= 0x7E for byte in value)


def verify(
    text: str,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    programme: str,
    today: date,
    revocations: Mapping[str, Revocation] | None = None,
) -> Verification:
    """Check a scanned code offline, in the order of the format document's nine steps."""
    data = base32_decode(text.strip())
    if data is None:
        return Verification(None, Reason.MALFORMED)
    if not data:
        return Verification(None, Reason.TRUNCATED)
    if data[0] != FORMAT_VERSION:
        return Verification(None, Reason.UNSUPPORTED_VERSION)
    # Step 3. A record is 81 + P + Q bytes with P, Q >= 1: anything shorter than 83 bytes is
    # truncated whatever its length bytes say; longer ones are walked by those length bytes.
    if len(data) < _MIN_LENGTH:
        return Verification(None, Reason.TRUNCATED)
    offset = _HEADER_LENGTH
    programme_length = data[offset]
    if not 1 <= programme_length <= 8:
        return Verification(None, Reason.MALFORMED)
    programme_bytes = data[offset + 1 : offset + 1 + programme_length]
    offset += 1 + programme_length
    product_length = data[offset]
    if not 1 <= product_length <= 32:
        return Verification(None, Reason.MALFORMED)
    product_bytes = data[offset + 1 : offset + 1 + product_length]
    offset += 1 + product_length
    expected_length = offset + SIGNATURE_LENGTH
    if len(data) < expected_length:
        return Verification(None, Reason.TRUNCATED)
    if len(data) > expected_length:
        return Verification(None, Reason.MALFORMED)

    key_id = data[2:6].hex()
    # Step 4. The programme is compared as bytes: unsigned bytes prove nothing yet.
    if programme_bytes != programme.encode("ascii", "replace"):
        return Verification(None, Reason.FOREIGN_PROGRAMME, key_id)
    public_key = keys.get(key_id)
    if public_key is None:
        return Verification(None, Reason.UNKNOWN_KEY, key_id)
    try:
        public_key.verify(data[offset:], data[:offset])
    except InvalidSignature:
        return Verification(None, Reason.BAD_SIGNATURE, key_id)

    flags = data[1]
    card_number = str(int.from_bytes(data[6:11], "big")).zfill(CARD_NUMBER_LENGTH)
    if flags & ~FLAG_TEMPORARY or not luhn_valid(card_number) or not _printable(product_bytes):
        return Verification(None, Reason.MALFORMED, key_id)
    code = CardCode(
        programme=programme,
        card_number=card_number,
        card_version=int.from_bytes(data[11:13], "big"),
        valid_until=EPOCH + timedelta(days=int.from_bytes(data[13:15], "big")),
        product_code=product_bytes.decode("ascii"),
        temporary=bool(flags & FLAG_TEMPORARY),
    )
    if code.valid_until < today:
        return Verification(code, Reason.EXPIRED, key_id)
    entry = (revocations or {}).get(card_number)
    if entry is not None:
        if entry.revoked:
            return Verification(code, Reason.REVOKED, key_id)
        if code.card_version < entry.min_version:
            return Verification(code, Reason.OLD_VERSION, key_id)
    return Verification(code, None, key_id)

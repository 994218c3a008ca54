"""The signed QR payload: what a scanner checks without the network (rule 4).

A card code is a compact binary record signed with Ed25519 and written as RFC 4648 base32
without padding. Base32 uses only `A-Z2-7`, all of them QR alphanumeric-mode characters, so the
whole code fits a QR code of version 8 or lower at error correction level M; and it survives a
keyboard-wedge scanner that types it into a text field (no spaces, no punctuation to lose).
`docs/qr-format.md` documents the byte layout for third-party scanners.

Verification never raises on its input: every refusal is a `Verification` with a stable
`Reason`, because a scanner must show the visitor a clear answer whatever was held under it.
"""

from __future__ import annotations

import enum
import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from membership import card_numbers

FORMAT_VERSION = 1
EPOCH = date(2000, 1, 1)
SIGNATURE_LENGTH = 64
KEY_ID_LENGTH = 4
MAX_PROGRAMME_LENGTH = 8
MAX_PRODUCT_LENGTH = 32
FLAG_TEMPORARY = 0x01
_KNOWN_FLAGS = FLAG_TEMPORARY

# version, flags, key id, card number (uint40 as 5 bytes), card version, valid-until day
_HEADER = struct.Struct(">BB4s5sHH")
# The shortest well-formed record: header, two length bytes with one character each, signature.
MIN_LENGTH = _HEADER.size + 2 + 2 + SIGNATURE_LENGTH
_LAST_DAY = EPOCH + timedelta(days=0xFFFF)

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DECODE = {char: value for value, char in enumerate(_ALPHABET)}
_DIGITS = re.compile(f"[{_ALPHABET}]*")
_TO_BASE32HEX = str.maketrans(_ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")


class Reason(enum.StrEnum):
    """Why a code is refused; the values are stable, scanners and reports key on them."""

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
    """What a card code says about its card; the signature proves the programme said it."""

    programme: str
    card_number: str
    card_version: int
    valid_until: date
    product_code: str
    temporary: bool = False


@dataclass(frozen=True)
class RevocationStatus:
    """A scanner's latest word on one card number, from the revocation feed.

    Codes older than `min_version` were reissued; `revoked` refuses every version of the card
    (blocked, lost, replaced), until a later feed entry restores it.
    """

    min_version: int
    revoked: bool
    reason: str | None = None


@dataclass(frozen=True)
class Verification:
    code: CardCode | None
    reason: Reason | None
    key_id: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


class CodeError(ValueError):
    """A card code cannot be built from these values (an issuing bug, not a scanning event)."""


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """Derived from the key itself, so a key id can never point at two different keys."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_LENGTH].hex()


def b32encode(data: bytes) -> str:
    """RFC 4648 base32 without padding: padding `=` is not a QR alphanumeric character."""
    bits = 0
    value = 0
    out = []
    for byte in data:
        value = (value << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(_ALPHABET[(value >> bits) & 31])
    if bits:
        out.append(_ALPHABET[(value << (5 - bits)) & 31])
    return "".join(out)


def b32decode(text: str) -> bytes | None:
    """Decode leniently: a cut-off code yields its whole bytes, so truncation is reported as such.

    Returns None for a character outside the alphabet. Lower case is accepted because some
    keyboard-wedge scanners type with caps lock inverted. Every scan decodes a code here, so
    the whole groups of 8 characters (5 bytes each, ending on a byte boundary) are read as one
    base-32 integer in C (`int` reads the base32hex digits, hence the translation), and only a
    cut-off tail goes through the loop.
    """
    text = text.upper()
    if not _DIGITS.fullmatch(text):
        return None
    whole = len(text) - len(text) % 8
    head = b""
    if whole:
        number = int(text[:whole].translate(_TO_BASE32HEX), 32)
        head = number.to_bytes(whole * 5 // 8, "big")
    bits = 0
    value = 0
    out = bytearray(head)
    for char in text[whole:]:
        digit = _DECODE.get(char)
        if digit is None:
            return None
        value = ((value << 5) | digit) & 0x1FFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    return bytes(out)


def _ascii_field(value: str, limit: int, name: str) -> bytes:
    if not 1 <= len(value) <= limit or not value.isascii() or not value.isprintable():
        raise CodeError(f"{name} must be 1 to {limit} printable ASCII characters")
    return value.encode("ascii")


def signed_bytes(code: CardCode, *, key_id: str) -> bytes:
    """The record without its signature: exactly the bytes the signature covers."""
    if not card_numbers.is_valid(code.card_number):
        raise CodeError("card number is not valid")
    if not 1 <= code.card_version <= 0xFFFF:
        raise CodeError("card version must fit in 16 bits")
    if not EPOCH <= code.valid_until <= _LAST_DAY:
        raise CodeError("valid-until date out of range")
    try:
        raw_key_id = bytes.fromhex(key_id)
    except ValueError as exc:
        raise CodeError("key id must be hex") from exc
    if len(raw_key_id) != KEY_ID_LENGTH:
        raise CodeError("key id must be 4 bytes")
    programme = _ascii_field(code.programme, MAX_PROGRAMME_LENGTH, "programme")
    product = _ascii_field(code.product_code, MAX_PRODUCT_LENGTH, "product code")
    header = _HEADER.pack(
        FORMAT_VERSION,
        FLAG_TEMPORARY if code.temporary else 0,
        raw_key_id,
        int(code.card_number).to_bytes(5, "big"),
        code.card_version,
        (code.valid_until - EPOCH).days,
    )
    return header + bytes([len(programme)]) + programme + bytes([len(product)]) + product


def encode(code: CardCode, *, private_key: Ed25519PrivateKey) -> str:
    """The text that goes into the QR code."""
    body = signed_bytes(code, key_id=key_id_for(private_key.public_key()))
    return b32encode(body + private_key.sign(body))


def verify(
    text: str | bytes,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    programme: str,
    today: date,
    revocations: Mapping[str, RevocationStatus] | None = None,
) -> Verification:
    """Check a scanned code offline; never raises, whatever bytes it is given.

    The order of the checks is part of the format: structure, format version, programme and key
    id are read before the signature so that a foreign or rotated-away code gets a precise
    reason; nothing after the signature check is trusted before it passes.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return Verification(None, Reason.MALFORMED)
    data = b32decode(text.strip())
    if data is None:
        return Verification(None, Reason.MALFORMED)
    if not data:
        return Verification(None, Reason.TRUNCATED)
    if data[0] != FORMAT_VERSION:
        return Verification(None, Reason.UNSUPPORTED_VERSION)
    parsed = _parse(data)
    if isinstance(parsed, Reason):
        return Verification(None, parsed)
    code, key_id, body, signature, flags = parsed
    if code.programme != programme:
        return Verification(None, Reason.FOREIGN_PROGRAMME, key_id)
    public_key = keys.get(key_id)
    if public_key is None:
        return Verification(None, Reason.UNKNOWN_KEY, key_id)
    try:
        public_key.verify(signature, body)
    except InvalidSignature:
        return Verification(None, Reason.BAD_SIGNATURE, key_id)
    if (
        flags & ~_KNOWN_FLAGS
        or not card_numbers.is_valid(code.card_number)
        or not _printable_ascii(code.product_code)
    ):
        return Verification(None, Reason.MALFORMED, key_id)
    if code.valid_until < today:
        return Verification(code, Reason.EXPIRED, key_id)
    status = (revocations or {}).get(code.card_number)
    if status is not None:
        if status.revoked:
            return Verification(code, Reason.REVOKED, key_id)
        if code.card_version < status.min_version:
            return Verification(code, Reason.OLD_VERSION, key_id)
    return Verification(code, None, key_id)


def _printable_ascii(value: str) -> bool:
    return all(" " <= char <= "~" for char in value)


def _parse(data: bytes) -> tuple[CardCode, str, bytes, bytes, int] | Reason:
    """Split a record by its own length bytes; a record shorter than they announce is truncated."""
    if len(data) < MIN_LENGTH:
        return Reason.TRUNCATED
    _version, flags, raw_key_id, raw_number, card_version, days = _HEADER.unpack_from(data)
    offset = _HEADER.size
    fields: list[str] = []
    for limit in (MAX_PROGRAMME_LENGTH, MAX_PRODUCT_LENGTH):
        length = data[offset]
        if not 1 <= length <= limit:
            return Reason.MALFORMED
        end = offset + 1 + length
        if end >= len(data):
            return Reason.TRUNCATED
        # Latin-1 decodes any byte; whether the text is printable ASCII is checked only once
        # the signature has passed, so a flipped bit here is reported as a bad signature.
        fields.append(data[offset + 1 : end].decode("latin-1"))
        offset = end
    expected = offset + SIGNATURE_LENGTH
    if len(data) < expected:
        return Reason.TRUNCATED
    if len(data) > expected:
        return Reason.MALFORMED
    code = CardCode(
        programme=fields[0],
        card_number=str(int.from_bytes(raw_number, "big")).zfill(card_numbers.LENGTH),
        card_version=card_version,
        valid_until=EPOCH + timedelta(days=days),
        product_code=fields[1],
        temporary=bool(flags & FLAG_TEMPORARY),
    )
    return code, raw_key_id.hex(), data[:offset], data[offset:], flags

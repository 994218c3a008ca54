"""The signed QR payload: compact, and every tampered or stale code refused with its own reason."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from qrcode.constants import ERROR_CORRECT_M

from membership import card_numbers, codes
from membership.codes import CardCode, Reason, RevocationStatus

TODAY = date(2026, 11, 25)
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_ID = codes.key_id_for(PRIVATE.public_key())
KEYS = {KEY_ID: PRIVATE.public_key()}


def _code(**changes: object) -> CardCode:
    values: dict[str, object] = {
        "programme": "MK",
        "card_number": "412345678905",
        "card_version": 1,
        "valid_until": date(2027, 11, 24),
        "product_code": "ANNUAL",
    }
    values.update(changes)
    return CardCode(**values)  # type: ignore[arg-type]


def _verify(text: str | bytes, **kwargs: object) -> codes.Verification:
    options: dict[str, object] = {"keys": KEYS, "programme": "MK", "today": TODAY}
    options.update(kwargs)
    return codes.verify(text, **options)  # type: ignore[arg-type]


def _raw(text: str) -> bytearray:
    data = codes.b32decode(text)
    assert data is not None
    return bytearray(data)


class TestRoundTrip:
    def test_a_fresh_code_verifies_to_what_was_signed(self) -> None:
        code = _code(temporary=True)
        result = _verify(codes.encode(code, private_key=PRIVATE))
        assert result.valid
        assert result.reason is None
        assert result.code == code
        assert result.key_id == KEY_ID

    def test_text_is_qr_alphanumeric_only(self) -> None:
        text = codes.encode(_code(), private_key=PRIVATE)
        assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

    def test_scanner_typing_lower_case_or_trailing_newline_still_verifies(self) -> None:
        text = codes.encode(_code(), private_key=PRIVATE)
        assert _verify(text.lower() + "\r\n").valid

    @pytest.mark.parametrize(
        ("programme", "product"), [("MK", "ANNUAL"), ("MK", "Y"), ("ABCDEFGH", "P" * 32)]
    )
    def test_even_the_longest_code_fits_qr_version_8_at_level_m(
        self, programme: str, product: str
    ) -> None:
        text = codes.encode(
            _code(programme=programme, product_code=product, card_version=65535),
            private_key=PRIVATE,
        )
        qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
        qr.add_data(text)
        qr.make(fit=True)
        assert qr.version <= 8
        assert qr.data_list[0].mode == qrcode.util.MODE_ALPHA_NUM

    def test_the_signature_is_deterministic_so_a_reprint_is_identical(self) -> None:
        assert codes.encode(_code(), private_key=PRIVATE) == codes.encode(
            _code(), private_key=PRIVATE
        )

    @pytest.mark.parametrize(
        "changes",
        [
            {"card_number": "412345678906"},
            {"card_version": 0},
            {"card_version": 65536},
            {"programme": ""},
            {"programme": "TOOLONGXX"},
            {"product_code": "É"},
            {"valid_until": date(1999, 12, 31)},
        ],
    )
    def test_values_outside_the_format_are_refused_at_issue(self, changes: object) -> None:
        with pytest.raises(codes.CodeError):
            codes.encode(_code(**changes), private_key=PRIVATE)  # type: ignore[arg-type]


class TestRefusals:
    def test_a_flipped_bit_in_any_signed_field_or_the_signature(self) -> None:
        raw = _raw(codes.encode(_code(), private_key=PRIVATE))
        # Bytes 0-5 (format version, flags, key id) and 15-18 (programme, lengths) are read
        # before the signature; every other byte is guarded by the signature alone.
        lengths = {Reason.MALFORMED, Reason.TRUNCATED}
        structural = {15: lengths, 18: lengths}
        for position in range(6, len(raw)):
            for bit in range(8):
                mutated = bytearray(raw)
                mutated[position] ^= 1 << bit
                reason = _verify(codes.b32encode(bytes(mutated))).reason
                if position in (16, 17):
                    assert reason == Reason.FOREIGN_PROGRAMME, (position, bit)
                else:
                    expected = structural.get(position, {Reason.BAD_SIGNATURE})
                    assert reason in expected, (position, bit, reason)

    def test_a_flipped_flag_bit(self) -> None:
        raw = _raw(codes.encode(_code(), private_key=PRIVATE))
        raw[1] ^= 0x01
        assert _verify(codes.b32encode(bytes(raw))).reason == Reason.BAD_SIGNATURE

    def test_truncation_at_every_length(self) -> None:
        text = codes.encode(_code(), private_key=PRIVATE)
        raw = _raw(text)
        for length in range(len(raw)):
            assert _verify(codes.b32encode(bytes(raw[:length]))).reason == Reason.TRUNCATED
        for length in range(len(text) - 1):
            # Cutting the text mid-character may leave one spare byte boundary, never a pass.
            assert _verify(text[:length]).reason == Reason.TRUNCATED, length

    def test_trailing_bytes(self) -> None:
        raw = _raw(codes.encode(_code(), private_key=PRIVATE))
        assert _verify(codes.b32encode(bytes(raw) + b"\x00")).reason == Reason.MALFORMED

    def test_unknown_key_id(self) -> None:
        other = Ed25519PrivateKey.generate()
        result = _verify(codes.encode(_code(), private_key=other))
        assert result.reason == Reason.UNKNOWN_KEY
        assert result.key_id == codes.key_id_for(other.public_key())

    def test_a_key_id_pointing_at_another_key_fails_the_signature(self) -> None:
        other = Ed25519PrivateKey.generate()
        raw = _raw(codes.encode(_code(), private_key=other))
        raw[2:6] = bytes.fromhex(KEY_ID)
        assert _verify(codes.b32encode(bytes(raw))).reason == Reason.BAD_SIGNATURE

    def test_foreign_programme(self) -> None:
        text = codes.encode(_code(programme="XX"), private_key=PRIVATE)
        assert _verify(text).reason == Reason.FOREIGN_PROGRAMME

    def test_expired_from_the_day_after_valid_until(self) -> None:
        text = codes.encode(_code(valid_until=TODAY), private_key=PRIVATE)
        assert _verify(text).valid
        result = _verify(text, today=TODAY + timedelta(days=1))
        assert result.reason == Reason.EXPIRED
        assert result.code is not None

    def test_revoked(self) -> None:
        text = codes.encode(_code(card_version=3), private_key=PRIVATE)
        revoked = {"412345678905": RevocationStatus(min_version=3, revoked=True, reason="lost")}
        assert _verify(text, revocations=revoked).reason == Reason.REVOKED

    def test_old_version_after_reissue(self) -> None:
        revocations = {"412345678905": RevocationStatus(min_version=2, revoked=False)}
        old = codes.encode(_code(card_version=1), private_key=PRIVATE)
        new = codes.encode(_code(card_version=2), private_key=PRIVATE)
        assert _verify(old, revocations=revocations).reason == Reason.OLD_VERSION
        assert _verify(new, revocations=revocations).valid

    def test_revocation_of_another_card_does_not_matter(self) -> None:
        revocations = {"412345678913": RevocationStatus(min_version=9, revoked=True)}
        assert _verify(codes.encode(_code(), private_key=PRIVATE), revocations=revocations).valid

    def test_unsupported_format_version(self) -> None:
        raw = _raw(codes.encode(_code(), private_key=PRIVATE))
        raw[0] = 2
        assert _verify(codes.b32encode(bytes(raw))).reason == Reason.UNSUPPORTED_VERSION

    @pytest.mark.parametrize(
        "garbage",
        ["", "   ", "hello world", "https://example.org/", "0189", "!!!", "A", "\x00\xff", "é"],
    )
    def test_garbage_text(self, garbage: str) -> None:
        result = _verify(garbage)
        assert not result.valid
        assert result.reason in {Reason.MALFORMED, Reason.TRUNCATED, Reason.UNSUPPORTED_VERSION}

    def test_non_ascii_bytes(self) -> None:
        assert _verify(b"\xff\xfe").reason == Reason.MALFORMED


_numbers = st.integers(min_value=10**10, max_value=10**11 - 1).map(
    lambda body: str(body) + card_numbers.luhn_digit(str(body))
)
_printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
_codes = st.builds(
    CardCode,
    programme=st.just("MK"),
    card_number=_numbers,
    card_version=st.integers(min_value=1, max_value=0xFFFF),
    valid_until=st.dates(min_value=TODAY, max_value=date(2179, 1, 1)),
    product_code=_printable.filter(lambda s: len(s) <= 32),
    temporary=st.booleans(),
)


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(code=_codes)
    def test_round_trip(self, code: CardCode) -> None:
        assert _verify(codes.encode(code, private_key=PRIVATE)) == codes.Verification(
            code, None, KEY_ID
        )

    @settings(max_examples=300, deadline=None)
    @given(code=_codes, data=st.data())
    def test_any_mutation_is_refused_never_raised(
        self, code: CardCode, data: st.DataObject
    ) -> None:
        raw = _raw(codes.encode(code, private_key=PRIVATE))
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "replace"]))
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if kind == "flip":
            raw[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del raw[position:]
        elif kind == "insert":
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            replacement = data.draw(st.integers(min_value=0, max_value=255))
            if raw[position] == replacement:
                return
            raw[position] = replacement
        result = _verify(codes.b32encode(bytes(raw)))
        assert not result.valid
        assert result.reason is not None

    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=200), cut=st.integers(min_value=0), lower=st.booleans())
    def test_a_cut_off_code_decodes_to_its_whole_bytes_in_either_case(
        self, data: bytes, cut: int, lower: bool
    ) -> None:
        text = codes.b32encode(data)
        prefix = text[: cut % (len(text) + 1)]
        if lower:
            prefix = prefix.lower()
        assert codes.b32decode(prefix) == data[: len(prefix) * 5 // 8]
        # Neither `1` nor padding is a digit, wherever it stands.
        assert codes.b32decode(prefix + "=") is None
        if prefix:
            assert codes.b32decode(prefix[:-1] + "1") is None

    @settings(max_examples=300, deadline=None)
    @given(text=st.text() | st.binary().map(codes.b32encode))
    def test_arbitrary_input_never_raises(self, text: str) -> None:
        assert not _verify(text).valid


class TestDocumentation:
    def test_the_worked_example_in_the_docs_is_what_the_code_produces(self) -> None:
        page = (Path(__file__).resolve().parents[2] / "docs" / "qr-format.md").read_text()
        code = _code(card_version=2)
        text = codes.encode(code, private_key=PRIVATE)
        raw = _raw(text)
        dump = "\n".join(
            f"{offset:04x}: " + " ".join(f"{byte:02x}" for byte in raw[offset : offset + 16])
            for offset in range(0, len(raw), 16)
        )
        assert f"\n{text}\n" in page
        assert dump in page
        assert f"`{KEY_ID}`" in page
        assert _verify(text) == codes.Verification(code, None, KEY_ID)

"""The client's own QR verifier, written from docs/qr-format.md, against the server's.

If the two ever disagree, either the document or one implementation is wrong: a third-party
scanner built from the document would disagree with the server in the same way.
"""

from __future__ import annotations

import base64
import re
from datetime import date, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from membership import card_numbers
from membership import codes as reference
from scanner_client import codes

DOC = Path(__file__).resolve().parents[2] / "docs" / "qr-format.md"
TODAY = date(2026, 11, 25)
SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PUBLIC = SIGNER.public_key()
KEY_ID = reference.key_id_for(PUBLIC)


def _both(
    text: str,
    *,
    keys: bool = True,
    programme: str = "MK",
    revocations: dict[str, tuple[int, bool]] | None = None,
) -> tuple[codes.Verification, reference.Verification]:
    revoked = revocations or {}
    ours = codes.verify(
        text,
        keys={KEY_ID: PUBLIC} if keys else {},
        programme=programme,
        today=TODAY,
        revocations={n: codes.Revocation(v, r) for n, (v, r) in revoked.items()},
    )
    theirs = reference.verify(
        text,
        keys={KEY_ID: PUBLIC} if keys else {},
        programme=programme,
        today=TODAY,
        revocations={n: reference.RevocationStatus(v, r) for n, (v, r) in revoked.items()},
    )
    return ours, theirs


def _assert_agree(ours: codes.Verification, theirs: reference.Verification) -> None:
    assert (ours.reason.value if ours.reason else None) == (
        theirs.reason.value if theirs.reason else None
    )
    assert ours.key_id == theirs.key_id
    if theirs.code is None:
        assert ours.code is None
        return
    assert ours.code is not None
    assert (
        ours.code.programme,
        ours.code.card_number,
        ours.code.card_version,
        ours.code.valid_until,
        ours.code.product_code,
        ours.code.temporary,
    ) == (
        theirs.code.programme,
        theirs.code.card_number,
        theirs.code.card_version,
        theirs.code.valid_until,
        theirs.code.product_code,
        theirs.code.temporary,
    )


class TestWorkedExample:
    def test_the_documents_example_verifies_to_the_documented_card(self) -> None:
        text = DOC.read_text(encoding="utf-8")
        example = re.search(r"```\n([A-Z2-7]{100,})\n```", text)
        public_hex = re.search(r"`([0-9a-f]{64})`", text)
        assert example is not None
        assert public_hex is not None
        key_id, key = codes.load_public_key(
            base64.b64encode(bytes.fromhex(public_hex.group(1))).decode()
        )
        assert key_id == "56475aa7"
        result = codes.verify(
            example.group(1), keys={key_id: key}, programme="MK", today=date(2026, 1, 1)
        )
        assert result.valid
        assert result.code == codes.CardCode(
            programme="MK",
            card_number="412345678905",
            card_version=2,
            valid_until=date(2027, 11, 24),
            product_code="ANNUAL",
            temporary=False,
        )


card_codes = st.builds(
    reference.CardCode,
    programme=st.sampled_from(["MK", "X", "ABCDEFGH"]),
    card_number=st.integers(10**10, 10**11 - 1).map(
        lambda n: str(n) + card_numbers.luhn_digit(str(n))
    ),
    card_version=st.integers(1, 0xFFFF),
    valid_until=st.dates(date(2000, 1, 1), date(2179, 6, 5)),
    product_code=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32
    ),
    temporary=st.booleans(),
)


class TestAgreesWithTheServer:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        code=card_codes,
        cut=st.just(0) | st.integers(1, 200),
        flip=st.none() | st.integers(0, 200),
        suffix=st.sampled_from(["", "A", "AAAA", "!", " "]),
        lower=st.booleans(),
        other_key=st.booleans(),
        has_keys=st.booleans(),
        revoked=st.none() | st.tuples(st.integers(1, 0xFFFF), st.booleans()),
    )
    def test_same_reason_and_fields_for_generated_and_damaged_codes(
        self,
        code: reference.CardCode,
        cut: int,
        flip: int | None,
        suffix: str,
        lower: bool,
        other_key: bool,
        has_keys: bool,
        revoked: tuple[int, bool] | None,
    ) -> None:
        text = reference.encode(code, private_key=OTHER_SIGNER if other_key else SIGNER)
        if cut:
            text = text[: len(text) - cut % len(text)]
        if flip is not None and text:
            position = flip % len(text)
            text = text[:position] + ("B" if text[position] != "B" else "C") + text[position + 1 :]
        text += suffix
        if lower:
            text = text.lower()
        revocations = {code.card_number: revoked} if revoked else None
        _assert_agree(*_both(text, keys=has_keys, revocations=revocations))

    @settings(max_examples=150, deadline=None)
    @given(text=st.text(max_size=300))
    def test_same_reason_for_any_text(self, text: str) -> None:
        _assert_agree(*_both(text))

    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(min_size=0, max_size=200))
    def test_same_reason_for_any_record(self, data: bytes) -> None:
        _assert_agree(*_both(reference.b32encode(data)))

    def test_foreign_programme_and_expiry(self) -> None:
        expired = reference.encode(
            reference.CardCode(
                programme="MK",
                card_number=card_numbers.generate(),
                card_version=1,
                valid_until=TODAY - timedelta(days=1),
                product_code="ANNUAL",
            ),
            private_key=SIGNER,
        )
        ours, theirs = _both(expired)
        _assert_agree(ours, theirs)
        assert ours.reason is codes.Reason.EXPIRED
        ours, theirs = _both(expired, programme="NL")
        _assert_agree(ours, theirs)
        assert ours.reason is codes.Reason.FOREIGN_PROGRAMME


class TestCardNumbers:
    @settings(max_examples=200)
    @given(number=st.text(alphabet="0123456789", min_size=11, max_size=13))
    def test_luhn_agrees_with_the_server(self, number: str) -> None:
        assert codes.luhn_valid(number) == card_numbers.is_valid(number)

    def test_generated_numbers_pass(self) -> None:
        assert all(codes.luhn_valid(card_numbers.generate()) for _ in range(200))

    def test_typed_numbers_keep_their_digits(self) -> None:
        assert codes.typed_card_number(" 4123 4567-8905\n") == "412345678905"
        assert codes.typed_card_number("AEAF") is None

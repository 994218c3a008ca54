"""Every QR image and card is read back by a real decoder (zxing-cpp) to the exact payload."""

from __future__ import annotations

import io
import random
import re
from datetime import date, timedelta
from pathlib import Path

import cairosvg
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from membership import card_numbers, codes, images

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
# A spread of numbers: small and large leading digits, random ones, many different QR masks.
_bodies = random.Random(4).sample(range(10**10, 10**11), 20)
NUMBERS = [
    "100000000008",
    "999999999991",
    "412345678905",
    *(str(body) + card_numbers.luhn_digit(str(body)) for body in _bodies),
]


def _payload(number: str, *, product: str = "ANNUAL", version: int = 1) -> str:
    return codes.encode(
        codes.CardCode(
            programme="MK",
            card_number=number,
            card_version=version,
            valid_until=date(2027, 3, 31) + timedelta(days=int(number[-3:])),
            product_code=product,
            temporary=number.endswith("5"),
        ),
        private_key=KEY,
    )


def _decode(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def _face(text: str, number: str, photo: Path | None = None) -> images.CardFace:
    return images.CardFace(
        programme_name="Museum Card",
        holder_name="Anna de Vries",
        product_name="Annual card",
        valid_until=date(2027, 11, 24),
        card_number=number,
        code=text,
        photo=photo,
    )


def test_card_numbers_are_valid() -> None:
    assert all(card_numbers.is_valid(number) for number in NUMBERS)


@pytest.mark.parametrize("number", NUMBERS)
def test_png_decodes_to_the_exact_payload(number: str) -> None:
    text = _payload(number)
    png = Image.open(io.BytesIO(images.qr_png(text)))
    assert _decode(png) == [text]


@pytest.mark.parametrize("number", NUMBERS)
def test_rasterised_svg_decodes_to_the_exact_payload(number: str) -> None:
    text = _payload(number)
    png = cairosvg.svg2png(bytestring=images.qr_svg(text).encode(), output_width=480)
    assert _decode(Image.open(io.BytesIO(png))) == [text]


@pytest.mark.parametrize("module_px", [2, 3, 5])
def test_small_renders_still_decode(module_px: int) -> None:
    text = _payload(NUMBERS[3], product="P" * 32, version=65535)
    assert _decode(Image.open(io.BytesIO(images.qr_png(text, module_px=module_px)))) == [text]


def test_the_longest_payload_is_at_most_version_8() -> None:
    text = codes.encode(
        codes.CardCode(
            programme="ABCDEFGH",
            card_number=NUMBERS[0],
            card_version=65535,
            valid_until=date(2100, 1, 1),
            product_code="P" * 32,
        ),
        private_key=KEY,
    )
    assert images.qr_version(text) <= 8
    assert len(images.qr_matrix(text)) == 17 + 4 * images.qr_version(text) + 2 * images.QUIET_ZONE


class TestCard:
    @pytest.mark.parametrize("number", NUMBERS[:6])
    def test_card_image_is_cr80_at_300_dpi_and_its_qr_decodes(self, number: str) -> None:
        text = _payload(number)
        card = Image.open(io.BytesIO(images.card_png(_face(text, number))))
        assert card.size == (1011, 638)
        assert card.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert _decode(card) == [text]

    def test_card_with_a_photo_and_a_very_long_name_still_decodes(self, tmp_path: Path) -> None:
        photo = tmp_path / "photo.jpg"
        Image.new("RGB", (420, 540), (40, 40, 40)).save(photo)
        text = _payload(NUMBERS[1])
        face = images.CardFace(
            programme_name="Stichting Museumkaart Nederland en omstreken",
            holder_name="Maria Johanna Wilhelmina van den Heuvel-Oppenheimer de Graaf",
            product_name="Jongerenkaart met partnerkorting en extra lange naam",
            valid_until=date(2027, 1, 1),
            card_number=NUMBERS[1],
            code=text,
            photo=photo,
        )
        card = Image.open(io.BytesIO(images.card_png(face)))
        assert _decode(card) == [text]
        assert card.getpixel((100, 300)) == (40, 40, 40)

    def test_pdf_is_one_page_the_size_of_the_card(self) -> None:
        text = _payload(NUMBERS[2])
        pdf = images.card_pdf(_face(text, NUMBERS[2]))
        assert pdf.startswith(b"%PDF-")
        assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") == 1
        media_box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
        assert media_box is not None
        width_mm = float(media_box.group(1)) / 72 * 25.4
        height_mm = float(media_box.group(2)) / 72 * 25.4
        assert width_mm == pytest.approx(85.6, abs=0.1)
        assert height_mm == pytest.approx(54.0, abs=0.1)

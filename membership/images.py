"""What a holder shows at the door: the QR code as PNG or SVG, the card image, a printable PDF.

The QR symbol is always built the same way (level M, alphanumeric mode, smallest version, a
quiet zone of 4 modules as ISO/IEC 18004 requires), so PNG, SVG and the card all decode to the
same text. Fonts come with Pillow, so rendering needs nothing installed on the host.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont, ImageOps
from qrcode.constants import ERROR_CORRECT_M

from membership import card_numbers

QUIET_ZONE = 4
# CR80 (ID-1, 85.60 by 53.98 mm) at 300 dpi: the size card printers expect.
CARD_SIZE = (1011, 638)
CARD_DPI = 300
_BACKGROUND = (250, 248, 243)
_ACCENT = (122, 28, 48)
_INK = (28, 28, 28)
_MUTED = (96, 96, 96)


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR modules (True = dark), quiet zone included."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE)
    qr.add_data(text.upper(), optimize=0)
    qr.make(fit=True)
    return [list(row) for row in qr.get_matrix()]


def qr_version(text: str) -> int:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    qr.add_data(text.upper(), optimize=0)
    qr.make(fit=True)
    return int(qr.version)


def qr_image(text: str, *, module_px: int = 8) -> Image.Image:
    """A 1-bit image with square modules of `module_px` pixels; scaled without blurring."""
    matrix = qr_matrix(text)
    size = len(matrix)
    image = Image.new("1", (size, size), 1)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                pixels[x, y] = 0
    return image.resize((size * module_px, size * module_px), Image.Resampling.NEAREST)


def qr_png(text: str, *, module_px: int = 8) -> bytes:
    buffer = io.BytesIO()
    qr_image(text, module_px=module_px).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def qr_svg(text: str, *, module_mm: float = 0.5) -> str:
    """One path of unit squares in a viewBox measured in modules: crisp at any size.

    Runs of dark modules in a row become one rectangle, which keeps the file small.
    """
    matrix = qr_matrix(text)
    size = len(matrix)
    parts = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if not row[x]:
                x += 1
                continue
            start = x
            while x < size and row[x]:
                x += 1
            parts.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
    physical = f"{size * module_mm:g}mm"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="{physical}" height="{physical}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(parts)}"/></svg>\n'
    )


@dataclass(frozen=True)
class CardFace:
    """What is printed on a card; plain values so rendering needs no database."""

    programme_name: str
    holder_name: str
    product_name: str
    valid_until: date
    card_number: str
    code: str
    photo: Path | None = None
    temporary: bool = False


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, *, size: int, width: int) -> tuple[str, Font]:
    """Shrink, then shorten, a line so a long name never runs into the QR code."""
    while size > 18 and draw.textlength(text, font=_font(size)) > width:
        size -= 2
    font = _font(size)
    if draw.textlength(text, font=font) <= width:
        return text, font
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…", font


def _name_lines(draw: ImageDraw.ImageDraw, name: str, *, width: int) -> list[tuple[str, Font]]:
    """A long name wraps onto a second line at a space instead of shrinking out of sight."""
    font = _font(36)
    if draw.textlength(name, font=font) <= width:
        return [(name, font)]
    words = name.split()
    for split in range(len(words) - 1, 0, -1):
        first = " ".join(words[:split])
        if draw.textlength(first, font=font) <= width:
            return [(first, font), _fit(draw, " ".join(words[split:]), size=36, width=width)]
    return [_fit(draw, name, size=36, width=width)]


def card_image(face: CardFace) -> Image.Image:
    """The CR80 card at 300 dpi: photo left, text in the middle, the QR code right."""
    width, height = CARD_SIZE
    image = Image.new("RGB", CARD_SIZE, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    band = 96
    draw.rectangle((0, 0, width, band), fill=_ACCENT)
    title, font = _fit(draw, face.programme_name, size=52, width=width - 80)
    draw.text((40, band // 2), title, font=font, fill=(255, 255, 255), anchor="lm")
    if face.temporary:
        draw.text(
            (width - 40, band // 2), "TEMPORARY", font=_font(30), fill=(255, 230, 150), anchor="rm"
        )

    photo_box = (40, band + 40, 40 + 270, band + 40 + 346)
    _paste_photo(image, face.photo, photo_box)

    qr = qr_image(face.code, module_px=1)
    qr_side = 360
    # Whole pixels per module keep every module the same size, which decoders need.
    module_px = max(1, qr_side // qr.width)
    qr = qr.resize((qr.width * module_px, qr.height * module_px), Image.Resampling.NEAREST)
    qr_left = width - 40 - qr.width
    image.paste(qr.convert("RGB"), (qr_left, band + 30))

    left = photo_box[2] + 36
    text_width = qr_left - left - 20
    y = band + 48
    for line, font in _name_lines(draw, face.holder_name, width=text_width):
        draw.text((left, y), line, font=font, fill=_INK)
        y += 44
    y += 28
    for label, value in (
        ("Card", face.product_name),
        ("Valid until", face.valid_until.strftime("%d-%m-%Y")),
    ):
        draw.text((left, y), label.upper(), font=_font(22), fill=_MUTED)
        line, font = _fit(draw, value, size=34, width=text_width)
        draw.text((left, y + 28), line, font=font, fill=_INK)
        y += 92
    draw.text(
        (40, height - 40),
        card_numbers.display(face.card_number),
        font=_font(48),
        fill=_INK,
        anchor="ls",
    )
    return image


def _paste_photo(image: Image.Image, photo: Path | None, box: tuple[int, int, int, int]) -> None:
    size = (box[2] - box[0], box[3] - box[1])
    if photo is not None and photo.is_file():
        with Image.open(photo) as source:
            fitted = ImageOps.fit(source.convert("RGB"), size, Image.Resampling.LANCZOS)
        image.paste(fitted, box[:2])
        return
    # No photo yet (a desk card): a plain silhouette box, so the layout stays the same.
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, fill=(225, 222, 215), outline=_MUTED, width=2)
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    draw.ellipse((cx - 60, cy - 120, cx + 60, cy), fill=(200, 196, 188))
    draw.rounded_rectangle(
        (cx - 110, cy + 20, cx + 110, box[3] - 10), radius=60, fill=(200, 196, 188)
    )


def card_png(face: CardFace) -> bytes:
    buffer = io.BytesIO()
    card_image(face).save(buffer, format="PNG", dpi=(CARD_DPI, CARD_DPI))
    return buffer.getvalue()


def card_pdf(face: CardFace) -> bytes:
    """One page the size of the card, at 300 dpi, for a card printer or a home printer."""
    buffer = io.BytesIO()
    card_image(face).save(buffer, format="PDF", resolution=CARD_DPI)
    return buffer.getvalue()

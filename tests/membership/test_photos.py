"""Photo uploads: only real JPEG/PNG/WebP of sane size, cleaned, upright, passport-shaped."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership import photos
from membership.audit import Actor
from membership.models import AuditEntry
from tests.factories import create_member

ACTOR = Actor(label="desk@example.org")
RED, BLUE = (220, 20, 20), (20, 20, 220)


def _image(format: str, size: tuple[int, int] = (800, 600), **save: object) -> bytes:
    image = Image.new("RGB", size, BLUE)
    # Top half red, so the orientation of the result can be read from its pixels.
    image.paste(RED, (0, 0, size[0], size[1] // 2))
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces its size and holds almost no pixels: what a decompression bomb is."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _color(image: Image.Image, xy: tuple[int, int]) -> str:
    r, _g, b = image.convert("RGB").getpixel(xy)  # type: ignore[misc]
    return "red" if r > b else "blue"


class TestAccepted:
    @pytest.mark.parametrize("format", ["JPEG", "PNG", "WEBP"])
    def test_each_accepted_format_becomes_a_passport_shaped_jpeg(self, format: str) -> None:
        result = Image.open(io.BytesIO(photos.process(_image(format))))
        assert result.format == "JPEG"
        assert result.size == photos.STORED_SIZE

    def test_exif_and_location_are_stripped_and_orientation_honoured(self) -> None:
        exif = Image.Exif()
        exif[0x010E] = "secret-location-note"
        exif[0x0112] = 3  # upside down: the viewer rotates it by 180 degrees
        exif.get_ifd(0x8825)[2] = (52.0, 22.0, 1.0)
        data = _image("JPEG", exif=exif.tobytes())
        assert _color(Image.open(io.BytesIO(data)), (400, 10)) == "red"
        cleaned = photos.process(data)
        assert b"secret-location-note" not in cleaned
        assert b"Exif" not in cleaned
        result = Image.open(io.BytesIO(cleaned))
        assert dict(result.getexif()) == {}
        # After the 180 degree turn the red half is at the bottom.
        assert _color(result, (210, 10)) == "blue"
        assert _color(result, (210, 530)) == "red"

    def test_a_landscape_photo_is_cropped_not_squashed(self) -> None:
        result = Image.open(io.BytesIO(photos.process(_image("PNG", size=(1600, 600)))))
        assert result.size == photos.STORED_SIZE
        assert _color(result, (210, 10)) == "red"
        assert _color(result, (210, 530)) == "blue"


class TestRefused:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "empty"),
            (b"hello, this is not an image", "unsupported_format"),
            (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "unsupported_format"),
            (_image("GIF"), "unsupported_format"),
            (_image("BMP"), "unsupported_format"),
            (_image("TIFF"), "unsupported_format"),
            (_png_header_only(100_000, 100_000), "too_many_pixels"),
            (_png_header_only(13_000, 300), "too_many_pixels"),
            (_png_header_only(30_000, 30_000), "too_many_pixels"),
            (_image("PNG", size=(150, 400)), "too_small"),
            (_image("JPEG")[:400], "corrupt"),
            (_png_header_only(800, 600), "corrupt"),
        ],
        ids=[
            "empty",
            "text",
            "pdf",
            "gif",
            "bmp",
            "tiff",
            "bomb",
            "absurd-side",
            "bomb-over-pillow-limit",
            "too-small",
            "truncated-jpeg",
            "no-pixel-data",
        ],
    )
    def test_bad_files(self, data: bytes, reason: str) -> None:
        with pytest.raises(photos.InvalidPhoto) as caught:
            photos.process(data)
        assert caught.value.extensions["reason"] == reason

    def test_more_than_10_mb(self) -> None:
        data = _image("PNG") + b"\x00" * photos.MAX_BYTES
        with pytest.raises(photos.PhotoTooLarge) as caught:
            photos.process(data)
        assert caught.value.status == 413


class TestStorage:
    async def test_a_good_photo_is_stored_and_audited(
        self, session: AsyncSession, tmp_path: Path
    ) -> None:
        member = await create_member(session)
        await photos.set_photo(
            session, member_id=member.id, data=_image("WEBP"), photo_dir=tmp_path, actor=ACTOR
        )
        stored = photos.resolve(tmp_path, member.photo_path)
        assert stored is not None
        with Image.open(stored) as image:
            assert image.size == photos.STORED_SIZE
        assert member.id.hex not in str(stored)
        audit_rows = select(func.count()).where(AuditEntry.action == "member.photo")
        assert await session.scalar(audit_rows) == 1

    async def test_a_bad_photo_changes_nothing(self, session: AsyncSession, tmp_path: Path) -> None:
        member = await create_member(session)
        photo_dir = tmp_path / "photos"
        with pytest.raises(photos.InvalidPhoto):
            await photos.set_photo(
                session,
                member_id=member.id,
                data=_png_header_only(100_000, 100_000),
                photo_dir=photo_dir,
                actor=ACTOR,
            )
        assert member.photo_path is None
        assert not photo_dir.exists()
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0

    def test_a_stored_path_cannot_escape_the_photo_directory(self, tmp_path: Path) -> None:
        (tmp_path / "secret.txt").write_text("x")
        photo_dir = tmp_path / "photos"
        photo_dir.mkdir()
        assert photos.resolve(photo_dir, "../secret.txt") is None
        assert photos.resolve(photo_dir, None) is None

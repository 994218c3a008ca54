"""Holder photos: checked before decoding, cleaned of metadata, cropped to passport shape.

An upload is untrusted: the format is checked by content (never by name or header), the
dimensions are read from the header and refused before any pixel is decoded (a 50 kB file can
claim a billion pixels), and what is stored is a fresh JPEG re-encoded from pixels only, so no
EXIF (GPS location!), comments or trailing payload of the upload survive.
"""

from __future__ import annotations

import io
import secrets
import uuid
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy.ext.asyncio import AsyncSession

from membership import audit
from membership.audit import Actor
from membership.errors import InvalidValue, NotFound
from membership.models import Member

MAX_BYTES = 10 * 1024 * 1024
MAX_SIDE = 12_000
MAX_PIXELS = 50_000_000
MIN_SIDE = 200
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
# Passport photos are 35 by 45 mm; stored at 12 px/mm, plenty for a 300 dpi card.
STORED_SIZE = (420, 540)
# Faces sit above the middle of a portrait: crop a little more from the bottom than the top.
_CENTERING = (0.5, 0.4)


class InvalidPhoto(InvalidValue):
    code = "invalid-photo"
    title = "This file cannot be used as a photo"


class PhotoTooLarge(InvalidPhoto):
    code = "photo-too-large"
    title = "The photo file is larger than 10 MB"
    status = 413


def process(data: bytes) -> bytes:
    """The cleaned passport-shaped JPEG, or InvalidPhoto with a `reason` saying what is wrong."""
    if not data:
        raise InvalidPhoto("The file is empty.", reason="empty")
    if len(data) > MAX_BYTES:
        raise PhotoTooLarge(reason="too_large")
    try:
        # A bomb must be refused by our own size check below, never by decoding it first.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                _check_dimensions(image.size)
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = upright.convert("RGB")
    except InvalidPhoto:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidPhoto(
            "Upload a JPEG, PNG or WebP photo.", reason="unsupported_format"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidPhoto("The image has too many pixels.", reason="too_many_pixels") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow reports truncated and corrupt files as OSError, SyntaxError or ValueError.
        raise InvalidPhoto("The image file is damaged.", reason="corrupt") from exc
    portrait = ImageOps.fit(rgb, STORED_SIZE, Image.Resampling.LANCZOS, centering=_CENTERING)
    buffer = io.BytesIO()
    portrait.save(buffer, format="JPEG", quality=88, optimize=True)
    return buffer.getvalue()


def _check_dimensions(size: tuple[int, int]) -> None:
    width, height = size
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise InvalidPhoto("The image is too large in pixels.", reason="too_many_pixels")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidPhoto(
            f"The photo must be at least {MIN_SIDE} pixels each way.", reason="too_small"
        )


def store(photo_dir: Path, jpeg: bytes) -> str:
    """Write under a random name (never the member id: names must not be guessable).

    Returns the path relative to `photo_dir`, which is what the member row keeps.
    """
    name = secrets.token_hex(16)
    relative = Path(name[:2]) / f"{name}.jpg"
    target = photo_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(jpeg)
    return relative.as_posix()


def resolve(photo_dir: Path, relative: str | None) -> Path | None:
    """The file of a stored photo; None when there is none or the path leaves `photo_dir`."""
    if not relative:
        return None
    root = photo_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


async def set_photo(
    session: AsyncSession, *, member_id: uuid.UUID, data: bytes, photo_dir: Path, actor: Actor
) -> Member:
    """Check, clean and store a new photo for a member; a refused upload changes nothing.

    The old file is kept: if this transaction rolls back, the member row still points at it.
    """
    member = await session.get(Member, member_id)
    if member is None or member.erased_at is not None:
        raise NotFound("No such member.")
    jpeg = process(data)
    previous = member.photo_path
    member.photo_path = store(photo_dir, jpeg)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="member.photo",
        entity_type="member",
        entity_id=member.id,
        changes={"photo": ["set" if previous else None, "set"]},
    )
    return member

"""Where scans come from: a keyboard-wedge scanner or a person typing (lines on stdin), QR
images, or a camera.

A wedge scanner is a keyboard: it types the code and presses Enter. Whatever reaches stdin is
read as bytes and decoded leniently, and a line longer than any code is cut and reported once,
so binary noise or a stuck key produces refusals, never a crash or a hang.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from scanner_client.errors import ScannerError

MAX_LINE_BYTES = 4096
"""Longer than any code (the longest QR text is 194 characters); the rest of the line is dropped."""
CAMERA_REPEAT_SECONDS = 3.0
"""A card held in front of the camera is seen in every frame; it is one scan until it has been
out of sight this long."""


class SourceUnavailable(ScannerError):
    """The input asked for cannot be used here (library not installed, file unreadable)."""


def lines(stream: IO[bytes], *, max_bytes: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Non-empty lines of a byte stream, each at most `max_bytes` long, until end of input."""
    while True:
        chunk = stream.readline(max_bytes)
        if not chunk:
            return
        if len(chunk) == max_bytes and not chunk.endswith(b"\n"):
            # Swallow the rest of an overlong line so that it is one refusal, not many.
            while True:
                rest = stream.readline(max_bytes)
                if not rest or rest.endswith(b"\n"):
                    break
        text = chunk.decode("utf-8", errors="replace").strip()
        if text:
            yield text


def _zxing() -> Any:
    try:
        return importlib.import_module("zxingcpp")
    except ImportError as exc:
        raise SourceUnavailable(
            "Reading QR images needs zxing-cpp: pip install 'membership-cards[scanner-images]'."
        ) from exc


def image_codes(path: Path) -> list[str]:
    """The texts of every QR code in one image file (a photo or a screenshot of a card)."""
    from PIL import Image, UnidentifiedImageError

    zxingcpp = _zxing()
    try:
        with Image.open(path) as image:
            image.load()
            found = zxingcpp.read_barcodes(image.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise SourceUnavailable(f"Cannot read an image from {path}: {exc}") from exc
    return [str(barcode.text) for barcode in found if barcode.text]


def camera_codes(index: int = 0) -> Iterator[str]:
    """Codes seen by a camera, each once per `CAMERA_REPEAT_SECONDS` (needs OpenCV)."""
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError as exc:
        raise SourceUnavailable(
            "The camera needs OpenCV: pip install 'membership-cards[scanner-camera]'."
        ) from exc
    zxingcpp = _zxing()
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise SourceUnavailable(f"Camera {index} cannot be opened.")
    last_seen: dict[str, float] = {}
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            now = time.monotonic()
            for barcode in zxingcpp.read_barcodes(frame):
                text = str(barcode.text)
                previous = last_seen.get(text)
                last_seen[text] = now
                if text and (previous is None or now - previous >= CAMERA_REPEAT_SECONDS):
                    yield text
    finally:
        capture.release()

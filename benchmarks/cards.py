"""How fast the card parts are on this machine: verification, QR renders, card images.

Run `python benchmarks/cards.py` (or `make bench`). Each figure is the best of three timed runs
of a fixed amount of work, so a brief hiccup of the machine does not decide the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from membership import card_numbers, codes, images

KEY = Ed25519PrivateKey.generate()
KEYS = {codes.key_id_for(KEY.public_key()): KEY.public_key()}
TODAY = date(2026, 11, 25)


def _payloads(count: int) -> list[str]:
    return [
        codes.encode(
            codes.CardCode(
                programme="MK",
                card_number=card_numbers.generate(),
                card_version=1,
                valid_until=date(2027, 11, 24),
                product_code="ANNUAL",
            ),
            private_key=KEY,
        )
        for _ in range(count)
    ]


def _rate(label: str, work: Callable[[], int]) -> None:
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        done = work()
        best = max(best, done / (time.perf_counter() - started))
    print(f"{label:<36} {best:>10,.0f} /s")


def main() -> None:
    texts = _payloads(2000)

    def verify() -> int:
        for text in texts:
            assert codes.verify(text, keys=KEYS, programme="MK", today=TODAY).valid
        return len(texts)

    def qr_png() -> int:
        for text in texts[:200]:
            images.qr_png(text)
        return 200

    def qr_svg() -> int:
        for text in texts[:200]:
            images.qr_svg(text)
        return 200

    def card_png() -> int:
        for text in texts[:20]:
            face = images.CardFace(
                programme_name="Museum Card",
                holder_name="Anna de Vries",
                product_name="Annual card",
                valid_until=date(2027, 11, 24),
                card_number=card_numbers.generate(),
                code=text,
            )
            images.card_png(face)
        return 20

    _rate("signatures verified (full check)", verify)
    _rate("QR PNG renders", qr_png)
    _rate("QR SVG renders", qr_svg)
    _rate("card images (PNG, 1011x638)", card_png)


if __name__ == "__main__":
    main()

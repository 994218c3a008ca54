"""Small-cell suppression (rule 5): a count below k is withheld, never rounded or blurred.

A suppressed figure is returned as `None` together with a `suppressed` flag, so a reader can
tell "withheld" from "zero". Rounding would still leak the order of magnitude and, summed over
cells, the exact value; withholding does not.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def is_small(count: int, k: int) -> bool:
    """A cell counting 1 … k-1 visitors could single out people; zero singles out nobody."""
    return 0 < count < k


def suppress(count: int, k: int) -> int | None:
    """A cross-institution count, or None below k; zero too, as "no overlap" is also below k."""
    return None if count < k else count


def suppress_breakdown(
    cells: Mapping[Key, int], k: int, *, sort_key: Mapping[Key, str]
) -> dict[Key, int | None]:
    """Suppress the small cells of a breakdown whose total is published elsewhere.

    With the total known, one withheld cell is the total minus the others; so when exactly one
    cell is withheld, the smallest other cell (ties broken by `sort_key`) is withheld too.
    """
    result: dict[Key, int | None] = {
        key: (None if is_small(count, k) else count) for key, count in cells.items()
    }
    withheld = [key for key, value in result.items() if value is None]
    if len(withheld) == 1:
        others = sorted(
            (key for key, value in result.items() if value is not None and value > 0),
            key=lambda key: (cells[key], sort_key[key]),
        )
        if others:
            result[others[0]] = None
    return result

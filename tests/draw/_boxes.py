"""Box helpers of the vitdense.draw tests (tests/draw/test_maps.py and tests/draw/test_points.py)."""
from __future__ import annotations

import itertools


def overlapping(boxes) -> list:
    """Pairs of boxes (x0, y0, x1, y1) that share area."""
    return [(a, b) for a, b in itertools.combinations(boxes, 2)
            if min(a[2], b[2]) - max(a[0], b[0]) > 1e-6 and min(a[3], b[3]) - max(a[1], b[1]) > 1e-6]

"""Points: markers, numbered correspondences between two images, images side by side."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitdense.draw.colors import point_colors
from vitdense.draw.maps import as_rgb
from vitdense.errors import ParameterError

# --------------------------------------------------------------------------------------------
# points

@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _as_points(points: Any) -> np.ndarray:
    p = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points, float)
    if p.size == 0:
        return np.zeros((0, 2), np.float64)
    p = p.reshape(-1, 2) if p.ndim == 1 and p.size == 2 else p
    if p.ndim != 2 or p.shape[1] != 2:
        raise ParameterError(f"points must be N x 2 (y, x), got shape {p.shape}")
    return p.astype(np.float64)


def default_radius(shape: tuple[int, ...]) -> int:
    return max(5, round(0.018 * max(shape[:2])))


def draw_markers(image: Any, points: Any, colors: Any = None, labels: Sequence[str] | None = None,
                 radius: int | None = None, numbered: bool = True) -> np.ndarray:
    """Draw numbered coloured circles at ``points`` (N x 2, (y, x) pixels of ``image``).

    Marker ``i`` gets ``colors[i]`` (default :func:`point_colors`) and the text ``labels[i]``
    (default ``str(i + 1)``) in its centre. Points outside the image are skipped.
    """
    img = as_rgb(image)
    pts = _as_points(points)
    n = len(pts)
    cols = point_colors(n) if colors is None else np.asarray(colors, np.uint8).reshape(-1, 3)
    if len(cols) < n:
        raise ParameterError(f"{len(cols)} colours for {n} points")
    if labels is not None and len(labels) < n:
        raise ParameterError(f"{len(labels)} labels for {n} points")
    r = radius or default_radius(img.shape)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    font = _font(max(8, int(r * 1.2)))
    H, W = img.shape[:2]
    for i, ((y, x), c) in enumerate(zip(pts, cols)):  # one shape per point (N is small)
        if not (np.isfinite(y) and np.isfinite(x)) or not (0 <= y < H and 0 <= x < W):
            continue
        c = tuple(int(v) for v in c)
        d.ellipse([x - r, y - r, x + r, y + r], fill=c, outline=(255, 255, 255),
                  width=max(1, r // 5))
        if numbered:
            text = labels[i] if labels is not None else str(i + 1)
            lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
            d.text((x, y), text, fill=(0, 0, 0) if lum > 150 else (255, 255, 255), font=font,
                   anchor="mm")
    return np.asarray(pil, dtype=np.uint8).copy()


def side_by_side(images: Sequence[Any], gap: int = 10,
                 fill: Sequence[int] = (255, 255, 255)) -> tuple[np.ndarray, list[int]]:
    """Concatenate images horizontally (top-aligned, padded with ``fill``).

    Returns the canvas and the x offset of each image in it.
    """
    arrs = [as_rgb(im) for im in images]
    if not arrs:
        raise ParameterError("side_by_side needs at least one image")
    H = max(a.shape[0] for a in arrs)
    widths = [a.shape[1] for a in arrs]
    offsets = list(np.cumsum([0] + [w + gap for w in widths[:-1]]).astype(int))
    canvas = np.empty((H, sum(widths) + gap * (len(arrs) - 1), 3), np.uint8)
    canvas[:] = np.asarray(fill, np.uint8)
    for a, x0 in zip(arrs, offsets):
        canvas[:a.shape[0], x0:x0 + a.shape[1]] = a
    return canvas, [int(o) for o in offsets]


def draw_correspondences(image_a: Any, image_b: Any, points_a: Any, points_b: Any,
                         lines: bool = False, radius: int | None = None, gap: int = 10,
                         separate: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw matched points ``points_a[i] <-> points_b[i]`` (N x 2, (y, x)) as numbered circles.

    Pair ``i`` has the same colour and number in both images. Returns one side-by-side canvas
    (optionally with a line per pair), or with ``separate=True`` the two annotated images.
    """
    pa, pb = _as_points(points_a), _as_points(points_b)
    if len(pa) != len(pb):
        raise ParameterError(f"{len(pa)} points in image A but {len(pb)} in image B")
    a, b = as_rgb(image_a), as_rgb(image_b)
    cols = point_colors(len(pa))
    r = radius or default_radius(max(a.shape, b.shape))
    if separate:
        return draw_markers(a, pa, cols, radius=r), draw_markers(b, pb, cols, radius=r)
    canvas, (_, xb) = side_by_side([a, b], gap=gap)
    if lines and len(pa):
        pil = Image.fromarray(canvas)
        d = ImageDraw.Draw(pil)
        for (ya, xa), (yb, xb_), c in zip(pa, pb, cols):
            d.line([(xa, ya), (xb_ + xb, yb)], fill=tuple(int(v) for v in c), width=max(1, r // 4))
        canvas = np.asarray(pil, dtype=np.uint8)
    shifted = pb + np.array([0.0, xb])
    both = np.concatenate([pa, shifted], axis=0)
    labels = [str(i + 1) for i in range(len(pa))] * 2
    return draw_markers(canvas, both, np.concatenate([cols, cols]), labels=labels, radius=r)

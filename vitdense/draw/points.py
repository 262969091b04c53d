"""Points: markers, numbered correspondences between two images, images side by side."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitdense.draw.colors import point_colors
from vitdense.draw.maps import as_rgb, boxes_of, label_font, marked
from vitdense.errors import ParameterError

# --------------------------------------------------------------------------------------------
# points

def _as_points(points: Any) -> np.ndarray:
    p = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points, float)
    if p.size == 0:
        return np.zeros((0, 2), np.float64)
    p = p.reshape(-1, 2) if p.ndim == 1 and p.size == 2 else p
    if p.ndim != 2 or p.shape[1] != 2:
        raise ParameterError(f"points must be N x 2 (y, x), got shape {p.shape}")
    return p.astype(np.float64)


def default_radius(shape: tuple[int, ...]) -> int:
    """Marker radius in pixels of a picture of ``shape``: 2% of its longer side (at least 5), so
    that markers keep their size relative to the picture however large it is or is shown."""
    return max(5, round(0.02 * max(shape[:2])))


Box = tuple[float, float, float, float]          # (x0, y0, x1, y1) in pixels
#: the directions tried around a point for a label that cannot sit on it, in order (above right
#: first), as (dx, dy) steps
_AROUND = ((1, -1), (-1, -1), (1, 1), (-1, 1), (0, -1), (0, 1), (1, 0), (-1, 0))


def _overlap(a: Box, b: Box) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _dot(y: float, x: float, r: float) -> Box:
    """The box kept clear around a marked point (its dot when the label sits elsewhere)."""
    return (x - 0.6 * r, y - 0.6 * r, x + 0.6 * r, y + 0.6 * r)


def place_labels(points: Any, sizes: Sequence[tuple[float, float]], shape: tuple[int, ...],
                 radius: float, avoid: Sequence[Box] = ()) -> list[Box | None]:
    """Boxes for labels of ``sizes`` ((w, h) pixels) at ``points`` (N x 2, (y, x)) in a picture of
    ``shape``, so that no box overlaps another, an ``avoid`` box or another point's dot: a label
    sits on its point when it is free there, else at the nearest free place around it (8
    directions, one ring further out at a time, inside the picture). A label with no free place
    anywhere takes the place it overlaps least. None for points off the picture."""
    pts = _as_points(points)
    H, W = shape[:2]
    r = float(radius)
    ok = [bool(np.isfinite(y) and np.isfinite(x) and 0 <= y < H and 0 <= x < W) for y, x in pts]
    dots = [_dot(y, x, r) for (y, x), v in zip(pts, ok) if v]
    placed: list[Box] = list(avoid)
    out: list[Box | None] = []
    k_dot = 0
    for (y, x), (w, h), valid in zip(pts, sizes, ok):
        if not valid:
            out.append(None)
            continue
        others = dots[:k_dot] + dots[k_dot + 1:]
        k_dot += 1
        best, cost_best = None, np.inf
        for cx, cy in _candidates(x, y, w, h, r, max(H, W)):
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if (cx, cy) != (x, y) and (box[0] < 0 or box[1] < 0 or box[2] > W or box[3] > H):
                continue
            cost = sum(_overlap(box, b) for b in placed) + sum(_overlap(box, d) for d in others)
            if cost < cost_best:
                best, cost_best = box, cost
                if cost == 0:
                    break
        placed.append(best)
        out.append(best)
    return out


def _candidates(x: float, y: float, w: float, h: float, r: float, extent: int):
    """Label centres for a point: on it, then rings of :data:`_AROUND` further out each time."""
    yield x, y
    step_x, step_y = w / 2 + 0.8 * r, h / 2 + 0.8 * r
    for k in range(1, int(extent / min(step_x, step_y)) + 2):
        for dx, dy in _AROUND:
            yield x + dx * k * step_x, y + dy * k * step_y


def _text_color(c: tuple[int, ...]) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 150 else (255, 255, 255)


def _label_size(text: str, font: ImageFont.ImageFont, r: float) -> tuple[float, float]:
    """(w, h) of a marker's label: the circle, or a pill around a text too wide for it."""
    if not text:
        return 2.0 * r, 2.0 * r
    x0, _, x1, _ = font.getbbox(text, anchor="mm")
    return max(2.0 * r, x1 - x0 + 0.8 * r), 2.0 * r


def draw_markers(image: Any, points: Any, colors: Any = None, labels: Sequence[str] | None = None,
                 radius: int | None = None, numbered: bool = True) -> np.ndarray:
    """Draw numbered coloured circles at ``points`` (N x 2, (y, x) pixels of ``image``).

    Marker ``i`` gets ``colors[i]`` (default :func:`point_colors`) and the text ``labels[i]``
    (default ``str(i + 1)``) in its centre. Where labels would cover each other (points close
    together, or labels already on a picture this function returned), a label moves to the
    nearest free place around its point (:func:`place_labels`), joined to a dot at the point by
    a line. Points outside the image are skipped. Returns a :class:`~vitdense.draw.maps.Marked`
    picture (it records where its labels are).
    """
    avoid = boxes_of(image)
    img = as_rgb(image)
    pts = _as_points(points)
    n = len(pts)
    cols = point_colors(n) if colors is None else np.asarray(colors, np.uint8).reshape(-1, 3)
    if len(cols) < n:
        raise ParameterError(f"{len(cols)} colours for {n} points")
    if labels is not None and len(labels) < n:
        raise ParameterError(f"{len(labels)} labels for {n} points")
    r = radius or default_radius(img.shape)
    font = label_font(max(8, int(r * 1.2)))
    texts = [(labels[i] if labels is not None else str(i + 1)) if numbered else "" for i in range(n)]
    sizes = [_label_size(t, font, r) for t in texts]
    boxes = place_labels(pts, sizes, img.shape, r, avoid if numbered else ())
    if not numbered:            # no label to keep clear: every marker sits on its point
        boxes = [None if b is None else (x - r, y - r, x + r, y + r) for b, (y, x) in zip(boxes, pts)]
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    outline = max(1, r // 5)
    shown = [(i, (float(y), float(x)), tuple(int(v) for v in c), b)
             for i, ((y, x), c, b) in enumerate(zip(pts, cols, boxes)) if b is not None]
    moved = [s for s in shown if abs((s[3][0] + s[3][2]) / 2 - s[1][1]) + abs((s[3][1] + s[3][3]) / 2 - s[1][0]) > 1e-6]
    for _, (y, x), c, b in moved:             # leader lines under everything, then the dots
        end = (min(max(x, b[0]), b[2]), min(max(y, b[1]), b[3]))
        d.line([(x, y), end], fill=(255, 255, 255), width=max(1, r // 4) + 2)
        d.line([(x, y), end], fill=c, width=max(1, r // 4))
    for _, (y, x), c, _b in moved:
        q = 0.45 * r
        d.ellipse([x - q, y - q, x + q, y + q], fill=c, outline=(255, 255, 255), width=outline)
    for i, _p, c, b in shown:                 # the labels on top
        if b[2] - b[0] <= 2 * r + 1e-6:
            d.ellipse(list(b), fill=c, outline=(255, 255, 255), width=outline)
        else:
            d.rounded_rectangle(list(b), radius=r, fill=c, outline=(255, 255, 255), width=outline)
        if texts[i]:
            d.text(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), texts[i], fill=_text_color(c), font=font,
                   anchor="mm")
    dots = [_dot(y, x, r) for _, (y, x), _c, _b in moved]
    return marked(np.asarray(pil, dtype=np.uint8).copy(), [*avoid, *dots, *(s[3] for s in shown)])


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
                         separate: bool = False,
                         selected: int | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw matched points ``points_a[i] <-> points_b[i]`` (N x 2, (y, x)) as numbered circles.

    Pair ``i`` has the same colour and number in both images. Returns one side-by-side canvas
    (optionally with a line per pair), or with ``separate=True`` the two annotated images.
    ``selected``: the index of a pair whose line from A to B is drawn bold (white-cased) on the
    side-by-side canvas, with or without ``lines``.
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
    if selected is not None and not 0 <= selected < len(pa):
        raise ParameterError(f"selected={selected}: expected a pair index in [0, {len(pa)})")
    if (lines or selected is not None) and len(pa):
        pil = Image.fromarray(canvas)
        d = ImageDraw.Draw(pil)
        for i in [i for i in range(len(pa)) if lines and i != selected] + \
                 ([selected] if selected is not None else []):
            (ya, xa), (yb, xb_), c = pa[i], pb[i], tuple(int(v) for v in cols[i])
            ends = [(xa, ya), (xb_ + xb, yb)]
            if i == selected:
                d.line(ends, fill=(255, 255, 255), width=max(3, r // 2) + 4)
            d.line(ends, fill=c, width=max(3, r // 2) if i == selected else max(1, r // 4))
        canvas = np.asarray(pil, dtype=np.uint8)
    shifted = pb + np.array([0.0, xb])
    both = np.concatenate([pa, shifted], axis=0)
    labels = [str(i + 1) for i in range(len(pa))] * 2
    return draw_markers(canvas, both, np.concatenate([cols, cols]), labels=labels, radius=r)

"""Results -> pictures: numpy ``uint8`` H x W x 3 images (and plotly figures where hovering helps).

Nothing here computes a result; every function takes arrays (or the small result dataclasses of
the compute modules, read by attribute) and returns a new image. Conventions:

* images are RGB ``uint8`` arrays ``H x W x 3`` (PIL images, grey / RGBA / float arrays and paths
  are accepted as input and converted by :func:`as_rgb`);
* points are ``(y, x)`` in the pixels of the image they are drawn on (the compute modules return
  original-image pixels, i.e. the caller's image);
* maps (masks, label maps, heat maps) of another size than the image - e.g. a patch-grid map - are
  resized to the image: with the optional ``geometry`` (``vitdense.extractor.Geometry``) exactly
  by patch centres, otherwise by stretching (nearest for labels and masks, bilinear for heat);
* cluster label maps (``*_labels`` functions): values ``>= 0`` are clusters, negative values
  are background / none; label ``k`` always gets ``PALETTE[k]`` whatever image it is in;
* part maps (``*_parts`` functions, the :class:`~vitdense.part_cosegmentation.PartsResult`
  convention): ``0`` = background, ``1..K`` = parts; part ``p`` always gets ``PALETTE[p - 1]``.

Colormaps are small numpy lookup tables (no matplotlib).
"""
from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ImageError, ParameterError
from .export import png_bytes

__all__ = [
    "PALETTE", "BACKGROUND_COLOR", "as_rgb", "part_colors", "point_colors",
    "apply_colormap", "resize_map", "checkerboard", "overlay_mask", "cutout", "color_labels",
    "labels_rgba", "overlay_labels", "draw_markers", "draw_correspondences", "side_by_side",
    "heatmap_overlay", "saliency_overlay", "pca_images", "parts_figure",
    "similarity_figure", "color_parts", "parts_rgba", "overlay_parts", "draw_cosegmentation",
    "draw_parts", "draw_correspondence_result", "draw_point_match", "draw_similarity",
    "draw_pca", "draw_video_parts",
]

# --------------------------------------------------------------------------------------------
# colours

def _hex(colors: Sequence[str]) -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.uint8)


#: Fixed part / cluster palette: tab10 then tab20's light companions (part k -> PALETTE[k]).
PALETTE: np.ndarray = _hex([
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#c7c7c7",
])
#: Colour of background pixels in opaque part maps.
BACKGROUND_COLOR: tuple[int, int, int] = (20, 20, 20)

# Anchor colours of the perceptual colormaps (matplotlib's viridis / inferno / magma sampled at
# 10 evenly spaced points; turbo at 15), linearly interpolated into a 256-entry table.
_CMAP_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
                "#6ece58", "#b5de2b", "#fde725"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925",
                "#fb9b06", "#f7d13d", "#fcffa4"],
    "magma": ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d",
              "#fd9668", "#feca8d", "#fcfdbf"],
    "turbo": ["#30123b", "#4145ab", "#4675ed", "#39a2fc", "#1bcfd4", "#24eca6", "#61fc6c",
              "#a4fc3b", "#d1e834", "#f3c63a", "#fe9b2d", "#f36315", "#d93806", "#b11901",
              "#7a0402"],
    "gray": ["#000000", "#ffffff"],
}


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    """256 x 3 uint8 lookup table of colormap ``name``."""
    if name not in _CMAP_ANCHORS:
        raise ParameterError(f"unknown colormap {name!r}: expected one of {', '.join(_CMAP_ANCHORS)}")
    anchors = _hex(_CMAP_ANCHORS[name]).astype(np.float64)
    pos = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], axis=1)
    lut = np.round(lut).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def part_colors(n: int) -> np.ndarray:
    """``n x 3`` uint8 colours of labels ``0..n-1``: :data:`PALETTE`, then golden-ratio hues."""
    if n < 0:
        raise ParameterError(f"n={n} must be >= 0")
    if n <= len(PALETTE):
        return PALETTE[:n].copy()
    k = np.arange(n - len(PALETTE))
    hue = (0.13 + k * 0.618033988749895) % 1.0
    sat = 0.65 + 0.25 * (k % 2)
    val = 0.95 - 0.2 * ((k // 2) % 2)
    extra = _hsv_to_rgb(hue, sat, val)
    return np.concatenate([PALETTE, extra], axis=0)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) -> N x 3 uint8."""
    h = np.asarray(h, dtype=np.float64)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), h.shape)
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), h.shape)
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 0)
    rgb = table[i, np.arange(h.size)]
    return np.round(rgb * 255).astype(np.uint8).reshape(-1, 3)


def point_colors(n: int) -> np.ndarray:
    """``n x 3`` uint8 colours for ``n`` numbered points (distinct, saturated)."""
    if n <= 10:
        return PALETTE[:n].copy()
    hue = np.arange(n) / n
    return _hsv_to_rgb(hue, 0.85, 0.95)


def apply_colormap(values: np.ndarray, cmap: str = "viridis", vmin: float | None = None,
                   vmax: float | None = None) -> np.ndarray:
    """Map a real array (any shape S) to ``S x 3`` uint8 colours; NaN -> black.

    ``vmin``/``vmax`` default to the finite min / max of ``values``.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    lut = _lut(cmap)
    if not finite.any():
        return np.zeros(v.shape + (3,), np.uint8)
    lo = float(np.min(v[finite])) if vmin is None else float(vmin)
    hi = float(np.max(v[finite])) if vmax is None else float(vmax)
    scale = hi - lo if hi > lo else 1.0
    t = np.clip((np.where(finite, v, lo) - lo) / scale, 0.0, 1.0)
    out = lut[np.round(t * 255).astype(np.intp)]
    out[~finite] = 0
    return out


# --------------------------------------------------------------------------------------------
# images and maps

def as_rgb(image: Any) -> np.ndarray:
    """PIL / path / ndarray (H x W, H x W x 1|3|4, uint8 or float in [0, 1]) -> H x W x 3 uint8."""
    if isinstance(image, (str, Path, bytes)):
        from .images import load_image  # lazy: images.py owns decoding
        image = load_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"expected an H x W (x 1|3|4) image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        elif np.issubdtype(arr.dtype, np.floating):  # [0, 1] floats, or 0..255 when max > 1
            arr = np.nan_to_num(arr.astype(np.float64))
            scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
            arr = np.round(np.clip(arr * scale, 0.0, 255.0)).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def _nearest_resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array of any dtype by pixel-centre sampling."""
    h, w = m.shape[:2]
    H, W = size
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.intp), w - 1)
    return m[rows[:, None], cols[None, :]]


def resize_map(m: Any, size: tuple[int, int], order: str = "nearest",
               geometry: Any = None) -> np.ndarray:
    """Resize a 2-D map to ``size = (H, W)``.

    With ``geometry`` (whose ``grid`` equals the map shape and ``orig_size`` equals ``size``) the
    map is placed by patch centres (``geometry.upsample``); otherwise it is stretched.
    ``order``: ``"nearest"`` (labels, masks) or ``"bilinear"`` (real maps).
    """
    if hasattr(m, "detach"):
        m = m.detach().cpu().numpy()
    m = np.asarray(m)
    if m.ndim != 2 or m.size == 0:
        raise ParameterError(f"expected a non-empty 2-D map, got shape {m.shape}")
    if order not in ("nearest", "bilinear"):
        raise ParameterError(f"order={order!r}: expected 'nearest' or 'bilinear'")
    size = (int(size[0]), int(size[1]))
    if m.shape == size:
        return m
    if (geometry is not None and tuple(geometry.grid) == m.shape
            and tuple(geometry.orig_size) == size):
        out = np.asarray(geometry.upsample(m.astype(np.float32) if order == "bilinear" else m,
                                           order))
        return out.astype(m.dtype) if order == "nearest" else out
    if order == "nearest":
        return _nearest_resize(m, size)
    t = np.asarray(m, dtype=np.float32)
    pil = Image.fromarray(t, mode="F").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(pil, dtype=np.float32)


def _mask_to(image: np.ndarray, mask: Any, geometry: Any = None) -> np.ndarray:
    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if m.dtype != bool:
        m = m > (0.5 if np.issubdtype(m.dtype, np.floating) else 0)
    return resize_map(m, image.shape[:2], "nearest", geometry)


def _labels_to(image_shape: tuple[int, int], labels: Any, geometry: Any = None) -> np.ndarray:
    lab = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if np.issubdtype(lab.dtype, np.floating):
        lab = np.where(np.isfinite(lab), lab, -1).astype(np.int64)  # NaN = background
    return resize_map(lab.astype(np.int64), image_shape, "nearest", geometry)


def checkerboard(height: int, width: int, square: int = 12,
                 colors: tuple[int, int] = (205, 235)) -> np.ndarray:
    """``height x width x 3`` uint8 grey checkerboard (the usual 'transparent' background)."""
    if square < 1:
        raise ParameterError(f"square={square} must be >= 1")
    yy = np.arange(height)[:, None] // square
    xx = np.arange(width)[None, :] // square
    g = np.where((yy + xx) % 2 == 0, colors[0], colors[1]).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _contour(mask: np.ndarray, width: int) -> np.ndarray:
    """Inner boundary (``width`` pixels) of a boolean mask."""
    import cv2

    m8 = mask.astype(np.uint8)
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    eroded = cv2.erode(m8, k, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return mask & (eroded == 0)


def _label_edges(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a change of label (boolean H x W)."""
    import cv2

    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    if width > 1:
        k = np.ones((width, width), np.uint8)
        edge = cv2.dilate(edge.astype(np.uint8), k) > 0
    return edge


def _blend(base: np.ndarray, color: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    out = base.astype(np.float32) * (1 - a) + np.asarray(color, np.float32) * a
    return np.round(out).astype(np.uint8)


def overlay_mask(image: Any, mask: Any, color: Sequence[int] = (255, 40, 40), alpha: float = 0.45,
                 contour: bool = True, contour_color: Sequence[int] | None = None,
                 contour_width: int | None = None, geometry: Any = None) -> np.ndarray:
    """Tint the pixels of ``mask`` (H x W bool, or a grid map) with ``color`` and outline it.

    Pixels outside the mask (and off its contour) are returned unchanged.
    """
    img = as_rgb(image)
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha={alpha} must be in [0, 1]")
    m = _mask_to(img, mask, geometry)
    out = img.copy()
    out[m] = _blend(img[m], color, alpha)
    if contour and m.any():
        w = contour_width or max(1, round(max(img.shape[:2]) / 250))
        edge = _contour(m, w)
        out[edge] = np.asarray(contour_color if contour_color is not None else color, np.uint8)
    return out


def cutout(image: Any, mask: Any, square: int | None = None, geometry: Any = None) -> np.ndarray:
    """The masked object on a checkerboard (pixels outside ``mask`` replaced by the board)."""
    img = as_rgb(image)
    m = _mask_to(img, mask, geometry)
    sq = square or max(4, round(max(img.shape[:2]) / 40))
    board = checkerboard(img.shape[0], img.shape[1], sq)
    return np.where(m[..., None], img, board)


def color_labels(labels: Any, num_labels: int | None = None,
                 background: Sequence[int] = BACKGROUND_COLOR,
                 size: tuple[int, int] | None = None, geometry: Any = None) -> np.ndarray:
    """Label map (ints; negative / NaN = background) -> ``H x W x 3`` uint8 with the fixed palette.

    ``size`` resizes (nearest) the map first. Label ``k`` is ``part_colors(...)[k]`` always.
    """
    lab = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if lab.ndim != 2:
        raise ParameterError(f"expected a 2-D label map, got shape {lab.shape}")
    lab = _labels_to(size if size is not None else lab.shape, lab, geometry)
    top = int(lab.max()) + 1 if lab.size and lab.max() >= 0 else 0
    n = max(top, num_labels or 0)
    lut = np.concatenate([part_colors(n), np.asarray(background, np.uint8)[None]], axis=0)
    idx = np.where(lab >= 0, lab, n)
    return lut[idx]


def labels_rgba(labels: Any, num_labels: int | None = None, alpha: int = 255,
                size: tuple[int, int] | None = None, geometry: Any = None) -> np.ndarray:
    """Label map -> ``H x W x 4`` uint8: palette colours, background fully transparent."""
    rgb = color_labels(labels, num_labels, size=size, geometry=geometry)
    lab = _labels_to(rgb.shape[:2], np.asarray(labels) if not hasattr(labels, "detach")
                     else labels, geometry)
    a = np.where(lab >= 0, np.uint8(alpha), np.uint8(0))
    return np.concatenate([rgb, a[..., None]], axis=2)


def overlay_labels(image: Any, labels: Any, alpha: float = 0.55, num_labels: int | None = None,
                   background: str = "dim", edges: bool = True, geometry: Any = None) -> np.ndarray:
    """Blend a part / cluster label map over ``image``.

    ``background``: ``"keep"`` (background pixels unchanged), ``"dim"`` (darkened) or
    ``"dark"`` (:data:`BACKGROUND_COLOR`). ``edges`` outlines the label boundaries in white.
    """
    if background not in ("keep", "dim", "dark"):
        raise ParameterError(f"background={background!r}: expected 'keep', 'dim' or 'dark'")
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha={alpha} must be in [0, 1]")
    img = as_rgb(image)
    lab = _labels_to(img.shape[:2], labels, geometry)
    colors = color_labels(lab, num_labels)
    fg = lab >= 0
    out = img.copy()
    out[fg] = _blend(img[fg], colors[fg], alpha)
    if background == "dim":
        out[~fg] = (img[~fg].astype(np.uint16) * 2 // 5).astype(np.uint8)
    elif background == "dark":
        out[~fg] = np.asarray(BACKGROUND_COLOR, np.uint8)
    if edges:
        e = _label_edges(lab, max(1, round(max(img.shape[:2]) / 300)))
        out[e & fg] = 255
    return out


def _parts_as_labels(image_shape: tuple[int, int] | None, part_map: Any, geometry: Any = None) -> np.ndarray:
    """Part map (0 = background, 1..K; NaN = background) -> cluster labels (-1.., 0..K-1)."""
    pm = part_map.detach().cpu().numpy() if hasattr(part_map, "detach") else np.asarray(part_map)
    if pm.ndim != 2:
        raise ParameterError(f"expected a 2-D part map, got shape {pm.shape}")
    return _labels_to(image_shape if image_shape is not None else pm.shape, pm, geometry) - 1


def color_parts(part_map: Any, num_parts: int | None = None,
                background: Sequence[int] = BACKGROUND_COLOR, size: tuple[int, int] | None = None,
                geometry: Any = None) -> np.ndarray:
    """Part map (0 = background, 1..K) -> ``H x W x 3`` uint8; part ``p`` is ``PALETTE[p - 1]``."""
    return color_labels(_parts_as_labels(size, part_map, geometry), num_parts, background)


def parts_rgba(part_map: Any, num_parts: int | None = None, alpha: int = 255,
               size: tuple[int, int] | None = None, geometry: Any = None) -> np.ndarray:
    """Part map -> ``H x W x 4`` uint8: palette colours, background fully transparent."""
    return labels_rgba(_parts_as_labels(size, part_map, geometry), num_parts, alpha)


def overlay_parts(image: Any, part_map: Any, alpha: float = 0.55, num_parts: int | None = None,
                  background: str = "dim", edges: bool = True, geometry: Any = None) -> np.ndarray:
    """:func:`overlay_labels` for a part map (0 = background, 1..K)."""
    img = as_rgb(image)
    return overlay_labels(img, _parts_as_labels(img.shape[:2], part_map, geometry), alpha, num_parts,
                          background, edges)


def highlight_parts(image: Any, part_map: Any, num_parts: int | None = None, shown: Sequence[int] | None = None,
                    highlight: int | None = None, alpha: float = 0.55) -> np.ndarray:
    """:func:`overlay_parts` with some parts hidden (``shown``: the part ids drawn; None = all) and
    one part ``highlight``-ed: every other part is drawn like the background (dimmed)."""
    pm = np.asarray(part_map).copy()
    if shown is not None:
        pm[~np.isin(pm, np.asarray(list(shown), dtype=pm.dtype))] = 0
    if highlight:
        pm[pm != highlight] = 0
    return overlay_parts(image, pm, alpha, num_parts)


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


def _default_radius(shape: tuple[int, ...]) -> int:
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
    r = radius or _default_radius(img.shape)
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
    r = radius or _default_radius(max(a.shape, b.shape))
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


# --------------------------------------------------------------------------------------------
# heat maps, saliency, PCA

def heatmap_overlay(image: Any, heat: Any, alpha: float = 0.55, cmap: str = "inferno",
                    vmin: float | None = None, vmax: float | None = None,
                    geometry: Any = None) -> np.ndarray:
    """Colour a real map (grid or full size) with ``cmap`` and blend it over ``image``."""
    img = as_rgb(image)
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha={alpha} must be in [0, 1]")
    h = heat.detach().cpu().float().numpy() if hasattr(heat, "detach") else np.asarray(heat)
    h = resize_map(np.asarray(h, np.float32), img.shape[:2], "bilinear", geometry)
    return _blend(img, apply_colormap(h, cmap, vmin, vmax), alpha)


def saliency_overlay(image: Any, saliency: Any, alpha: float = 0.6, cmap: str = "viridis",
                     geometry: Any = None) -> np.ndarray:
    """Saliency map in [0, 1] (grid or full size) blended over ``image`` (fixed 0..1 scale)."""
    return heatmap_overlay(image, saliency, alpha, cmap, 0.0, 1.0, geometry)


def pca_images(rgb_maps: Iterable[Any], geometries: Sequence[Any] | None = None,
               order: str = "nearest") -> list[np.ndarray]:
    """PCA colour maps (each h x w x 3, floats in [0, 1] or uint8) -> uint8 images.

    With ``geometries`` each map is placed on its original image by patch centres
    (``Geometry.upsample``); ``order``: "nearest" keeps the patch look, "bilinear" smooths.
    """
    if order not in ("nearest", "bilinear"):
        raise ParameterError(f"order={order!r}: expected 'nearest' or 'bilinear'")
    out = []
    for i, m in enumerate(rgb_maps):
        arr = np.asarray(m)
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ParameterError(f"PCA map {i} has shape {arr.shape}: expected h x w x 3")
        geo = geometries[i] if geometries is not None else None
        if geo is not None and tuple(geo.grid) == arr.shape[:2]:
            arr = np.asarray(geo.upsample(arr, mode=order), np.float32)
        out.append(np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8))
    return out


# --------------------------------------------------------------------------------------------
# plotly figures

def _png_uri(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img, compress_level=6)).decode("ascii")


def _hover_grid(H: int, W: int, max_side: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    s = min(1.0, max_side / max(H, W))
    h, w = max(1, round(H * s)), max(1, round(W * s))
    ys = (np.arange(h) + 0.5) * H / h - 0.5
    xs = (np.arange(w) + 0.5) * W / w - 0.5
    return ys, xs, (h, w)


def _image_figure(img: np.ndarray, title: str | None, max_side: int = 1024):
    """Figure showing ``img`` in its own pixel coordinates (downscaled for display above
    ``max_side`` pixels; axes stay in original pixels)."""
    import plotly.graph_objects as go

    H, W = img.shape[:2]
    shown, s = img, 1.0
    if max(H, W) > max_side:
        s = max(H, W) / max_side
        shown = np.asarray(Image.fromarray(img).resize((max(1, round(W / s)), max(1, round(H / s))),
                                                       Image.BILINEAR))
        s = W / shown.shape[1]
    fig = go.Figure(go.Image(source=_png_uri(shown), x0=(s - 1) / 2, y0=(s - 1) / 2, dx=s, dy=s,
                             hoverinfo="skip"))
    fig.update_layout(title=title, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      xaxis=dict(visible=False, range=[-0.5, W - 0.5]),
                      yaxis=dict(visible=False, range=[H - 0.5, -0.5], scaleanchor="x"),
                      plot_bgcolor="white")
    return fig


def parts_figure(image: Any, part_map: Any, alpha: float = 0.55, num_parts: int | None = None,
                 names: Sequence[str] | None = None, title: str | None = None,
                 hover_max_side: int = 160, geometry: Any = None):
    """Plotly figure of a part overlay (0 = background, 1..K); hovering shows ``part p``
    (or ``names[p - 1]``) and the pixel. The hover layer is a transparent heat map of at most
    ``hover_max_side`` cells per side."""
    import plotly.graph_objects as go

    img = as_rgb(image)
    H, W = img.shape[:2]
    lab = _parts_as_labels((H, W), part_map, geometry)        # -1 background, 0..K-1
    fig = _image_figure(overlay_labels(img, lab, alpha, num_parts), title)
    ys, xs, (h, w) = _hover_grid(H, W, hover_max_side)
    small = _nearest_resize(lab, (h, w))
    n = max(int(lab.max()) + 1, num_parts or 0, 1)
    names = list(names) if names is not None else [f"part {k + 1}" for k in range(n)]
    if len(names) < n:
        raise ParameterError(f"{len(names)} names for {n} parts")
    text = np.asarray(names[:n] + ["background"], dtype=object)
    txt = text[np.where(small >= 0, small, n)]
    fig.add_trace(go.Heatmap(z=small + 1, x=xs, y=ys, text=txt, showscale=False, opacity=0,
                             hovertemplate="%{text}<br>y=%{y:.0f}, x=%{x:.0f}<extra></extra>",
                             colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]]))
    return fig


def similarity_figure(image: Any, similarity: Any, point: Sequence[float] | None = None,
                      alpha: float = 0.55, cmap: str = "inferno", vmin: float | None = None,
                      vmax: float | None = None, title: str | None = None,
                      hover_max_side: int = 160, geometry: Any = None):
    """Plotly figure of a similarity map over ``image``; hovering shows the similarity value.

    ``point`` (y, x) marks the query pixel (only meaningful when it lies in this image).
    """
    import plotly.graph_objects as go

    img = as_rgb(image)
    H, W = img.shape[:2]
    s = similarity.detach().cpu().float().numpy() if hasattr(similarity, "detach") else similarity
    full = resize_map(np.asarray(s, np.float32), (H, W), "bilinear", geometry)
    shown = heatmap_overlay(img, full, alpha, cmap, vmin, vmax)
    if point is not None:
        shown = draw_markers(shown, [point], [(0, 255, 255)], numbered=False)
    fig = _image_figure(shown, title)
    ys, xs, (h, w) = _hover_grid(H, W, hover_max_side)
    rows = np.clip(np.round(ys).astype(int), 0, H - 1)
    cols = np.clip(np.round(xs).astype(int), 0, W - 1)
    z = full[rows[:, None], cols[None, :]]
    fig.add_trace(go.Heatmap(z=z, x=xs, y=ys, showscale=False, opacity=0,
                             hovertemplate="similarity %{z:.3f}<br>y=%{y:.0f}, x=%{x:.0f}"
                                           "<extra></extra>",
                             colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]]))
    return fig


# --------------------------------------------------------------------------------------------
# whole results (read by attribute; see the compute modules' dataclasses)

def draw_cosegmentation(images: Sequence[Any], result: Any, color: Sequence[int] = (255, 40, 40),
                        alpha: float = 0.45) -> list[np.ndarray]:
    """A :class:`~vitdense.cosegmentation.CosegResult` -> one mask overlay per image."""
    if len(images) != len(result.masks):
        raise ParameterError(f"{len(images)} images for a result of {len(result.masks)}")
    return [overlay_mask(im, m, color, alpha) for im, m in zip(images, result.masks)]


def draw_parts(images: Sequence[Any], result: Any, alpha: float = 0.55,
               background: str = "dim") -> list[np.ndarray]:
    """A :class:`~vitdense.part_cosegmentation.PartsResult` -> one part overlay per image
    (part ``p`` has the same colour in every image)."""
    if len(images) != len(result.part_maps):
        raise ParameterError(f"{len(images)} images for a result of {len(result.part_maps)}")
    return [overlay_parts(im, pm, alpha, result.num_parts, background)
            for im, pm in zip(images, result.part_maps)]


def draw_correspondence_result(image1: Any, image2: Any, result: Any, lines: bool = True,
                               radius: int | None = None, separate: bool = False):
    """A :class:`~vitdense.correspondences.Correspondences` -> side-by-side canvas (or two images)."""
    return draw_correspondences(image1, image2, result.points1, result.points2, lines=lines,
                                radius=radius, separate=separate)


def draw_point_match(image1: Any, image2: Any, matches: Sequence[Any], heatmap: bool = True,
                     alpha: float = 0.5, radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Click-to-correspond: a list of :class:`~vitdense.correspondences.PointMatch` -> the two
    images with marker ``i`` (own colour, number ``i + 1``) at the clicked cell and at its match.

    With ``heatmap`` the last match's similarity map is blended over its target image.
    """
    a, b = as_rgb(image1), as_rgb(image2)
    if heatmap and matches:
        last = matches[-1]
        m = last.upsampled_map()
        if last.reverse:
            a = heatmap_overlay(a, m, alpha, "inferno", -1.0 if m.min() < 0 else None, 1.0)
        else:
            b = heatmap_overlay(b, m, alpha, "inferno", -1.0 if m.min() < 0 else None, 1.0)
    cols = point_colors(len(matches))
    pa = np.array([m.point if m.reverse else m.source_point for m in matches], float).reshape(-1, 2)
    pb = np.array([m.source_point if m.reverse else m.point for m in matches], float).reshape(-1, 2)
    r = radius or _default_radius(max(a.shape, b.shape))
    return draw_markers(a, pa, cols, radius=r), draw_markers(b, pb, cols, radius=r)


def draw_transfer(images: Sequence[Any], result: Any, colors: Any = None, radius: int | None = None,
                  heat_point: int | None = None, alpha: float = 0.5) -> list[np.ndarray]:
    """A :class:`~vitdense.transfer.TransferResult` -> every image with the points: the clicked
    cells on the source, their matches on the others (point ``p`` in colour ``p``, numbered from 1).
    ``heat_point``: also blend that point's similarity heat map under the markers."""
    if len(images) != result.num_images:
        raise ParameterError(f"{len(images)} images for a result of {result.num_images}")
    cols = point_colors(result.num_points) if colors is None else colors
    out = []
    for n, img in enumerate(images):
        base = as_rgb(img)
        if heat_point is not None:
            base = heatmap_overlay(base, result.heatmaps[n][heat_point], alpha=alpha,
                                   geometry=result.geometries[n])
        out.append(draw_markers(base, result.matches[n], cols, radius=radius))
    return out


def draw_similarity(image_a: Any, image_b: Any, result: Any, alpha: float = 0.55,
                    cmap: str = "inferno", shared_scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A :class:`~vitdense.similarity.SimilarityResult` -> (A, B) with the similarity maps blended
    over them, the query marked (white ring, unnumbered) in A and the top-n patches numbered.

    ``shared_scale``: one colour scale for both maps (their joint min..max), else per map.
    """
    a, b = as_rgb(image_a), as_rgb(image_b)
    ma, mb = result.upsampled_maps()
    lo = hi = None
    if shared_scale:
        lo = float(min(np.nanmin(ma), np.nanmin(mb)))
        hi = float(max(np.nanmax(ma), np.nanmax(mb)))
    a = heatmap_overlay(a, ma, alpha, cmap, lo, hi)
    b = heatmap_overlay(b, mb, alpha, cmap, lo, hi)
    r = _default_radius(max(a.shape, b.shape))
    a = draw_markers(a, result.top_a_points, radius=r)
    b = draw_markers(b, result.top_b_points, radius=r)
    if result.query_point is not None:
        a = draw_markers(a, [result.query_point], [(255, 255, 255)], numbered=False,
                         radius=max(3, r // 2))
    return a, b


def draw_pca(result: Any, channels: Sequence[int] = (0, 1, 2),
             order: str = "nearest") -> list[np.ndarray]:
    """A :class:`~vitdense.pca.PCAResult` -> RGB images (components ``channels``) at each
    original image size (``order``: "nearest" keeps the patch look, "bilinear" smooths)."""
    return pca_images(result.rgb(channels), geometries=result.geometries, order=order)


def draw_video_parts(frames: Sequence[Any], result: Any, alpha: float = 0.55,
                     background: str = "dim", mode: str = "bilinear",
                     label_maps: Sequence[Any] | None = None) -> list[np.ndarray]:
    """A :class:`~vitdense.video.VideoPartsResult` -> annotated frames (part colours fixed
    across frames); ``mode`` is passed to ``result.label_map``.

    ``label_maps``: the frames' part maps when the caller already has them (e.g. to save them
    too), so that ``result.label_map`` is not computed twice; ``mode`` is then unused.
    """
    if len(frames) != result.num_frames:
        raise ParameterError(f"{len(frames)} frames for a result of {result.num_frames}")
    if label_maps is None:
        label_maps = [result.label_map(i, mode) for i in range(result.num_frames)]
    elif len(label_maps) != len(frames):
        raise ParameterError(f"{len(label_maps)} label maps for {len(frames)} frames")
    return [overlay_parts(f, m, alpha, result.num_parts, background)
            for f, m in zip(frames, label_maps)]

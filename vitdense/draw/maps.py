"""Images and maps: masks, label and part maps, heat maps, saliency and PCA as pictures."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitdense.draw.colors import BACKGROUND_COLOR, apply_colormap, part_colors
from vitdense.errors import ImageError, ParameterError

# --------------------------------------------------------------------------------------------
# images and maps

def as_rgb(image: Any) -> np.ndarray:
    """PIL / path / ndarray (H x W, H x W x 1|3|4, uint8 or float in [0, 1]) -> H x W x 3 uint8."""
    if isinstance(image, (str, Path, bytes)):
        from vitdense.features.images import load_image  # lazy: images.py owns decoding
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


class Marked(np.ndarray):
    """An ``H x W x 3`` uint8 picture that also records the boxes ``(x0, y0, x1, y1)`` (pixels) its
    labels, markers and colour bar occupy (:func:`~vitdense.draw.points.draw_markers`,
    :func:`top_heatmap`), so that labels drawn on it later are placed clear of them. Any array
    derived from it (a view, a copy, arithmetic) is a plain picture again: the boxes are dropped."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()

    def __array_finalize__(self, obj: Any) -> None:
        self.boxes = ()

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """Arithmetic and reductions (``a - b``, ``.mean()``) on plain arrays: plain results."""
        plain = tuple(np.asarray(v) if isinstance(v, Marked) else v for v in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(v) if isinstance(v, Marked) else v for v in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)


def marked(image: np.ndarray, boxes: Iterable[Sequence[float]]) -> Marked:
    """``image`` (H x W x 3 uint8) recording ``boxes`` (see :class:`Marked`)."""
    out = np.asarray(image).view(Marked)
    out.boxes = tuple(tuple(float(v) for v in b) for b in boxes)
    return out


def boxes_of(image: Any) -> tuple[tuple[float, float, float, float], ...]:
    """The boxes a :class:`Marked` picture records (none for any other image)."""
    return image.boxes if isinstance(image, Marked) else ()


@lru_cache(maxsize=32)
def label_font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def nearest_resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
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
        return nearest_resize(m, size)
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


def parts_as_labels(image_shape: tuple[int, int] | None, part_map: Any, geometry: Any = None) -> np.ndarray:
    """Part map (0 = background, 1..K; NaN = background) -> cluster labels (-1.., 0..K-1)."""
    pm = part_map.detach().cpu().numpy() if hasattr(part_map, "detach") else np.asarray(part_map)
    if pm.ndim != 2:
        raise ParameterError(f"expected a 2-D part map, got shape {pm.shape}")
    return _labels_to(image_shape if image_shape is not None else pm.shape, pm, geometry) - 1


def color_parts(part_map: Any, num_parts: int | None = None,
                background: Sequence[int] = BACKGROUND_COLOR, size: tuple[int, int] | None = None,
                geometry: Any = None) -> np.ndarray:
    """Part map (0 = background, 1..K) -> ``H x W x 3`` uint8; part ``p`` is ``PALETTE[p - 1]``."""
    return color_labels(parts_as_labels(size, part_map, geometry), num_parts, background)


def parts_rgba(part_map: Any, num_parts: int | None = None, alpha: int = 255,
               size: tuple[int, int] | None = None, geometry: Any = None) -> np.ndarray:
    """Part map -> ``H x W x 4`` uint8: palette colours, background fully transparent."""
    return labels_rgba(parts_as_labels(size, part_map, geometry), num_parts, alpha)


def overlay_parts(image: Any, part_map: Any, alpha: float = 0.55, num_parts: int | None = None,
                  background: str = "dim", edges: bool = True, geometry: Any = None) -> np.ndarray:
    """:func:`overlay_labels` for a part map (0 = background, 1..K)."""
    img = as_rgb(image)
    return overlay_labels(img, parts_as_labels(img.shape[:2], part_map, geometry), alpha, num_parts,
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


def top_heatmap(image: Any, heat: Any, top: float = 0.05, cmap: str = "heat",
                geometry: Any = None, peak: bool = True, scale: bool = True,
                alpha: float = 0.85) -> np.ndarray:
    """Only the top ``top`` share of a similarity map coloured over ``image`` (contrast stretched
    per map from that quantile to the map's maximum; opacity rising to ``alpha`` at the maximum),
    the rest of the picture left as it is: the peak stands out and nothing tints the whole picture.

    ``peak`` rings the map's maximum; ``scale`` draws the colour scale (a small bar with the
    stretched range's two values) in the corner farthest from the peak. ``cmap`` "heat" is the
    page's hover ramp. Returns a :class:`Marked` picture (the bar's box recorded).
    """
    img = as_rgb(image)
    if not 0.0 < top <= 1.0:
        raise ParameterError(f"top={top} must be in (0, 1]")
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha={alpha} must be in [0, 1]")
    grid = heat.detach().cpu().float().numpy() if hasattr(heat, "detach") else np.asarray(heat, np.float32)
    lo, hi = float(np.quantile(grid, 1.0 - top)), float(grid.max())
    h = resize_map(np.asarray(grid, np.float32), img.shape[:2], "bilinear", geometry)
    v = np.clip((h - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    out = _blend(img, apply_colormap(v, cmap, 0.0, 1.0), np.where(h >= lo, alpha * (0.4 + 0.6 * v), 0.0))
    y, x = np.unravel_index(int(np.argmax(h)), h.shape)
    boxes = []
    if peak or scale:
        pil = Image.fromarray(out)
        d = ImageDraw.Draw(pil)
        if peak:
            peak_ring(d, float(y), float(x), max(6, round(0.03 * max(img.shape[:2]))))
        if scale:
            boxes.append(colour_bar(d, img.shape, (float(y), float(x)), lo, hi, cmap))
        out = np.asarray(pil, dtype=np.uint8).copy()
    return marked(out, boxes)


def peak_ring(d: ImageDraw.ImageDraw, y: float, x: float, r: float) -> None:
    """A ring with four ticks around pixel (y, x) (the hover's peak marker), white over black."""
    for colour, width in (((0, 0, 0), max(3, round(r / 3))), ((255, 255, 255), max(1, round(r / 6)))):
        d.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=width)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            d.line([(x + dx * 1.1 * r, y + dy * 1.1 * r), (x + dx * 1.7 * r, y + dy * 1.7 * r)],
                   fill=colour, width=width)


def colour_bar(d: ImageDraw.ImageDraw, shape: tuple[int, ...], avoid: tuple[float, float],
               lo: float, hi: float, cmap: str) -> tuple[float, float, float, float]:
    """Draw the colour scale ``lo [ramp] hi`` on a dark panel in the bottom corner farthest from
    pixel ``avoid`` (y, x) (the top corner when that is in the bottom half); sized relative to
    the picture. Returns the panel's box (x0, y0, x1, y1)."""
    H, W = shape[:2]
    size = max(9, round(0.035 * max(H, W)))
    font = label_font(size)
    left, right = f"{lo:.2f}", f"{hi:.2f}"
    tw = [font.getbbox(t, anchor="lm")[2] for t in (left, right)]
    bar_w, bar_h, pad = max(30, round(0.16 * W)), max(5, round(0.6 * size)), max(3, size // 3)
    pw, ph = tw[0] + tw[1] + bar_w + 4 * pad, size + 2 * pad
    x0 = W - pw - pad if avoid[1] < W / 2 else pad
    y0 = pad if avoid[0] > H / 2 else H - ph - pad
    box = (float(x0), float(y0), float(x0 + pw), float(y0 + ph))
    d.rectangle(box, fill=(20, 20, 20), outline=(255, 255, 255))
    mid = y0 + ph / 2
    d.text((x0 + pad, mid), left, fill=(255, 255, 255), font=font, anchor="lm")
    bx = x0 + 2 * pad + tw[0]
    ramp = apply_colormap(np.linspace(0.0, 1.0, bar_w), cmap, 0.0, 1.0)
    for k, c in enumerate(ramp):
        d.line([(bx + k, mid - bar_h / 2), (bx + k, mid + bar_h / 2)], fill=tuple(int(v) for v in c))
    d.text((bx + bar_w + pad, mid), right, fill=(255, 255, 255), font=font, anchor="lm")
    return box


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

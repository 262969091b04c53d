"""Images and maps: masks, label and part maps, heat maps, saliency and PCA as pictures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

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


def top_heatmap(image: Any, heat: Any, top: float = 0.05, cmap: str = "inferno",
                geometry: Any = None) -> np.ndarray:
    """Only the top ``top`` share of a similarity map coloured over ``image`` (contrast stretched
    per map from that quantile to the map's maximum; opacity rising with the value), the rest of
    the picture left as it is: the peak stands out and nothing tints the whole picture."""
    img = as_rgb(image)
    if not 0.0 < top <= 1.0:
        raise ParameterError(f"top={top} must be in (0, 1]")
    grid = heat.detach().cpu().float().numpy() if hasattr(heat, "detach") else np.asarray(heat, np.float32)
    lo, hi = float(np.quantile(grid, 1.0 - top)), float(grid.max())
    h = resize_map(np.asarray(grid, np.float32), img.shape[:2], "bilinear", geometry)
    v = np.clip((h - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    alpha = np.where(h >= lo, 0.35 + 0.5 * v, 0.0)
    return _blend(img, apply_colormap(v, cmap, 0.0, 1.0), alpha)


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

"""Colours: the part palette, point colours, colormap lookup tables (no matplotlib)."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from vitdense.errors import ParameterError

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
# 10 evenly spaced points; turbo at 15; heat: the hover's ramp), linearly interpolated into a
# 256-entry table.
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
    # the page's hover ramp (static/hover.js STOPS): dark red -> red -> orange -> yellow -> white
    "heat": ["#800026", "#e31a1c", "#fd8d3c", "#fed976", "#ffffff"],
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

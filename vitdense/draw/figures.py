"""Plotly figures where hovering helps (parts, similarity)."""
from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np
from PIL import Image

from vitdense.draw.maps import (
    as_rgb,
    heatmap_overlay,
    nearest_resize,
    overlay_labels,
    parts_as_labels,
    resize_map,
    top_heatmap,
)
from vitdense.draw.points import draw_markers
from vitdense.errors import ParameterError
from vitdense.export import png_bytes

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
    lab = parts_as_labels((H, W), part_map, geometry)        # -1 background, 0..K-1
    fig = _image_figure(overlay_labels(img, lab, alpha, num_parts), title)
    ys, xs, (h, w) = _hover_grid(H, W, hover_max_side)
    small = nearest_resize(lab, (h, w))
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
                      alpha: float = 0.55, cmap: str | None = None, vmin: float | None = None,
                      vmax: float | None = None, title: str | None = None,
                      hover_max_side: int = 160, geometry: Any = None, top: float | None = 0.05):
    """Plotly figure of a similarity map over ``image``; hovering shows the similarity value.

    ``point`` (y, x) marks the query pixel (only meaningful when it lies in this image). ``top``:
    only that top share of the map coloured, the peak ringed and a colour scale drawn
    (:func:`~vitdense.draw.maps.top_heatmap`, ``cmap`` default "heat"); None: the whole map
    blended with opacity ``alpha`` from ``vmin`` to ``vmax`` (``cmap`` default "inferno").
    """
    import plotly.graph_objects as go

    img = as_rgb(image)
    H, W = img.shape[:2]
    s = similarity.detach().cpu().float().numpy() if hasattr(similarity, "detach") else similarity
    full = resize_map(np.asarray(s, np.float32), (H, W), "bilinear", geometry)
    if top is not None:
        shown = np.asarray(top_heatmap(img, full, top, cmap or "heat"))
    else:
        shown = heatmap_overlay(img, full, alpha, cmap or "inferno", vmin, vmax)
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

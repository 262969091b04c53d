"""vitdense.draw.figures: the plotly figures' hover values on a real photograph."""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from vitdense import draw


def test_parts_figure_hover_shows_part_id(cat):
    pm = np.zeros(cat.shape[:2], np.int64)
    pm[:, 120:] = 3
    pm[:50, :60] = 1
    fig = draw.parts_figure(cat, pm, hover_max_side=60)
    hover = fig.data[-1]
    text = np.asarray(hover.text)
    ys, xs = np.asarray(hover.y), np.asarray(hover.x)
    i, j = np.searchsorted(ys, 20), np.searchsorted(xs, 200)
    assert text[i, j] == "part 3"
    i, j = np.searchsorted(ys, 20), np.searchsorted(xs, 20)
    assert text[i, j] == "part 1"
    i, j = np.searchsorted(ys, 120), np.searchsorted(xs, 60)
    assert text[i, j] == "background"
    assert "%{text}" in hover.hovertemplate


def test_similarity_figure_hover_values(cat):
    sim = np.linspace(-1, 1, 15)[None, :].repeat(10, axis=0)
    fig = draw.similarity_figure(cat, sim, point=(75, 100))
    hover = fig.data[-1]
    z = np.asarray(hover.z)
    assert z.shape[0] <= 160 and z.shape[1] <= 160
    assert z[:, 0].mean() < -0.8 and z[:, -1].mean() > 0.8       # left dissimilar, right similar
    assert np.all(np.diff(z[0]) >= -1e-6)
    assert "similarity" in hover.hovertemplate
    src = fig.data[0].source                                        # the picture shown (PNG data URI)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    changed = np.abs(shown.astype(int) - cat.astype(int)).max(axis=2) > 8
    # only the top of the map (right) is coloured; the colour scale sits in the bottom-left corner
    assert changed[:75, :40].mean() < 0.02 and changed[:, -40:].mean() > 0.3

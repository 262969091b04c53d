"""vitdense.draw.colors: colormap lookup tables and the fixed part colours."""
from __future__ import annotations

import numpy as np
import pytest

from vitdense import draw
from vitdense.errors import ParameterError


def test_colormap_lut_is_perceptual_and_exact_at_ends():
    v = np.linspace(0, 1, 256)
    for name in ("viridis", "inferno", "magma"):
        rgb = draw.apply_colormap(v, name).astype(float)
        assert rgb.shape == (256, 3)
        lum = rgb @ np.array([0.299, 0.587, 0.114])
        assert np.all(np.diff(lum) > -1.0), name           # luminance never goes down (monotone maps)
        assert lum[-1] - lum[0] > 150
    ends = draw.apply_colormap(np.array([0.0, 1.0]), "viridis")
    assert ends.tolist() == [[0x44, 0x01, 0x54], [0xfd, 0xe7, 0x25]]


def test_colormap_scale_nan_and_errors():
    x = np.array([[np.nan, 0.0, 5.0, 10.0]])
    out = draw.apply_colormap(x, "gray", vmin=0.0, vmax=5.0)
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 0]                  # NaN -> black
    assert out[0, 1].tolist() == [0, 0, 0] and out[0, 2].tolist() == [255, 255, 255]
    assert out[0, 3].tolist() == [255, 255, 255]            # clipped above vmax
    with pytest.raises(ParameterError):
        draw.apply_colormap(x, "jet")


def test_part_colors_fixed_and_distinct():
    c30 = draw.part_colors(30)
    assert c30.shape == (30, 3) and c30.dtype == np.uint8
    assert np.array_equal(draw.part_colors(5), c30[:5])      # part k's colour does not depend on K
    assert len({tuple(c) for c in c30}) == 30

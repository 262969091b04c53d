"""vitdense.draw.maps (masks, part and label maps, heat maps) on real photographs and real descriptors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.draw._boxes import overlapping
from vitdense import draw
from vitdense.draw.maps import boxes_of
from vitdense.errors import ImageError, ParameterError


def test_as_rgb_conversions(cat):
    assert draw.as_rgb(Image.fromarray(cat)).tolist() == cat.tolist()
    gray = cat[..., 0]
    assert draw.as_rgb(gray).shape == cat.shape
    f = draw.as_rgb(cat.astype(np.float32) / 255.0)
    assert np.abs(f.astype(int) - cat).max() <= 1
    rgba = np.dstack([cat, np.full(cat.shape[:2], 255, np.uint8)])
    assert np.array_equal(draw.as_rgb(rgba), cat)
    with pytest.raises(ImageError):
        draw.as_rgb(np.zeros((4, 4, 2), np.uint8))


# ---------------------------------------------------------------------------------------------- masks
def test_overlay_mask_changes_only_mask_and_contour(cat):
    mask = np.zeros(cat.shape[:2], bool)
    mask[40:110, 60:170] = True
    out = draw.overlay_mask(cat, mask, color=(255, 0, 0), alpha=0.5, contour_width=2)
    assert out.shape == cat.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], cat[~mask])            # outside the mask: untouched
    inner = np.zeros_like(mask)
    inner[45:105, 65:165] = True
    blended = np.round(cat[inner] * 0.5 + np.array([255, 0, 0]) * 0.5)
    assert np.abs(out[inner].astype(int) - blended).max() <= 1
    # a 2-pixel contour in the colour along the inside of the border, blending right after it
    assert (out[40:42, 60:170] == [255, 0, 0]).all() and (out[40:110, 168:170] == [255, 0, 0]).all()
    after = np.round(cat[42, 65:165] * 0.5 + np.array([255, 0, 0]) * 0.5)
    assert np.abs(out[42, 65:165].astype(int) - after).max() <= 1


def test_overlay_mask_upsamples_a_grid_mask(cat, descs):
    geo = descs[0].geometry
    grid_mask = np.zeros(geo.grid, bool)
    grid_mask[: geo.grid[0] // 2] = True
    out = draw.overlay_mask(cat, grid_mask, contour=False, geometry=geo)
    changed = (out != cat).any(axis=2)
    assert changed[: cat.shape[0] // 3].mean() > 0.95 and changed[-cat.shape[0] // 3:].mean() == 0


def test_cutout_checkerboard(cat):
    mask = np.zeros(cat.shape[:2], bool)
    mask[30:90, 50:120] = True
    out = draw.cutout(cat, mask, square=8)
    assert np.array_equal(out[mask], cat[mask])
    bg = out[~mask]
    assert set(np.unique(bg)) == {205, 235}                  # only the two board greys outside
    assert out[0, 0].tolist() != out[0, 8].tolist()          # squares alternate


# ---------------------------------------------------------------------------------------------- parts
def test_part_colours_consistent_across_images(cat, astro):
    pa = np.zeros(cat.shape[:2], np.int64)
    pa[20:60, 20:80] = 2
    pa[80:140, 100:200] = 1
    pb = np.zeros(astro.shape[:2], np.int64)
    pb[10:50, 10:50] = 2
    pb[100:150, 100:150] = 3
    ca, cb = draw.color_parts(pa), draw.color_parts(pb)
    assert ca[30, 30].tolist() == cb[20, 20].tolist() == draw.PALETTE[1].tolist()  # part 2 -> PALETTE[1]
    assert ca[100, 150].tolist() == draw.PALETTE[0].tolist()
    assert ca[0, 0].tolist() == list(draw.BACKGROUND_COLOR)
    rgba = draw.parts_rgba(pb)
    assert rgba.shape == astro.shape[:2] + (4,)
    assert rgba[0, 0, 3] == 0 and rgba[20, 20, 3] == 255
    oa = draw.overlay_parts(cat, pa, background="keep", edges=False)
    assert np.array_equal(oa[pa == 0], cat[pa == 0])
    assert not np.array_equal(oa[pa == 2], cat[pa == 2])
    dim = draw.overlay_parts(cat, pa, background="dim", edges=False)
    assert dim[pa == 0].mean() < 0.5 * cat[pa == 0].mean()
    # cluster label convention: -1 background, label k -> PALETTE[k]
    assert draw.color_labels(pa - 1)[30, 30].tolist() == draw.PALETTE[1].tolist()
    with pytest.raises(ParameterError):
        draw.overlay_parts(cat, pa, background="transparent")


def test_draw_parts_on_grid_map_uses_geometry(cat, descs):
    geo = descs[0].geometry
    grid = np.zeros(geo.grid, np.int64)
    grid[:, : geo.grid[1] // 2] = 1
    out = draw.color_parts(grid, size=cat.shape[:2], geometry=geo)
    assert out.shape == cat.shape
    assert out[75, 10].tolist() == draw.PALETTE[0].tolist()
    assert out[75, 215].tolist() == list(draw.BACKGROUND_COLOR)


# ---------------------------------------------------------------------------------------------- heat maps
def test_heatmap_overlay_hot_region_brighter(cat):
    heat = np.zeros((10, 15))
    heat[:, 10:] = 1.0
    out = draw.heatmap_overlay(cat, heat, alpha=1.0, cmap="inferno")
    assert out.shape == cat.shape
    assert out[:, 200:].mean() > out[:, :100].mean() + 100
    sal = draw.saliency_overlay(cat, np.full((10, 15), 0.5), alpha=1.0)
    mid = draw.apply_colormap(np.array([0.5]), "viridis", 0.0, 1.0)[0]
    assert np.abs(sal[70, 100].astype(int) - mid).max() <= 2   # fixed 0..1 scale, not min-max


def test_top_heatmap_colours_only_the_top_of_the_map(cat):
    """Only the top 5% of a map is coloured (the rest of the photo untouched), brightest at the peak."""
    h, w = 12, 16
    yy, xx = np.mgrid[0:h, 0:w]
    heat = -np.hypot(yy - 4, xx - 11).astype(np.float32)          # peak at cell (4, 11)
    img = np.asarray(Image.fromarray(cat).resize((160, 120)))
    out = draw.top_heatmap(img, heat, top=0.05, peak=False, scale=False)
    changed = np.abs(out.astype(int) - img).max(axis=2) > 0
    assert 0.01 < changed.mean() < 0.12, changed.mean()
    ys, xs = np.nonzero(changed)
    assert abs(np.median(ys) - 45) < 12 and abs(np.median(xs) - 115) < 12, (np.median(ys), np.median(xs))
    with pytest.raises(ParameterError):
        draw.top_heatmap(img, heat, top=0)


def test_heat_map_marks_the_peak_and_draws_its_colour_scale(wide_cat):
    """top_heatmap: the top 5% coloured with the hover's ramp, the peak ringed, a colour bar with
    the stretched range's two values in the corner farthest from the peak (recorded, so that a
    marker's label drawn afterwards keeps clear of it)."""
    h, w = 20, 30
    yy, xx = np.mgrid[0:h, 0:w]
    heat = (1 - np.hypot(yy - 5, xx - 24) / 40).astype(np.float32)    # peak at the top right
    bare = draw.top_heatmap(wide_cat, heat, peak=False, scale=False)
    ringed = draw.top_heatmap(wide_cat, heat, scale=False)
    full = draw.top_heatmap(wide_cat, heat)
    ring = (ringed != bare).any(axis=2)
    ys, xs = np.nonzero(ring)
    assert abs(np.median(ys) - 52) < 10 and abs(np.median(xs) - 250) < 10, (np.median(ys), np.median(xs))
    [bar] = boxes_of(full)
    x0, y0, x1, y1 = bar
    assert x0 < 150 and y0 > 100                  # bottom left: the corner away from the peak
    panel = full[int(y0) + 2:int(y1) - 1, int(x0) + 2:int(x1) - 1]
    ramp = draw.apply_colormap(np.linspace(0, 1, 5), "heat", 0, 1)
    for c in ramp:                                # every colour of the ramp shows in the bar
        assert (np.abs(panel.astype(int) - c).sum(axis=-1) < 40).any(), c
    assert ((panel > 230).all(axis=-1)).sum() > 10            # the two values' white text
    assert (full[:int(y0) - 2] == ringed[:int(y0) - 2]).all()  # nothing else moved
    labelled = draw.draw_markers(full, [[y0 + 3, x0 + 10]], radius=8)
    assert overlapping([bar, boxes_of(labelled)[-1]]) == []

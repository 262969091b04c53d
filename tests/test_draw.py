"""vitdense.draw on real photographs and on real results of the bundled model."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from vitdense import draw
from vitdense.errors import ImageError, ParameterError


@pytest.fixture(scope="module")
def cat(photos) -> np.ndarray:
    """chelsea at 150 x 225 (small, real)."""
    return np.asarray(Image.fromarray(photos["chelsea"]).resize((225, 150), Image.BILINEAR))


@pytest.fixture(scope="module")
def astro(photos) -> np.ndarray:
    return np.asarray(Image.fromarray(photos["astronaut"]).resize((160, 160), Image.BILINEAR))


@pytest.fixture(scope="module")
def descs(bundled_extractor, cat, astro):
    """Real descriptors (layer 11 keys, saliency, CLS) of the cat and the astronaut at load size 112."""
    return bundled_extractor.extract([cat, astro], layer=11, facet="key", load_size=112, saliency=True,
                                     include_cls=True)


# ---------------------------------------------------------------------------------------------- colours
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


# ---------------------------------------------------------------------------------------------- points
def test_markers_change_pixels_near_the_point_only(cat):
    pts = np.array([[40.0, 50.0], [110.0, 180.0]])
    out = draw.draw_markers(cat, pts, radius=7)
    diff = (out != cat).any(axis=2)
    yy, xx = np.mgrid[: cat.shape[0], : cat.shape[1]]
    near = np.zeros_like(diff)
    for y, x in pts:
        near |= (yy - y) ** 2 + (xx - x) ** 2 <= 9 ** 2
    assert not diff[~near].any()                              # nothing changes away from the markers
    for (y, x), col in zip(pts, draw.point_colors(2)):
        ring = ((yy - y) ** 2 + (xx - x) ** 2 <= 7 ** 2) & ((yy - y) ** 2 + (xx - x) ** 2 >= 5 ** 2)
        assert diff[ring].mean() > 0.8
        close = np.abs(out[ring].astype(int) - col).sum(axis=1) < 30
        assert close.mean() > 0.3                            # the marker's own colour
    # a point off the image is skipped
    assert np.array_equal(draw.draw_markers(cat, [[500.0, 10.0]]), cat)


def test_markers_numbered_distinct(cat):
    plain = draw.draw_markers(cat, [[75.0, 110.0]], radius=12, numbered=False)
    numbered = draw.draw_markers(cat, [[75.0, 110.0]], radius=12)
    assert (plain != numbered).any(axis=2)[65:85, 100:120].sum() > 5   # the digit is drawn
    with pytest.raises(ParameterError):
        draw.draw_markers(cat, np.zeros((3, 3)))


def test_correspondences_side_by_side(cat, astro):
    pa = np.array([[30.0, 40.0], [120.0, 200.0]])
    pb = np.array([[50.0, 60.0], [140.0, 20.0]])
    canvas = draw.draw_correspondences(cat, astro, pa, pb, gap=10, radius=6)
    assert canvas.shape == (160, 225 + 10 + 160, 3)
    plain, _ = draw.side_by_side([cat, astro], gap=10)
    cols = draw.point_colors(2)
    for (ya, xa), (yb, xb), c in zip(pa, pb, cols):
        for y, x in ((ya, xa), (yb, xb + 235)):
            patch = canvas[int(y) - 5:int(y) + 6, int(x) - 5:int(x) + 6].reshape(-1, 3).astype(int)
            assert (np.abs(patch - c).sum(axis=1) < 30).mean() > 0.2
    with_lines = draw.draw_correspondences(cat, astro, pa, pb, lines=True, radius=6)
    mid = ((pa[0] + pb[0] + [0, 235]) / 2).astype(int)
    assert (with_lines[mid[0] - 2:mid[0] + 3, mid[1]] != plain[mid[0] - 2:mid[0] + 3, mid[1]]).any()
    a, b = draw.draw_correspondences(cat, astro, pa, pb, separate=True)
    assert a.shape == cat.shape and b.shape == astro.shape
    with pytest.raises(ParameterError):
        draw.draw_correspondences(cat, astro, pa, pb[:1])


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


def test_real_results_drawn(cat, astro, descs):
    from vitdense.apps.correspondences import PointMatcher, find_correspondences_descriptors
    from vitdense.apps.pca import pca_descriptors
    from vitdense.apps.similarity import inspect_similarity_descriptors

    p = pca_descriptors(descs, n_components=3)
    imgs = draw.draw_pca(p)
    assert [im.shape for im in imgs] == [cat.shape, astro.shape] and imgs[0].dtype == np.uint8
    assert imgs[0].std() > 10                                     # a real, non-flat picture

    s = inspect_similarity_descriptors(descs[0], descs[1], (60.0, 90.0), top_n=3)
    a, b = draw.draw_similarity(cat, astro, s)
    assert a.shape == cat.shape and b.shape == astro.shape
    ma, _ = s.upsampled_maps()
    far = ma < np.quantile(ma, 0.2)
    near = ma > np.quantile(ma, 0.9)
    lum = a.astype(float) @ [0.299, 0.587, 0.114]
    assert lum[near].mean() > lum[far].mean()                      # similar patches glow

    c = find_correspondences_descriptors(descs[0], descs[0], num_pairs=4, thresh=None)
    canvas = draw.draw_correspondence_result(cat, cat, c)
    assert canvas.shape == (150, 460, 3)

    m = PointMatcher(descs[0], descs[1])
    matches = [m.query(50.0, 60.0), m.query(100.0, 150.0, reverse=True)]
    ia, ib = draw.draw_point_match(cat, astro, matches, heatmap=False)
    for mt, col in zip(matches, draw.point_colors(2)):
        y, x = mt.point if mt.reverse else mt.source_point
        patch = ia[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].reshape(-1, 3).astype(int)
        assert (np.abs(patch - col).sum(axis=1) < 40).any()

    # with the heat map: only the top 5% of the last match's map is coloured, the rest of its
    # target picture is left as it is (no tint over the whole picture)
    ia, ib = draw.draw_point_match(cat, astro, matches[:1], heatmap=True)
    changed = np.abs(ib.astype(int) - astro.astype(int)).max(axis=2) > 8
    assert 0.01 < changed.mean() < 0.12, changed.mean()


# ---------------------------------------------------------------------------------------------- plotly
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


# ---------------------------------------------------------------------------------------------- video
def test_draw_video_parts_from_precomputed_label_maps(cat):
    """Given the maps (which the callers also save), the frames are drawn from them, and
    result.label_map is not computed a second time."""
    maps = [np.zeros(cat.shape[:2], np.int64) for _ in range(2)]
    maps[0][:, :100] = 1
    maps[1][40:, 60:] = 2

    class Result:                                   # the VideoPartsResult attributes draw reads
        num_frames, num_parts, calls = 2, 2, 0

        def label_map(self, i, mode="bilinear"):
            Result.calls += 1
            return maps[i]

    frames = [cat, cat[:, ::-1]]
    computed = draw.draw_video_parts(frames, Result())
    assert Result.calls == 2
    given = draw.draw_video_parts(frames, Result(), label_maps=maps)
    assert Result.calls == 2
    for a, b, f, m in zip(computed, given, frames, maps):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, draw.overlay_parts(f, m, num_parts=2))
    with pytest.raises(ParameterError, match="1 label maps for 2 frames"):
        draw.draw_video_parts(frames, Result(), label_maps=maps[:1])


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

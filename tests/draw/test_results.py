"""vitdense.draw.results: whole results of the bundled model drawn on real photographs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vitdense import draw
from vitdense.draw.maps import boxes_of
from vitdense.errors import ParameterError


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


def test_similarity_pictures_colour_only_the_top(bundled_extractor, wide_cat, photos):
    """The Similarity inspector's pictures: most of the photo is left as it is, the query's
    neighbourhood is coloured, and each picture carries its colour scale."""
    from vitdense.apps.similarity import inspect_similarity_descriptors

    astro = np.asarray(Image.fromarray(photos["astronaut"]).resize((200, 200)))
    d = bundled_extractor.extract([wide_cat, astro], layer=11, facet="token", load_size=112)
    r = inspect_similarity_descriptors(d[0], d[1], (100.0, 150.0), top_n=3)
    a, b = draw.draw_similarity(wide_cat, astro, r)
    assert (a == wide_cat).all(axis=2).mean() > 0.75 and (b == astro).all(axis=2).mean() > 0.75
    assert len(boxes_of(b)) >= 2                 # the bar and the numbered labels
    whole, _ = draw.draw_similarity(wide_cat, astro, r, top=None)
    assert (whole == wide_cat).all(axis=2).mean() < 0.2                  # the old whole-map blend


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

"""Legible server-drawn pictures: markers sized with the picture, labels that never cover each
other (within one call and across calls), the selected pair's line, heat maps with a peak mark
and a colour scale. Real photographs and real results of the bundled model."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from vitdense import draw
from vitdense.draw.maps import boxes_of
from vitdense.draw.points import default_radius, place_labels
from vitdense.errors import ParameterError


@pytest.fixture(scope="module")
def cat(photos) -> np.ndarray:
    return np.asarray(Image.fromarray(photos["chelsea"]).resize((300, 200), Image.BILINEAR))


def overlapping(boxes) -> list:
    """Pairs of boxes (x0, y0, x1, y1) that share area."""
    return [(a, b) for a, b in itertools.combinations(boxes, 2)
            if min(a[2], b[2]) - max(a[0], b[0]) > 1e-6 and min(a[3], b[3]) - max(a[1], b[1]) > 1e-6]


def test_marker_size_follows_the_picture(photos):
    """2% of the longer side: the same share of a 256 px and a 4000 px photo (never a few pixels
    on a large one), at least 5 px on a tiny one."""
    assert default_radius((256, 200)) == 5 and default_radius((3000, 4000, 3)) == 80
    big = np.asarray(Image.fromarray(photos["astronaut"]).resize((2048, 2048)))
    out = draw.draw_markers(big, [[1000.0, 1000.0]])
    ys, xs = np.nonzero((out != big).any(axis=2))
    assert 2 * 40 <= xs.max() - xs.min() + 1 <= 2 * 41 + 2         # a 41 px radius disc


def test_crowded_labels_never_cover_each_other(cat):
    """20 numbered points in a 30 px cluster: every label box is disjoint from the others and
    from every other point's dot, inside the picture; the far labels are joined to their points."""
    rng = np.random.default_rng(0)
    pts = np.array([100.0, 150.0]) + rng.uniform(-15, 15, (20, 2))
    out = draw.draw_markers(cat, pts, radius=8)
    boxes = boxes_of(out)
    labels = [b for b in boxes if b[2] - b[0] >= 16 - 1e-6]       # the labels (dots are smaller)
    assert len(labels) == 20 and overlapping(labels) == []
    for x0, y0, x1, y1 in labels:
        assert x0 >= -8 and y0 >= -8 and x1 <= 308 and y1 <= 208
    # the pixels say so too: each label's own colour shows at the left of some label box
    seen = 0
    for c in draw.point_colors(20):
        hit = [b for b in labels if (np.abs(out[int((b[1] + b[3]) / 2) - 5:int((b[1] + b[3]) / 2) + 6,
                                                int(b[0]) + 3:int(b[0]) + 6].astype(int) - c).sum(axis=-1) < 40).any()]
        seen += bool(hit)
    assert seen >= 18                           # (a few neighbouring hues are close to each other)
    far = [b for b in labels if not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for y, x in pts)]
    assert far, "a crowded cluster moves some labels off their points"


def test_clicks_drawn_later_keep_clear_of_the_numbered_pairs(cat):
    """As the demo draws them: numbered pairs first, lettered clicks on top at the same spots;
    no label covers another, and the pairs' labels stay as they were."""
    pairs = np.array([[60.0, 80.0], [64.0, 90.0], [150.0, 220.0], [70.0, 84.0]])
    first = draw.draw_markers(cat, pairs, radius=9)
    clicks = pairs + [[2.0, 3.0]]
    both = draw.draw_markers(first, clicks, np.full((4, 3), 255, np.uint8), labels=list("abcd"), radius=11)
    boxes = boxes_of(both)
    labels = [b for b in boxes if b[2] - b[0] >= 18 - 1e-6]
    assert len(labels) == 8 and overlapping(labels) == []
    assert boxes[:len(boxes_of(first))] == boxes_of(first)
    # a plain copy forgets the boxes (only pictures drawn by draw_markers carry them)
    assert boxes_of(np.array(both)) == () and boxes_of(both.copy()) == ()


def test_place_labels_takes_the_least_covered_place_when_none_is_free():
    boxes = place_labels([[5.0, 5.0], [5.0, 5.0]], [(10, 10), (10, 10)], (10, 10), 5)
    assert boxes[0] == (0.0, 0.0, 10.0, 10.0) and boxes[1] is not None
    assert place_labels([[50.0, 5.0]], [(10, 10)], (10, 10), 5) == [None]      # off the picture


def test_selected_pair_gets_a_bold_line(cat):
    pa = np.array([[40.0, 60.0], [150.0, 250.0]])
    pb = np.array([[60.0, 80.0], [120.0, 40.0]])
    plain = draw.draw_correspondences(cat, cat, pa, pb, radius=6)
    sel = draw.draw_correspondences(cat, cat, pa, pb, radius=6, selected=1)
    xb = 310
    # the midpoint of pair 2's line changes, pair 1's (no lines asked) does not
    for (ya, xa), (yb, xb_), drawn in zip(pa, pb, (False, True)):
        my, mx = int((ya + yb) / 2), int((xa + xb_ + xb) / 2)
        patch = (sel[my - 3:my + 4, mx - 3:mx + 4] != plain[my - 3:my + 4, mx - 3:mx + 4]).any(axis=2)
        assert patch.any() == drawn
    # with every line drawn, the selected one is the wider (rows crossing column 280)
    thin = draw.draw_correspondences(cat, cat, pa, pb, radius=6, lines=True)
    bold = draw.draw_correspondences(cat, cat, pa, pb, radius=6, lines=True, selected=1)
    width = [int((img[:, 280] != plain[:, 280]).any(axis=1).sum()) for img in (thin, bold)]
    assert width[1] >= width[0] + 4, width
    with pytest.raises(ParameterError, match="selected=2"):
        draw.draw_correspondences(cat, cat, pa, pb, selected=2)


def test_heat_map_marks_the_peak_and_draws_its_colour_scale(cat):
    """top_heatmap: the top 5% coloured with the hover's ramp, the peak ringed, a colour bar with
    the stretched range's two values in the corner farthest from the peak (recorded, so that a
    marker's label drawn afterwards keeps clear of it)."""
    h, w = 20, 30
    yy, xx = np.mgrid[0:h, 0:w]
    heat = (1 - np.hypot(yy - 5, xx - 24) / 40).astype(np.float32)    # peak at the top right
    bare = draw.top_heatmap(cat, heat, peak=False, scale=False)
    ringed = draw.top_heatmap(cat, heat, scale=False)
    full = draw.top_heatmap(cat, heat)
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


def test_similarity_pictures_colour_only_the_top(bundled_extractor, cat, photos):
    """The Similarity inspector's pictures: most of the photo is left as it is, the query's
    neighbourhood is coloured, and each picture carries its colour scale."""
    from vitdense.apps.similarity import inspect_similarity_descriptors

    astro = np.asarray(Image.fromarray(photos["astronaut"]).resize((200, 200)))
    d = bundled_extractor.extract([cat, astro], layer=11, facet="token", load_size=112)
    r = inspect_similarity_descriptors(d[0], d[1], (100.0, 150.0), top_n=3)
    a, b = draw.draw_similarity(cat, astro, r)
    assert (a == cat).all(axis=2).mean() > 0.75 and (b == astro).all(axis=2).mean() > 0.75
    assert len(boxes_of(b)) >= 2                 # the bar and the numbered labels
    whole, _ = draw.draw_similarity(cat, astro, r, top=None)
    assert (whole == cat).all(axis=2).mean() < 0.2                  # the old whole-map blend

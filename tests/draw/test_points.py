"""vitdense.draw.points: markers sized with the picture, labels that never cover each other,
correspondences side by side with the selected pair's line. Real photographs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.draw._boxes import overlapping
from vitdense import draw
from vitdense.draw.maps import boxes_of
from vitdense.draw.points import default_radius, place_labels
from vitdense.errors import ParameterError


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


def test_marker_size_follows_the_picture(photos):
    """2% of the longer side: the same share of a 256 px and a 4000 px photo (never a few pixels
    on a large one), at least 5 px on a tiny one."""
    assert default_radius((256, 200)) == 5 and default_radius((3000, 4000, 3)) == 80
    big = np.asarray(Image.fromarray(photos["astronaut"]).resize((2048, 2048)))
    out = draw.draw_markers(big, [[1000.0, 1000.0]])
    ys, xs = np.nonzero((out != big).any(axis=2))
    assert 2 * 40 <= xs.max() - xs.min() + 1 <= 2 * 41 + 2         # a 41 px radius disc


def test_crowded_labels_never_cover_each_other(wide_cat):
    """20 numbered points in a 30 px cluster: every label box is disjoint from the others and
    from every other point's dot, inside the picture; the far labels are joined to their points."""
    rng = np.random.default_rng(0)
    pts = np.array([100.0, 150.0]) + rng.uniform(-15, 15, (20, 2))
    out = draw.draw_markers(wide_cat, pts, radius=8)
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


def test_clicks_drawn_later_keep_clear_of_the_numbered_pairs(wide_cat):
    """As the demo draws them: numbered pairs first, lettered clicks on top at the same spots;
    no label covers another, and the pairs' labels stay as they were."""
    pairs = np.array([[60.0, 80.0], [64.0, 90.0], [150.0, 220.0], [70.0, 84.0]])
    first = draw.draw_markers(wide_cat, pairs, radius=9)
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


def test_selected_pair_gets_a_bold_line(wide_cat):
    pa = np.array([[40.0, 60.0], [150.0, 250.0]])
    pb = np.array([[60.0, 80.0], [120.0, 40.0]])
    plain = draw.draw_correspondences(wide_cat, wide_cat, pa, pb, radius=6)
    sel = draw.draw_correspondences(wide_cat, wide_cat, pa, pb, radius=6, selected=1)
    xb = 310
    # the midpoint of pair 2's line changes, pair 1's (no lines asked) does not
    for (ya, xa), (yb, xb_), drawn in zip(pa, pb, (False, True)):
        my, mx = int((ya + yb) / 2), int((xa + xb_ + xb) / 2)
        patch = (sel[my - 3:my + 4, mx - 3:mx + 4] != plain[my - 3:my + 4, mx - 3:mx + 4]).any(axis=2)
        assert patch.any() == drawn
    # with every line drawn, the selected one is the wider (rows crossing column 280)
    thin = draw.draw_correspondences(wide_cat, wide_cat, pa, pb, radius=6, lines=True)
    bold = draw.draw_correspondences(wide_cat, wide_cat, pa, pb, radius=6, lines=True, selected=1)
    width = [int((img[:, 280] != plain[:, 280]).any(axis=1).sum()) for img in (thin, bold)]
    assert width[1] >= width[0] + 4, width
    with pytest.raises(ParameterError, match="selected=2"):
        draw.draw_correspondences(wide_cat, wide_cat, pa, pb, selected=2)

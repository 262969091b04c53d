"""Best buddies, correspondences and click queries on real photographs (bundled DINOv2 ViT-S/14).

Ground truth: the Middlebury stereo pair of scikit-image (``stereo_motorcycle``). Its disparity
map is indexed by LEFT-image pixels: left ``(y, x)`` corresponds to right ``(y, x - disp[y, x])``
(checked photometrically: mean |left - right(x - d)| is 7.8 grey levels against 45 for x + d and
38 for no shift); NaN marks pixels without ground truth.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vitdense.apps.correspondences import (
    Correspondences,
    PointMatcher,
    best_buddies,
    extract_pair,
    find_correspondences,
    find_correspondences_descriptors,
)
from vitdense.errors import ParameterError
from vitdense.eval.metrics import pck


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def stereo():
    from skimage import data
    left, right, disp = data.stereo_motorcycle()
    return left, right, disp.astype(np.float64)


@pytest.fixture(scope="module")
def stereo_descs(bundled_extractor, stereo):
    """The correspondence defaults (vitdense.defaults): on the bundled DINOv2 layer-7 tokens (384
    dimensions), stride 7, load 224, saliency, the right image also described mirrored (the plain
    orientation is kept: it fits better)."""
    left, right, _ = stereo
    return extract_pair(bundled_extractor, left, right)


@pytest.fixture(scope="module")
def stereo_corr(stereo_descs) -> Correspondences:
    return find_correspondences_descriptors(*stereo_descs)


@pytest.fixture(scope="module")
def flip_matcher(bundled_extractor):
    """The chelsea cat and its mirror image, layer-9 TOKEN descriptors, unbinned.

    Not the paper's binned keys on purpose: log-binned descriptors are not mirror-equivariant by
    construction (a flip swaps the left and right bins), and on this DINOv2 model the key facet
    carries strong positional information (measured: only 13% of clicks on chelsea land within
    1.5 cells of the mirrored location with binned layer-9 keys, 78% with layer-9 tokens).
    """
    from skimage import data
    img = data.chelsea()
    flipped = np.ascontiguousarray(img[:, ::-1])
    d1, d2 = bundled_extractor.extract([img, flipped], layer=9, facet="token", load_size=224)
    return PointMatcher(d1, d2), img.shape[:2]


def gt_right(points_left: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Ground-truth right-image points of left-image points (K x 2 (y, x)); NaN rows: no truth."""
    h, w = disp.shape
    y = np.clip(np.floor(points_left[:, 0]).astype(int), 0, h - 1)
    x = np.clip(np.floor(points_left[:, 1]).astype(int), 0, w - 1)
    d = disp[y, x]
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    return np.stack([points_left[:, 0] + 0 * d, points_left[:, 1] - d], axis=1)


def brute_force(desc1: torch.Tensor, desc2: torch.Tensor):
    """Reference best buddies from the full cosine-similarity matrix."""
    norm = torch.nn.functional.normalize
    s = norm(desc1.double(), dim=1) @ norm(desc2.double(), dim=1).T
    sim12, nn12 = s.max(dim=1)
    nn21 = s.argmax(dim=0)
    return nn21[nn12] == torch.arange(desc1.shape[0]), nn12, sim12


# --------------------------------------------------------------------------- best buddies
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_best_buddies_equal_brute_force_random(chunk):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(53, 16, generator=g), torch.randn(41, 16, generator=g)
    mask, nn12, sim12 = best_buddies(a, b, chunk=chunk)
    ref_mask, ref_nn, ref_sim = brute_force(a, b)
    assert mask.dtype == torch.bool and mask.shape == (53,) and nn12.dtype == torch.long
    assert torch.equal(mask, ref_mask) and torch.equal(nn12, ref_nn)
    torch.testing.assert_close(sim12.double(), ref_sim, rtol=0, atol=1e-5)
    assert 0 < int(mask.sum()) < 41


def test_best_buddies_equal_brute_force_real(stereo_descs):
    d1, d2 = stereo_descs
    a, b = d1.descs[::3], d2.descs[::4]          # ~475 x 6528 and ~357 x 6528 real descriptors
    mask, nn12, sim12 = best_buddies(a, b, chunk=50)
    ref_mask, ref_nn, ref_sim = brute_force(a, b)
    assert torch.equal(nn12, ref_nn) and torch.equal(mask, ref_mask)
    torch.testing.assert_close(sim12.double(), ref_sim, rtol=0, atol=1e-5)


def test_best_buddies_of_a_permutation():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 8, generator=g)
    perm = torch.randperm(30, generator=g)
    mask, nn12, sim12 = best_buddies(a, a[perm] * 3.0)     # scale must not matter (cosine)
    assert bool(mask.all())
    assert torch.equal(perm[nn12], torch.arange(30))
    torch.testing.assert_close(sim12, torch.ones(30))


def test_best_buddies_validation():
    with pytest.raises(ParameterError, match="differ in dimension"):
        best_buddies(torch.randn(4, 3), torch.randn(5, 2))
    with pytest.raises(ParameterError, match="chunk"):
        best_buddies(torch.randn(4, 3), torch.randn(5, 3), chunk=0)
    with pytest.raises(ParameterError, match="desc2"):
        best_buddies(torch.randn(4, 3), torch.randn(0, 3))


# --------------------------------------------------------------------------- correspondences
def test_stereo_pck(stereo, stereo_corr):
    left, _, disp = stereo
    c = stereo_corr
    assert len(c) == 10 and c.reason is None
    assert c.points1.shape == (10, 2) and c.points2.shape == (10, 2)
    gt = gt_right(c.points1, disp)
    size = left.shape[:2]
    # measured (bundled model, CPU, the defaults, 2026-12-04): PCK@0.1 = 0.9, PCK@0.02 = 0.8
    # (0.02 * 741 = 14.8 px; log-binned layer 7: 1.0 and 0.9);
    # doing nothing (points2 = points1) scores 1.0 and 0.0: the disparities are 7..60 px.
    assert pck(c.points2, gt, 0.1, reference="image", image_size=size) >= 0.9
    assert pck(c.points2, gt, 0.02, reference="image", image_size=size) >= 0.7
    assert pck(c.points1, gt, 0.02, reference="image", image_size=size) <= 0.3
    # rectified pair: corresponding points lie on (nearly) the same row
    assert np.median(np.abs(c.points1[:, 0] - c.points2[:, 0])) <= 10


def test_stereo_all_best_buddies_pck(stereo, stereo_descs):
    left, _, disp = stereo
    d1, d2 = stereo_descs
    mask, nn12, _ = best_buddies(d1.descs, d2.descs)
    i1 = torch.nonzero(mask)[:, 0].numpy()
    p1 = d1.geometry.cell_centers()[i1]
    p2 = d2.geometry.cell_centers()[nn12[mask].numpy()]
    gt = gt_right(p1, disp)
    size = left.shape[:2]
    assert len(i1) > 500                              # measured 1178 of 1426 cells
    # measured: 0.86 over all best buddies (identity baseline 0.16; log-binned layer 7: 0.90)
    assert pck(p2, gt, 0.02, reference="image", image_size=size) >= 0.75
    assert pck(p1, gt, 0.02, reference="image", image_size=size) <= 0.3


def test_result_is_consistent_with_its_descriptors(stereo_descs, stereo_corr):
    d1, d2 = stereo_descs
    c = stereo_corr
    mask, nn12, _ = best_buddies(d1.descs, d2.descs)
    sal1, sal2 = d1.saliency.reshape(-1), d2.saliency.reshape(-1)
    # every returned pair is a best buddy, foreground in both images (the direct rule)
    assert mask[c.indices1].all() and torch.equal(nn12[c.indices1], torch.from_numpy(c.indices2))
    assert (sal1[c.indices1] > 0.05).all() and (sal2[c.indices2] > 0.05).all()
    fg_buddies = mask & (sal1 > 0.05) & (sal2 > 0.05)[nn12]
    assert c.num_best_buddies == int(fg_buddies.sum()) and c.num_mutual == int(mask.sum())
    assert len(set(c.indices1.tolist())) == len(c)
    # fields
    np.testing.assert_allclose(c.points1, d1.geometry.cell_centers()[c.indices1])
    np.testing.assert_allclose(c.points2, d2.geometry.cell_centers()[c.indices2])
    cos = torch.nn.functional.cosine_similarity(d1.descs[c.indices1], d2.descs[c.indices2], dim=1)
    np.testing.assert_allclose(c.similarity, cos.numpy(), atol=1e-5)
    np.testing.assert_allclose(c.saliency, ((sal1[c.indices1] + sal2[c.indices2]) / 2).numpy(), atol=1e-6)
    assert np.all(np.diff(c.saliency) <= 0)           # sorted by the ranking
    assert c.grid1 == d1.grid and c.size1 == (500, 741) and c.size2 == (500, 741)
    assert c.params["layer"] == [7] and c.params["bin"] is False  # the bundled DINOv2's default (vitdense.defaults)
    assert not d2.params.get("mirrored")          # a stereo pair faces the same way: not mirrored
    assert c.params["facet"] == "token"           # the bundled DINOv2's default facet
    assert c.params["stride"] == 7 and c.params["num_pairs"] == 10 and c.params["thresh"] == 0.05


def _numpy_kmeans_sse(x: np.ndarray, k: int, restarts: int = 10, iters: int = 100) -> float:
    """The lowest within-cluster sum of squares of plain Lloyd runs (k-means++ starts, numpy only):
    a reference independent of vitdense.ops.clustering."""
    rng = np.random.default_rng(0)
    best = np.inf
    for _ in range(restarts):
        centres = [x[rng.integers(len(x))]]
        for _ in range(k - 1):                     # k-means++: the next centre ~ squared distance
            d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
            centres.append(x[rng.choice(len(x), p=d / d.sum())])
        c = np.array(centres)
        for _ in range(iters):
            labels = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
            new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        best = min(best, float(((x - c[labels]) ** 2).sum()))
    return best


def test_each_pick_is_the_most_salient_of_a_good_kmeans_cluster(stereo_descs):
    """The candidates' clustering is checked against numpy: a Lloyd fixed point (each candidate is
    nearest its own cluster's mean) whose sum of squares is within 5% of the best of 10 plain
    k-means runs; and each pick is the most salient candidate of its cluster."""
    from vitdense.apps.correspondences import _kmeans_labels
    d1, d2 = stereo_descs
    c = find_correspondences_descriptors(d1, d2, num_pairs=6)
    mask, nn12, _ = best_buddies(d1.descs, d2.descs)
    sal1, sal2 = d1.saliency.reshape(-1), d2.saliency.reshape(-1)
    idx1 = torch.nonzero(mask & (sal1 > 0.05) & (sal2 > 0.05)[nn12])[:, 0]
    idx2 = nn12[idx1]
    pairs = torch.nn.functional.normalize(torch.cat([d1.descs[idx1], d2.descs[idx2]], 1), dim=1)
    labels = _kmeans_labels(pairs, 6, "auto")
    x = pairs.double().numpy()
    means = np.array([x[labels == k].mean(0) for k in range(6)])     # raises on an empty cluster
    assert np.array_equal(((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1), labels)
    sse = float(((x - means[labels]) ** 2).sum())
    assert sse <= 1.05 * _numpy_kmeans_sse(x, 6)
    rank = ((sal1[idx1] + sal2[idx2]) / 2).numpy()
    expected = {int(idx1[np.flatnonzero(labels == k)[np.argmax(rank[labels == k])]]) for k in range(6)}
    assert set(c.indices1.tolist()) == expected


def test_more_pairs_requested_than_buddies(stereo_descs):
    c = find_correspondences_descriptors(*stereo_descs, num_pairs=100_000)
    assert len(c) == c.num_best_buddies > 10 and c.reason is None
    assert len(set(c.indices1.tolist())) == len(c)


def test_zero_buddies_give_an_empty_result_with_reason(stereo_descs):
    c = find_correspondences_descriptors(*stereo_descs, thresh=1.0)  # saliency is never > 1
    assert len(c) == 0 and c.empty and c.num_best_buddies == 0 and c.num_mutual > 0
    assert "thresh=1.0" in c.reason
    assert c.points1.shape == (0, 2) and c.points2.shape == (0, 2) and c.similarity.shape == (0,)


def test_without_foreground_filter_ranks_by_saliency(stereo_descs):
    c = find_correspondences_descriptors(*stereo_descs, thresh=None, num_pairs=5)
    assert len(c) == 5 and c.num_best_buddies == c.num_mutual
    d1, d2 = (dataclasses.replace(d, saliency=None) for d in stereo_descs)
    c2 = find_correspondences_descriptors(d1, d2, thresh=None, num_pairs=5)
    assert len(c2) == 5 and np.isnan(c2.saliency).all() and np.all(np.diff(c2.similarity) <= 0)


def test_parameter_errors(stereo_descs, bundled_extractor):
    d1, d2 = stereo_descs
    # validated before any image is read
    for knobs, word in [({"num_pairs": 0}, "num_pairs"), ({"n_init": 0}, "n_init"),
                        ({"thresh": -0.1}, "thresh"), ({"chunk": 0}, "chunk")]:
        with pytest.raises(ParameterError, match=word):
            find_correspondences(bundled_extractor, "missing-1.jpg", "missing-2.jpg", **knobs)
    with pytest.raises(ParameterError, match="num_pairs"):
        find_correspondences_descriptors(d1, d2, num_pairs=0)
    with pytest.raises(ParameterError, match="thresh"):
        find_correspondences_descriptors(d1, d2, thresh=1.5)
    with pytest.raises(ParameterError, match="chunk"):
        find_correspondences_descriptors(d1, d2, chunk=-1)
    with pytest.raises(ParameterError, match="saliency"):
        find_correspondences_descriptors(dataclasses.replace(d1, saliency=None), d2)
    with pytest.raises(ParameterError, match="dimension"):
        find_correspondences_descriptors(d1, dataclasses.replace(d2, descs=d2.descs[:, :100]))


def test_find_correspondences_end_to_end(bundled_extractor, stereo):
    left, right, disp = stereo
    c = find_correspondences(bundled_extractor, left, right, load_size=112, num_pairs=5)
    assert len(c) == 5 and c.params["stride"] == 7 and c.params["load_size"] == 112
    assert np.all((c.points1 >= 0) & (c.points1 < [500, 741]))
    gt = gt_right(c.points1, disp)
    # measured 1.0 at this coarse load size (one cell is 31 px)
    assert pck(c.points2, gt, 0.1, reference="image", image_size=(500, 741)) >= 0.8


# --------------------------------------------------------------------------- click queries
def test_point_query_finds_the_mirrored_location(flip_matcher):
    m, (h, w) = flip_matcher
    spacing = 7 * h / m.d1.geometry.resized_size[0]       # one cell = 9.4 original pixels
    errors, buddy = [], []
    for y in np.linspace(10, h - 10, 10):
        for x in np.linspace(10, w - 10, 12):
            q = m.query(float(y), float(x))
            expected = (q.source_point[0], w - q.source_point[1])   # mirror of the clicked cell
            errors.append(np.hypot(q.point[0] - expected[0], q.point[1] - expected[1]))
            buddy.append(q.is_best_buddy)
    errors, buddy = np.asarray(errors), np.asarray(buddy)
    # measured: median 0 px, 78% within 1.5 cells (14 px), 93% of the best-buddy clicks
    assert np.median(errors) <= spacing
    assert np.mean(errors <= 1.5 * spacing) >= 0.6
    assert buddy.sum() >= 20 and np.mean(errors[buddy] <= 1.5 * spacing) >= 0.8


def test_point_query_fields(flip_matcher):
    m, (h, w) = flip_matcher
    q = m.query(150.0, 100.0)
    assert q.query == (150.0, 100.0) and not q.reverse
    assert q.similarity_map.shape == m.d2.grid and q.similarity_map.dtype == np.float32
    assert q.similarity == pytest.approx(float(q.similarity_map.max()), abs=1e-6)
    assert q.target_index == int(np.argmax(q.similarity_map))
    assert q.is_best_buddy == bool(m.best_buddy_mask1[q.source_index])
    np.testing.assert_allclose(q.cell_point, m.d2.geometry.cell_centers()[q.target_index])
    cell = 7 * m.d2.geometry.scale[0]                     # refined: within one cell of the best one
    assert np.hypot(*np.subtract(q.point, q.cell_point)) <= 1.5 * cell
    u = m.query(150.0, 100.0, refine=False)               # the paper's rule: the best cell's centre
    assert u.point == u.cell_point and u.target_index == int(np.argmax(u.similarity_map))
    assert abs(q.source_point[0] - 150) <= 5 and abs(q.source_point[1] - 100) <= 5
    full = q.upsampled_map()
    assert full.shape == (h, w)
    assert full.max() <= q.similarity_map.max() + 1e-5
    # a click in image 2 answers in image 1; best-buddy status is symmetric
    r = m.query(*q.point, reverse=True)
    assert r.reverse and r.similarity_map.shape == m.d1.grid
    if q.is_best_buddy:
        assert r.target_index == q.source_index and r.is_best_buddy


def test_point_matcher_agrees_with_best_buddies(stereo_descs):
    d1, d2 = stereo_descs
    m = PointMatcher(d1, d2, chunk=100)
    mask, nn12, _ = best_buddies(d1.descs, d2.descs)
    assert torch.equal(m.best_buddy_mask1, mask) and torch.equal(m.nn12, nn12)
    i1, i2 = m.best_buddy_pairs()
    assert m.num_best_buddies == len(i1) and np.array_equal(i2, nn12[mask].numpy())
    assert int(m.best_buddy_mask2.sum()) == len(i1)


@pytest.mark.parametrize("y,x", [(-1.0, 10.0), (10.0, 451.0), (300.0, 5.0), (float("nan"), 3.0),
                                 (5.0, float("inf"))])
def test_click_outside_the_image(flip_matcher, y, x):
    m, _ = flip_matcher
    with pytest.raises(ParameterError, match="outside"):
        m.query(y, x)


def test_a_shared_matcher_gives_the_same_pairs(stereo_descs):
    """The web demo builds one PointMatcher for the automatic pairs and the clicks."""
    d1, d2 = stereo_descs
    matcher = PointMatcher(d1, d2)
    shared = find_correspondences_descriptors(d1, d2, matcher=matcher)
    alone = find_correspondences_descriptors(d1, d2)
    np.testing.assert_array_equal(shared.indices1, alone.indices1)
    np.testing.assert_array_equal(shared.indices2, alone.indices2)
    np.testing.assert_allclose(shared.similarity, alone.similarity)
    assert shared.num_best_buddies == alone.num_best_buddies
    assert shared.num_mutual == matcher.num_best_buddies  # before the foreground filter
    with pytest.raises(ParameterError, match="other descriptors"):
        find_correspondences_descriptors(d2, d1, matcher=matcher)

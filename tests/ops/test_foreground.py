"""The foreground pipeline (vitdense.ops.foreground): hand-worked votes, and saliency votes on the cat composites."""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from tests import _composites
from vitdense.errors import ParameterError
from vitdense.ops.clustering import l2_normalize
from vitdense.ops.foreground import (
    cluster_votes,
    extract_with_saliency,
    foreground_clusters,
    part_unaries,
    saliency_maps,
    votes_needed,
)

#: the paper's stage 1 (vitdense.defaults' cosegmentation row) with denser k-means training rows for the small grids
STAGE1 = dict(elbow=0.975, thresh=0.065, votes_percentage=75, sample_interval=10, max_clusters=14, n_init=10,
              max_iter=300, seed=0)


@pytest.fixture(scope="module")
def cats(bundled_extractor, cat_set):
    """The six cat composites and the brick wall (300 x 400 each) at load size 112, stride 7: 112 x 149
    pixels, a 15 x 20 grid. Returns (descs, saliency maps, L2-normalised T x D descriptors, cat masks)."""
    images = cat_set[0] + [_composites.outlier_image()]
    descs, sal = extract_with_saliency(bundled_extractor, images, load_size=112, layer=11, facet="key", bin=False,
                                       stride=7, include_cls=False, low_res_saliency_maps=False)
    normed = [l2_normalize(d.descs) for d in descs]
    return descs, sal, normed, cat_set[1]


def on_cat(d, mask):
    """T bool: the cells whose centre falls on the pasted cat (the composite's ground truth)."""
    c = d.geometry.cell_centers().astype(int)
    return mask[c[:, 0], c[:, 1]]


@pytest.fixture(scope="module")
def five_voters(cats):
    """Stage 1 of the seven images where the first five cats vote; the sixth cat and the brick wall are
    clustered only."""
    _, sal, normed, _ = cats
    return foreground_clusters(normed, sal, 5, **STAGE1)


# ------------------------------------------------------------------ extract_with_saliency, saliency_maps
def test_extract_with_saliency_hands_back_the_pass_own_maps(cats):
    descs, sal, _, masks = cats
    assert len(sal) == 7
    for d, s in zip(descs, sal):
        assert d.grid == (15, 20) and d.descs.shape == (300, 384)
        assert s.shape == (15, 20) and s.dtype == np.float32
        np.testing.assert_array_equal(s, d.saliency.numpy())
    for d, s, m in zip(descs, sal, masks):   # the pasted cat is the salient object of every composite
        cat = on_cat(d, m).reshape(d.grid)
        assert s[cat].mean() > 3 * s[~cat].mean()          # measured 4.4x to 16x


def test_extract_with_saliency_low_resolution_pass(bundled_extractor, cat_on_bricks):
    """low_res_saliency_maps: a second pass at stride 14 and load 56 (56 x 74 pixels: a 4 x 5 grid) whose
    map is resized by nearest neighbour to the 15 x 20 descriptor grid of the 240 x 320 image at load 112."""
    image, mask = cat_on_bricks
    before = bundled_extractor.num_forward_calls
    [d], [s] = extract_with_saliency(bundled_extractor, [image], load_size=112, layer=11, facet="token", bin=False,
                                     stride=7, include_cls=False, low_res_saliency_maps=True)
    assert bundled_extractor.num_forward_calls == before + 2
    assert d.saliency is None                       # the descriptor pass computed none
    assert d.grid == (15, 20) and s.shape == (15, 20) and s.dtype == np.float32
    assert len(np.unique(s)) == 4 * 5 and s.min() == 0.0 and s.max() == 1.0
    cat = on_cat(d, mask).reshape(d.grid)
    assert s[cat].mean() > 3 * s[~cat].mean()


def test_saliency_maps_default_to_the_descriptors_own(cats):
    descs = cats[0][:2]
    out = saliency_maps(descs, None)
    assert [m.shape for m in out] == [(15, 20), (15, 20)]
    for m, d in zip(out, descs):
        assert m.dtype == np.float32 and np.array_equal(m, d.saliency.numpy())


def test_saliency_maps_reshape_flat_maps_and_resize_coarse_ones(cats):
    flat = np.linspace(0, 1, 300)                           # T values, row-major over the 15 x 20 grid
    coarse = torch.arange(12.0).reshape(3, 4)               # 3 x 4 -> 15 x 20: every value a 5 x 5 block
    # 4 x 5 -> 15 x 20: grid row i takes the map row whose span holds the row's centre, floor((i + 0.5) * 4 / 15):
    # rows 0-3, 4-6, 7-10, 11-14; columns in blocks of 4
    low = np.arange(20.0).reshape(4, 5)
    mask = np.zeros((15, 20), bool)
    mask[2:5, 7] = True
    out = saliency_maps(cats[0][:4], [flat, coarse, low, mask])
    assert all(m.shape == (15, 20) and m.dtype == np.float32 for m in out)
    np.testing.assert_allclose(out[0], flat.reshape(15, 20), rtol=1e-6)
    np.testing.assert_array_equal(out[1], np.kron(np.arange(12.0).reshape(3, 4), np.ones((5, 5))))
    np.testing.assert_array_equal(out[2], np.repeat(np.repeat(low, [4, 3, 4, 4], axis=0), 4, axis=1))
    np.testing.assert_array_equal(out[3], mask.astype(np.float32))


def test_saliency_maps_sentences(cats):
    descs = cats[0][:2]
    cases = [
        ([np.zeros((15, 20))], "saliency has 1 maps for 2 images: give one per image"),
        ([np.zeros((15, 20)), np.zeros((2, 15, 20))], "saliency[1] has shape (2, 15, 20): expected an h x w map"),
        ([np.zeros(301), np.zeros((15, 20))], "saliency[0] has shape (301,): expected an h x w map"),
    ]
    for given, sentence in cases:
        with pytest.raises(ParameterError, match=re.escape(sentence)):
            saliency_maps(descs, given)
    with pytest.raises(ParameterError, match=re.escape("image 1 has no saliency map: extract with saliency=True "
                                                       "or pass saliency=")):
        saliency_maps([descs[0], dataclasses.replace(descs[1], saliency=None)], None)


# ------------------------------------------------------------------------------------------------ votes
@pytest.mark.parametrize("voters,percentage,needed", [
    (3, 75, 3), (4, 75, 3), (6, 75, 5), (7, 75, 6), (6, 50, 3), (7, 50, 4),
    (1, 1, 1), (5, 0, 0), (5, 100, 5), (0, 75, 0),
])
def test_votes_needed_is_the_ceiling_of_the_share(voters, percentage, needed):
    assert votes_needed(voters, percentage) == needed


def test_votes_needed_ignores_float_round_off():
    pct = 0.07 * 100                     # 7.000000000000001: a percentage computed from a fraction
    assert math.ceil(100 * pct / 100) == 8
    assert votes_needed(100, pct) == 7


def test_cluster_votes_by_hand():
    # image A (2 x 3): cluster 0 mean (0 + 0.2) / 2 = 0.1, cluster 1 (0.5 + 0.7) / 2 = 0.6, cluster 2 0.1
    # image B: cluster 3 mean 0.8, cluster 1 0, cluster 0 0.05; cluster 2 absent
    labels = [np.array([[0, 0, 1], [1, 2, 2]]), np.array([[3, 3, 3], [1, 1, 0]])]
    sal = [np.array([[0.0, 0.2, 0.5], [0.7, 0.1, 0.1]]), np.array([[0.9, 0.8, 0.7], [0.0, 0.0, 0.05]])]
    votes = cluster_votes(labels, sal, 6, 0.1)
    assert votes.shape == (6,) and votes.dtype == np.int64
    assert votes.tolist() == [0, 1, 0, 1, 0, 0]           # a mean equal to the threshold does not vote
    assert cluster_votes(labels, sal, 6, 0.05).tolist() == [1, 1, 1, 1, 0, 0]
    # every mean exceeds -1, but a cluster absent from an image gets no vote from it
    assert cluster_votes(labels, sal, 6, -1.0).tolist() == [2, 2, 1, 1, 0, 0]
    assert cluster_votes([], [], 3, 0.1).tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------ foreground_clusters
def test_foreground_is_the_cat(cats, five_voters):
    """The six cats, the sixth too although it did not vote: it has the clusters the voters chose."""
    descs, _, _, masks = cats
    st = five_voters
    for d, fg, m in zip(descs, st.fg_cells, masks):
        cat = on_cat(d, m)
        # measured at seed 0: 0.86-0.90 of the cat's cells, at most 0.08 of the rest
        assert fg[cat].mean() > 0.8 and fg[~cat].mean() < 0.15, (fg[cat].mean(), fg[~cat].mean())


def test_votes_follow_the_paper_rule(cats, five_voters):
    """Image i votes for cluster c when c's mean saliency over i's cells exceeds thresh; c is foreground
    when ceil(75% of 5) = 4 voters vote for it; the last two images are clustered but do not vote."""
    descs, sal, _, _ = cats
    st = five_voters
    k = st.elbow.k
    assert 1 <= k <= 14 and st.elbow.centroids.shape == (k, 384)
    assert len(st.labels) == len(st.fg_cells) == 7
    assert all(lab.shape == (300,) and lab.dtype == np.int64 and 0 <= lab.min() and lab.max() < k
               for lab in st.labels)
    brute = np.zeros(k, np.int64)
    for lab, s in zip(st.labels[:5], sal[:5]):
        for c in range(k):
            cells = s.ravel()[lab == c]
            brute[c] += cells.size > 0 and cells.mean() > 0.065
    assert st.votes.tolist() == brute.tolist()
    assert st.votes_needed == 4
    assert st.salient.tolist() == [c for c in range(k) if brute[c] >= 4]
    assert st.salient.size >= 1
    for lab, fg in zip(st.labels, st.fg_cells):
        assert fg.dtype == bool and np.array_equal(fg, np.isin(lab, st.salient))
    assert st.fallback is None


def test_only_the_first_voters_vote(cats, five_voters):
    """The saliency of the two non-voters set to 1 everywhere: ignored; the sixth image, made a voter with
    that map, votes for every cluster present in it (the clustering itself never reads saliency)."""
    _, sal, normed, _ = cats
    loud = sal[:5] + [np.ones((15, 20), np.float32)] * 2
    assert np.array_equal(foreground_clusters(normed, loud, 5, **STAGE1).votes, five_voters.votes)
    st = foreground_clusters(normed, loud, 6, **STAGE1)
    assert all(np.array_equal(a, b) for a, b in zip(st.labels, five_voters.labels))
    present = np.bincount(st.labels[5], minlength=st.elbow.k) > 0
    assert st.votes.tolist() == (five_voters.votes + present).tolist()
    assert st.votes_needed == 5                            # ceil(75% of 6)


def test_fallback_leaves_the_brick_wall_empty(cats):
    """With the per-image fallback, every image votes; the brick wall has no cat, so no cell of it may be
    foreground, and a cat image keeps its voted cells unless the fallback filled an empty one."""
    _, sal, normed, _ = cats
    st = foreground_clusters(normed, sal, 7, fallback=True, **STAGE1)
    assert st.fallback.shape == (7,) and st.fallback.dtype == bool
    assert not st.fg_cells[6].any() and not st.fallback[6]
    for lab, fg, applied in zip(st.labels, st.fg_cells, st.fallback):
        voted = np.isin(lab, st.salient)
        if applied:
            assert not voted.any() and fg.any()
        else:
            assert np.array_equal(fg, voted)


# ----------------------------------------------------------------------------------------- part_unaries
def brute_squared_distances(x, c):
    """N x k squared distances, one pair at a time in float64."""
    x, c = x.double(), c.double()
    return torch.tensor([[float(((x[i] - c[j]) ** 2).sum()) for j in range(len(c))] for i in range(len(x))],
                        dtype=torch.float64)


def test_part_unaries_are_distances_to_the_nearest_background_and_each_part(cats, five_voters):
    _, _, normed, _ = cats
    x = normed[0]
    fg = torch.from_numpy(five_voters.fg_cells[0])
    parts = l2_normalize(torch.stack([x[fg][:20].mean(0), x[fg][20:].mean(0), x[5]]))       # K = 3
    background = torch.stack([x[~fg][:50].mean(0), x[~fg][50:].mean(0), normed[6].mean(0)])
    u = part_unaries(x, parts, background)
    assert u.shape == (300, 1 + 3) and u.dtype == x.dtype
    d_bg = brute_squared_distances(x, background).min(dim=1).values
    torch.testing.assert_close(u[:, 0].double(), d_bg, rtol=0, atol=1e-5)
    torch.testing.assert_close(u[:, 1:].double(), brute_squared_distances(x, parts), rtol=0, atol=1e-5)
    assert float(u[5, 3]) < 1e-5                           # row 5 is the third part itself
    assert float(u[fg, 1:].min(1).values.mean()) < float(u[fg, 0].mean())   # the cat lies nearer its parts


def test_part_unaries_without_background_use_far(cats):
    x = cats[2][1][:40].double()
    parts = x[[0, 10]]
    u = part_unaries(x, parts, torch.zeros(0, x.shape[1], dtype=x.dtype))
    assert u.shape == (40, 3) and u.dtype == torch.float64
    assert (u[:, 0] == 4.0).all()                          # unit vectors: no squared distance exceeds 4
    assert float(u[:, 1:].max()) <= 4.0 + 1e-9
    assert float(u[0, 1]) < 1e-9 and float(u[10, 2]) < 1e-9
    torch.testing.assert_close(u[:, 1:], brute_squared_distances(x, parts), rtol=0, atol=1e-9)

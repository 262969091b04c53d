"""Robust votes (vitdense.ops.voting): unit tests on small label maps plus real saliency of a photo."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitdense.apps.cosegmentation import cluster_votes, votes_needed
from vitdense.ops.clustering import l2_normalize
from vitdense.ops.voting import cluster_stats, count_votes, fallback_cells, image_thresholds, otsu_threshold


def test_otsu_splits_two_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.1, 0.02, 500), rng.normal(0.7, 0.05, 100)]).clip(0, 1)
    t = otsu_threshold(v)
    assert 0.2 < t < 0.6
    assert image_thresholds([v], 0.065, "absolute")[0] == 0.065
    assert image_thresholds([v], 0.065, "relative")[0] == pytest.approx(t)
    assert image_thresholds([np.zeros(10)], 0.065, "relative")[0] == 0.065  # never below thresh


def test_cluster_stats_share_and_mean():
    share, mean = cluster_stats([np.array([0, 0, 1, 2])], [np.array([0.2, 0.4, 1.0, 0.0])], 4)
    assert share[0].tolist() == [0.5, 0.25, 0.25, 0.0]
    assert mean[0].tolist() == pytest.approx([0.3, 1.0, 0.0, 0.0])


def _labels_saliency():
    """Three images of 100 cells: cluster 0 = background (all images), 1 = object of images 0 and 1
    only (another instance), 2 = object of image 2 only, 3 = a salient thing in image 2 only."""
    labs, sals = [], []
    for i in range(3):
        lab = np.zeros(100, np.int64)
        sal = np.full(100, 0.01)
        obj = 1 if i < 2 else 2
        lab[40:70] = obj
        sal[40:70] = 0.6
        if i == 2:
            lab[90:] = 3
            sal[90:] = 0.5
        labs.append(lab)
        sals.append(sal)
    return labs, sals


def test_paper_rule_is_unchanged():
    labs, sals = _labels_saliency()
    v = count_votes(labs, sals, 4, thresh=0.065, votes_percentage=75)
    assert v.votes.tolist() == cluster_votes(labs, sals, 4, 0.065).tolist() == [0, 2, 1, 1]
    assert (v.needed == votes_needed(3, 75)).all() and v.salient.size == 0  # 3 votes needed: nothing


def test_presence_votes_need_the_images_that_have_the_cluster():
    labs, sals = _labels_saliency()
    v = count_votes(labs, sals, 4, thresh=0.065, votes_percentage=75, vote_mode="present")
    # cluster 1 is present in 2 images, salient in both: foreground; clusters 2 and 3 are seen in one
    # image only (min_images=2): not common; the background never votes
    assert v.salient.tolist() == [1]
    assert v.needed.tolist() == [3, 2, 2, 2]
    one = count_votes(labs, sals, 4, thresh=0.065, votes_percentage=75, vote_mode="present", min_images=1)
    assert one.salient.tolist() == [1, 2, 3]


def _normed(labs, centres):
    """Descriptors: each cell is its cluster's centre plus a little noise (T x D, unit rows)."""
    g = torch.Generator().manual_seed(0)
    return [l2_normalize(centres[torch.from_numpy(lab)] + 0.01 * torch.randn(len(lab), centres.shape[1], generator=g))
            for lab in labs]


def test_fallback_fills_an_empty_image_unless_it_is_an_outlier():
    labs, sals = _labels_saliency()
    centres = torch.eye(8)[:4]
    centres[2] = l2_normalize(centres[1:2] + 0.3 * torch.eye(8)[5:6])[0]  # another instance: near cluster 1
    centres[3] = torch.eye(8)[7]                                              # unrelated to the object
    normed = _normed(labs, centres)
    v = count_votes(labs, sals, 4, thresh=0.065, votes_percentage=75, vote_mode="present")
    fg = [np.isin(l, v.salient) for l in labs]
    assert not fg[2].any()
    out, applied, sims = fallback_cells(normed, labs, sals, fg, 4, thresh=0.065)
    assert applied.tolist() == [False, False, True]
    assert np.array_equal(out[2], np.isin(labs[2], [2, 3]))  # its salient clusters
    assert np.array_equal(out[0], fg[0]) and np.array_equal(out[1], fg[1])
    # the same image whose salient cells are unrelated to the set's object is an outlier: stays empty
    far = [lab.copy() for lab in labs]
    far[2][40:70] = 3
    out, applied, sims = fallback_cells(_normed(far, centres), far, sals, fg, 4, thresh=0.065)
    assert not applied.any() and not out[2].any() and sims[2] < np.nanmin(sims[:2]) - 0.1
    # no clear object in the saliency (flat map): no fallback either
    flat = [s.copy() for s in sals]
    flat[2][:] = 0.3
    out, applied, _ = fallback_cells(normed, labs, flat, fg, 4, thresh=0.065)
    assert not applied.any()

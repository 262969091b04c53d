"""Co-segmentation on real photographs with the bundled model: the six cat composites of
tests/_composites.py (the chelsea cat's face pasted on other real photos; the paste is the truth)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vitdense.apps.cosegmentation import (
    CosegResult,
    cosegment,
    cosegment_descriptors,
    grabcut_refine,
    grid_to_size,
)
from vitdense.errors import ParameterError
from vitdense.eval.metrics import jaccard
from tests import REPO

#: the paper's vote rule (DINOv2's measured defaults count votes where a cluster is present)
PAPER_VOTES = dict(thresh_mode="absolute", vote_mode="all", fallback=False)


@pytest.fixture(scope="module")
def coseg_runs(cat_set_descriptors) -> dict[tuple[int, bool], CosegResult]:
    """Co-segmentation of the six cats with k-means seeds 0, 1, 2, GrabCut on and off (no network)."""
    descs, sal, images = cat_set_descriptors
    return {(seed, refine): cosegment_descriptors(descs[:6], sal[:6], images[:6] if refine else None,
                                                  refine=refine, seed=seed, **PAPER_VOTES)
            for seed in (0, 1, 2) for refine in (True, False)}


@pytest.fixture(scope="module")
def coseg(coseg_runs) -> CosegResult:
    return coseg_runs[(0, True)]


# ------------------------------------------------------------------------------------ co-segmentation
def test_cosegmentation_matches_ground_truth(coseg_runs, cat_set):
    images, gts = cat_set
    scores = {}
    for (seed, refine), res in coseg_runs.items():
        assert res.reason is None and res.num_images == 6
        assert [m.shape for m in res.masks] == [g.shape for g in gts]  # original resolution
        assert all(m.dtype == bool for m in res.masks)
        assert all(res.refined) == refine
        scores[seed, refine] = [jaccard(m, g) for m, g in zip(res.masks, gts)]
    refined = np.array([scores[s, True] for s in (0, 1, 2)])      # seeds x images
    # measured (refined) mean Jaccard per seed 0.725 0.731 0.777; per image (seed 0): grass 0.99,
    # coffee 0.32 (the cup joins the mask), rocket 0.88, astronaut 0.47 (her suit joins), Hubble 0.98,
    # motorcycle 0.71. Paper's thresh 0.065; thresh=0.1 measured better on this model (see report).
    assert refined.mean() > 0.68, refined.mean(axis=1)
    assert refined[:, [0, 4]].min() > 0.93          # plain backgrounds: near perfect
    recall = np.mean([(m & g).sum() / g.sum() for m, g in zip(coseg_runs[0, True].masks, gts)])
    assert recall > 0.9, recall                      # the cat is always found (measured 0.986)
    raw = np.array([scores[s, False] for s in (0, 1, 2)])
    # GrabCut: measured 0.711 -> 0.744 averaged over seeds
    assert refined.mean() > raw.mean() + 0.015, (raw.mean(), refined.mean())


def test_votes_and_labels_are_consistent(coseg):
    assert coseg.votes.shape == (coseg.num_clusters,)
    assert (coseg.votes[coseg.salient_clusters] >= coseg.votes_needed).all()
    assert (np.delete(coseg.votes, coseg.salient_clusters) < coseg.votes_needed).all()
    assert coseg.votes_needed == 5  # ceil(6 * 75 / 100)
    for lab, sal, gm, g in zip(coseg.labels, coseg.saliency, coseg.grid_masks, coseg.geometries):
        assert lab.shape == sal.shape == gm.shape == g.grid
        assert 0 <= lab.min() and lab.max() < coseg.num_clusters
        assert np.array_equal(gm, np.isin(lab, coseg.salient_clusters))


def test_unrefined_masks_are_the_upsampled_grid(coseg_runs):
    raw = coseg_runs[0, False]
    assert raw.salient_clusters.tolist() == coseg_runs[0, True].salient_clusters.tolist()
    for m, gm, g in zip(raw.masks, raw.grid_masks, raw.geometries):
        assert np.array_equal(m, g.upsample(gm, mode="nearest").astype(bool))


def test_grabcut_refine_edge_cases(cat_set):
    img = cat_set[0][0]
    empty = np.zeros(img.shape[:2], bool)
    out, ok = grabcut_refine(img, empty)
    assert not ok and not out.any()
    out, ok = grabcut_refine(img, ~empty)
    assert not ok and out.all()


def test_grid_to_size_keeps_cells_aligned(coseg):
    g = coseg.geometries[0]
    lab = coseg.labels[0]
    up = grid_to_size(lab, g, None)  # load-size raster
    assert up.shape == tuple(g.resized_size)
    h, w = g.grid
    ys = np.arange(h) * g.stride + g.patch // 2
    xs = np.arange(w) * g.stride + g.patch // 2
    assert np.array_equal(up[np.ix_(ys, xs)], lab)  # every cell centre carries its own label


def test_single_image(cat_set_descriptors, cat_set):
    descs, sal, images = cat_set_descriptors
    res = cosegment_descriptors(descs[:1], sal[:1], images[:1])
    assert res.votes_needed == 1 and res.reason is None
    # measured 0.981 (grass background)
    assert jaccard(res.masks[0], cat_set[1][0]) > 0.9


def test_empty_foreground_returns_reason(cat_set_descriptors):
    descs, sal, images = cat_set_descriptors
    res = cosegment_descriptors(descs[:6], sal[:6], images[:6], thresh=1.0)  # no mean saliency exceeds 1
    assert res.salient_clusters.size == 0 and res.is_empty
    assert "votes" in res.reason and "thresh" in res.reason
    assert [m.shape for m in res.masks] == [g.orig_size for g in res.geometries]


def test_few_descriptors_cap_the_clusters(cat_set_descriptors, cat_set):
    """A sample interval above the grid size leaves one training row per image: k <= 6, still works."""
    descs, sal, images = cat_set_descriptors
    res = cosegment_descriptors(descs[:6], sal[:6], None, sample_interval=10 ** 6, refine=False)
    assert 1 <= res.num_clusters <= 6
    assert len(res.elbow_objectives) == res.num_clusters
    assert all(m.shape == g.shape for m, g in zip(res.masks, cat_set[1]))


def test_outlier_image_gets_empty_mask(bundled_extractor, cat_set_descriptors, coseg):
    """With the CLS token of the last layer (the key CLS of this model is ~0.99 similar for any image),
    the brick wall is an outlier at the paper's 0.7: empty mask, no vote, the cats still segmented."""
    descs, sal, images = cat_set_descriptors
    token = bundled_extractor.extract(images, layer=11, facet="token", stride=14, include_cls=True)
    with_token_cls = [dataclasses.replace(d, cls=t.cls) for d, t in zip(descs, token)]
    res = cosegment_descriptors(with_token_cls, sal, images, remove_outliers=True, outliers_thresh=0.7,
                                **PAPER_VOTES)
    # measured similarities to the mean: cats 0.84-0.96, brick wall 0.59
    assert res.inliers.tolist() == [True] * 6 + [False]
    assert int(np.argmin(res.cls_similarity)) == 6
    assert not res.masks[6].any() and (res.labels[6] == -1).all()
    assert res.votes_needed == 5 and res.votes.max() <= 6
    # the outlier takes no part: the six cats get exactly the masks of the set without it
    assert all(np.array_equal(a, b) for a, b in zip(res.masks[:6], coseg.masks))
    # the official key-facet CLS: the outlier is still the least similar image
    key = cosegment_descriptors(descs, sal, None, remove_outliers=True, refine=False)
    assert int(np.argmin(key.cls_similarity)) == 6
    everyone_out = cosegment_descriptors(with_token_cls, sal, None, remove_outliers=True, outliers_thresh=1.0,
                                         refine=False)
    assert everyone_out.is_empty and "outlier" in everyone_out.reason


def test_reclustering_reuses_descriptors(bundled_extractor, cat_set_descriptors):
    """Changing elbow / votes only re-clusters: no network pass."""
    descs, sal, images = cat_set_descriptors
    before = bundled_extractor.num_forward_calls
    a = cosegment_descriptors(descs[:6], sal[:6], None, elbow=0.9, refine=False, **PAPER_VOTES)
    b = cosegment_descriptors(descs[:6], sal[:6], None, elbow=0.99, votes_percentage=100, refine=False,
                              **PAPER_VOTES)
    assert bundled_extractor.num_forward_calls == before
    assert a.num_clusters <= b.num_clusters
    assert b.votes_needed == 6


@pytest.mark.parametrize("knob", [dict(elbow=0.0), dict(elbow=1.5), dict(votes_percentage=-1),
                                  dict(votes_percentage=101), dict(sample_interval=0), dict(sample_interval=2.5),
                                  dict(thresh=1.5), dict(outliers_thresh=2.0), dict(max_clusters=0)])
def test_invalid_knobs_fail_before_the_network(bundled_extractor, cat_set, cat_set_descriptors, knob):
    before = bundled_extractor.num_forward_calls
    name = next(iter(knob))
    with pytest.raises(ParameterError, match=name):
        cosegment(bundled_extractor, cat_set[0][:2], **knob)
    assert bundled_extractor.num_forward_calls == before
    with pytest.raises(ParameterError, match=name):
        cosegment_descriptors(cat_set_descriptors[0][:2], cat_set_descriptors[1][:2], None, refine=False, **knob)


def test_descriptor_level_errors(cat_set_descriptors):
    descs, sal, images = cat_set_descriptors
    with pytest.raises(ParameterError, match="refine"):
        cosegment_descriptors(descs[:2], sal[:2], None)
    with pytest.raises(ParameterError, match="saliency"):
        cosegment_descriptors([dataclasses.replace(descs[0], saliency=None)], None, None, refine=False)
    with pytest.raises(ParameterError, match="empty"):
        cosegment_descriptors([], None, None, refine=False)
    with pytest.raises(ParameterError, match="does not match"):
        cosegment_descriptors(descs[:2], sal[:2], [images[0], images[0][:100]])


def test_cosegment_end_to_end_low_res_saliency(bundled_extractor, cat_set):
    """The full pipeline on three images at load size 112, with the official low-resolution saliency."""
    images, gts = cat_set[0][:3], cat_set[1][:3]
    before = bundled_extractor.num_forward_calls
    res = cosegment(bundled_extractor, images, load_size=112, low_res_saliency_maps=True)
    assert bundled_extractor.num_forward_calls > before
    assert res.params["low_res_saliency_maps"] and res.params["descriptors"]["stride"] == 7
    assert all(s.shape == g.grid for s, g in zip(res.saliency, res.geometries))
    assert all(m.shape == g.shape for m, g in zip(res.masks, gts))
    # measured mean 0.75 at this small size
    assert np.mean([jaccard(m, g) for m, g in zip(res.masks, gts)]) > 0.5


def test_cosegmentation_of_two_different_felines_matches_the_hand_drawn_masks(bundled_extractor):
    """The quality check on real photos: bench/data/coseg_sets/felines_2 (a house cat's face and a
    running cheetah, masks drawn by hand) through ``cosegment`` with the library's defaults, as
    bench/bench_coseg_sets.py runs it; its README figure is mean Jaccard 0.877 (2026-12-04)."""

    from PIL import Image
    root = REPO / "bench/data/coseg_sets/felines_2"
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    images = [Image.open(root / "images" / f"{s}.jpg").convert("RGB") for s in stems]
    truth = [np.asarray(Image.open(root / "masks" / f"{s}.png")) > 0 for s in stems]
    res = cosegment(bundled_extractor, images)
    scores = [jaccard(m, g) for m, g in zip(res.masks, truth)]
    assert res.reason is None and all(m.any() for m in res.masks), scores
    assert np.mean(scores) > 0.85 and min(scores) > 0.75, dict(zip(stems, scores))

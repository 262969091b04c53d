"""Similarity inspection on real photographs (bundled DINOv2 ViT-S/14)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vitdense.apps.similarity import inspect_similarity, inspect_similarity_descriptors
from vitdense.errors import ParameterError


@pytest.fixture(scope="module")
def pair(bundled_extractor):
    """Inspection defaults: layer 11, default facet (token here), unbinned, stride 7, load 224, CLS."""
    from skimage import data
    return bundled_extractor.extract([data.chelsea(), data.astronaut()], layer=11,
                                     load_size=224, include_cls=True)


def cosine(q: torch.Tensor, descs: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(descs.double(), q.double()[None], dim=1).numpy()


@pytest.mark.parametrize("point", [(150.0, 200.0), (0.0, 0.0), (299.0, 450.0), (40.5, 333.3)])
def test_query_point_is_its_own_best_match(pair, point):
    da, db = pair
    r = inspect_similarity_descriptors(da, db, point, top_n=5, refine=False)  # the paper's cell rule
    qi = r.query_index
    assert r.query_point == point and not r.is_cls
    assert r.map_a.shape == da.grid and r.map_b.shape == db.grid
    assert r.map_a.reshape(-1)[qi] == pytest.approx(1.0, abs=1e-5)
    assert r.top_a_indices[0] == qi and r.top_a_similarity[0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(r.top_a_points[0], r.query_cell_point)
    # the query cell is the nearest one: within half a cell (7 * 300/224 = 9.4 px) inside the grid,
    # up to a whole cell at the borders (the first centre sits half a patch = 7 px in, resized)
    centres = da.geometry.cell_centers()
    for k in range(2):
        lo, hi = centres[:, k].min(), centres[:, k].max()
        tol = 4.7 if lo <= point[k] <= hi else 9.4
        assert abs(r.query_cell_point[k] - point[k]) <= tol + 1e-6


def test_maps_and_top_n_against_brute_force(pair):
    da, db = pair
    r = inspect_similarity_descriptors(da, db, (120.0, 180.0), top_n=4, refine=False)
    q = da.descs[r.query_index]
    ref_a, ref_b = cosine(q, da.descs), cosine(q, db.descs)
    np.testing.assert_allclose(r.map_a.reshape(-1), ref_a, atol=1e-5)
    np.testing.assert_allclose(r.map_b.reshape(-1), ref_b, atol=1e-5)
    order = np.argsort(-ref_b)[:4]
    np.testing.assert_allclose(r.top_b_similarity, ref_b[order], atol=1e-5)
    assert np.all(np.diff(r.top_b_similarity) <= 0)
    np.testing.assert_allclose(r.top_b_points, db.geometry.cell_centers()[r.top_b_indices])
    assert np.all((r.top_b_points >= 0) & (r.top_b_points < db.geometry.orig_size))
    full_a, full_b = r.upsampled_maps()
    assert full_a.shape == (300, 451) and full_b.shape == (512, 512)


def test_refined_query_answers_as_a_click(pair):
    """Refined (the default): the query is A's descriptor interpolated at the exact pixel, and
    ``match_b`` is what click-to-correspond answers for that pixel (sub-cell, not a cell centre)."""
    from vitdense.apps.correspondences import PointMatcher, point_descriptors
    da, db = pair
    matcher = PointMatcher(da, db)
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(40, 260, 8), rng.uniform(40, 410, 8)], axis=1)
    off_centre = 0
    centres_b = db.geometry.cell_centers()
    for y, x in points:
        r = inspect_similarity_descriptors(da, db, (float(y), float(x)))
        assert r.params["refine"] is True
        np.testing.assert_allclose(r.match_b, matcher.query(float(y), float(x)).point, atol=1e-3)
        off_centre += np.abs(centres_b - np.asarray(r.match_b)).sum(axis=1).min() > 0.5
        cell = inspect_similarity_descriptors(da, db, (float(y), float(x)), refine=False)
        assert cell.match_b in [tuple(c) for c in centres_b.tolist()]
    assert off_centre >= 6
    r = inspect_similarity_descriptors(da, db, tuple(points[0]))
    q = point_descriptors(torch.nn.functional.normalize(da.descs, dim=1), da.geometry, points[:1])[0]
    np.testing.assert_allclose(r.map_a.reshape(-1), cosine(q, da.descs), atol=1e-5)
    np.testing.assert_allclose(r.map_b.reshape(-1), cosine(q, db.descs), atol=1e-5)


def test_cls_query(pair):
    da, db = pair
    r = inspect_similarity_descriptors(da, db, None, top_n=3)
    assert r.is_cls and r.query_point is None and r.query_cell_point is None
    np.testing.assert_allclose(r.map_a.reshape(-1), cosine(da.cls, da.descs), atol=1e-5)
    np.testing.assert_allclose(r.map_b.reshape(-1), cosine(da.cls, db.descs), atol=1e-5)
    assert len(r.top_a_indices) == 3


def test_self_similarity_and_top_n_cap(pair):
    da, _ = pair
    r = inspect_similarity_descriptors(da, None, (100.0, 100.0), top_n=10_000)
    np.testing.assert_array_equal(r.map_a, r.map_b)
    assert len(r.top_b_indices) == da.descs.shape[0]     # capped at T


def test_end_to_end_with_point(bundled_extractor):
    from skimage import data
    r = inspect_similarity(bundled_extractor, data.coffee(), data.chelsea(), (200.0, 300.0),
                           top_n=2, load_size=112)
    assert r.params["stride"] == 7 and r.params["layer"] == [11] and r.params["top_n"] == 2
    assert r.map_a.reshape(-1)[r.query_index] == pytest.approx(1.0, abs=1e-5)


def test_errors(pair, bundled_extractor):
    da, db = pair
    for point in [(-1.0, 3.0), (300.0, 3.0), (3.0, 451.0), (float("nan"), 1.0)]:
        with pytest.raises(ParameterError, match="outside"):
            inspect_similarity_descriptors(da, db, point)
    with pytest.raises(ParameterError, match="point"):
        inspect_similarity_descriptors(da, db, (1.0,))
    with pytest.raises(ParameterError, match="top_n"):
        inspect_similarity_descriptors(da, db, (1.0, 1.0), top_n=0)
    with pytest.raises(ParameterError, match="include_cls"):
        inspect_similarity_descriptors(dataclasses.replace(da, cls=None), db, None)
    with pytest.raises(ParameterError, match="unbinned"):
        binned = dataclasses.replace(da, descs=da.descs.repeat(1, 17))
        inspect_similarity_descriptors(binned, None, None)
    with pytest.raises(ParameterError, match="bin=False"):
        inspect_similarity(bundled_extractor, np.zeros((64, 64, 3), np.uint8), point=None, bin=True)
    with pytest.raises(ParameterError, match="dimension"):
        inspect_similarity_descriptors(da, dataclasses.replace(db, descs=db.descs[:, :10]), (1.0, 1.0))

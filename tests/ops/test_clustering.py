"""k-means, the elbow rule and row sampling (vitdense.ops.clustering) on real pixels and real descriptors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from vitdense.errors import ParameterError
from vitdense.ops.clustering import (assign, elbow_kmeans, kmeans, l2_normalize, relabel_by_size, row_norms,
                                     sample_rows, sample_rows_balanced, squared_distances)


@pytest.fixture(scope="module")
def pixel_colours() -> torch.Tensor:
    """3000 real RGB pixels of the astronaut photo (N x 3, in [0, 1])."""
    px = data.astronaut().reshape(-1, 3)[::87][:3000]
    return torch.from_numpy(px.astype(np.float32) / 255.0)


def test_kmeans_matches_sklearn_inertia(pixel_colours):
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    for k in (3, 7):
        ours = kmeans(pixel_colours, k, n_init=10, seed=0)
        with threadpool_limits(1):  # sklearn's OpenMP threads crawl on a busy 2-core machine
            ref = KMeans(k, n_init=10, random_state=0).fit(pixel_colours.numpy())
        assert ours.inertia <= ref.inertia_ * 1.01, (k, ours.inertia, ref.inertia_)
        labels, d = assign(pixel_colours, ours.centroids)
        assert torch.equal(labels, ours.labels)
        assert abs(float(d.sum()) - ours.inertia) < 1e-3 * ours.inertia


def test_kmeans_is_deterministic_and_validates(pixel_colours):
    a, b = kmeans(pixel_colours, 6, seed=3), kmeans(pixel_colours, 6, seed=3)
    assert torch.equal(a.centroids, b.centroids)
    with pytest.raises(ParameterError, match="k=4"):
        kmeans(pixel_colours[:3], 4)  # more clusters than points
    with pytest.raises(ParameterError, match="k=0"):
        kmeans(pixel_colours, 0)
    perm = relabel_by_size(np.array([2, 2, 2, 0, 1, 1]), 3)
    assert perm.tolist() == [2, 1, 0]


def test_squared_distances_with_given_row_norms_are_the_same_numbers(cat_set_descriptors, pixel_colours):
    """Row norms computed once (``x_sq``) and the product doubled after the GEMM give the textbook
    expansion ``|x|^2 - (2x) c + |c|^2`` bit for bit (doubling is exact), close to the brute force."""
    x = l2_normalize(cat_set_descriptors[0][0].descs)
    for rows, c in ((x, x[::97][:7]), (pixel_colours * 3 - 1, pixel_colours[:5] * 2)):
        expanded = ((rows * rows).sum(1, keepdim=True) - (2.0 * rows) @ c.T + (c * c).sum(1)[None]).clamp_min(0)
        given = squared_distances(rows, c, row_norms(rows))
        assert torch.equal(given, expanded) and torch.equal(squared_distances(rows, c), expanded)
        assert torch.allclose(given, ((rows[:, None] - c[None]) ** 2).sum(-1), atol=1e-4)
        labels, d = assign(rows, c, chunk=100, x_sq=row_norms(rows))
        assert torch.equal(labels, expanded.argmin(1)) and torch.equal(d, expanded.min(1).values)


def test_elbow_stops_where_improvement_stalls(cat_set_descriptors):
    """On real descriptors the objective drops until the elbow rule stops it; k never exceeds the sample."""
    descs = cat_set_descriptors[0]
    full = l2_normalize(torch.cat([d.descs for d in descs[:6]]))
    res = elbow_kmeans(full[::100], full, elbow=0.975)
    obj = res.objectives
    assert len(obj) == res.k and 2 <= res.k <= 14
    assert all(b < a for a, b in zip(obj[:-2], obj[1:-1]))  # improving before the stop
    assert res.k < 14                  # the elbow stopped it (not the cap)
    assert obj[-1] > 0.975 * obj[-2]  # stopped at the first k that did not pay off
    assert all(b <= 0.975 * a for a, b in zip(obj[:-2], obj[1:-1]))
    tiny = elbow_kmeans(full[:3], full, elbow=0.999999, max_clusters=14)
    assert tiny.k <= 3


def test_balanced_sampling_weighs_every_image_the_same():
    """A small object (10 foreground cells) and a close-up (1000) give as many training rows each."""
    small = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)
    big = 100 + torch.arange(1000, dtype=torch.float32)[:, None].repeat(1, 3)
    plain = sample_rows([small, big], 100)
    assert plain.shape[0] == 11 and (plain[:, 0] < 100).sum() == 1
    bal = sample_rows_balanced([small, big, big[:0]], 100)
    assert bal.shape[0] == 12 and (bal[:, 0] < 100).sum() == 6  # m = ceil((1 + 10) / 2) per non-empty block
    assert bal[0, 0] == 0 and bal[5, 0] == 9 and bal[6, 0] == 100 and bal[11, 0] == 1099  # evenly spaced, ends kept

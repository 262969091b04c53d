"""Test-time mirroring (vitdense.ops.mirror) on a real photo with exact truth (bundled DINOv2 ViT-S/14)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitdense.apps.correspondences import PointMatcher, extract_pair
from vitdense.eval.datasets import warped_pair
from vitdense.eval.metrics import pck
from vitdense.ops.mirror import extract_oriented, mirrored_field, orientation_score


@pytest.fixture(scope="module")
def cat():
    """scikit-image's chelsea at 224 x 336: at load 224 and stride 7 its grid (31 x 47) spans the
    image exactly, so the mirror of every cell centre is a cell centre."""
    from skimage import data
    return np.asarray(Image.fromarray(data.chelsea()).resize((336, 224), Image.LANCZOS))


@pytest.fixture(scope="module")
def cached_extractor():
    """The bundled model with an in-memory descriptor cache: the mirrored passes repeat images."""
    from tests.conftest import TEST_CHECKPOINT

    from vitdense.features.cache import DescriptorCache
    from vitdense.features.extractor import Extractor
    return Extractor("dinov2_vits14_imgfocus", device="cpu", checkpoint=TEST_CHECKPOINT, cache=DescriptorCache())


@pytest.fixture(scope="module")
def warped_cat(cat):
    """(B, points on A, their truth on B, B mirrored, truth on the mirrored B)."""
    out, _, pa, pb = warped_pair(cat, seed=1, grid=10)
    pbm = pb.copy()
    pbm[:, 1] = out.shape[1] - pbm[:, 1]
    return out, pa, pb, np.ascontiguousarray(out[:, ::-1]), pbm


def test_mirrored_field_is_the_mirror_read_back_on_the_own_grid(bundled_extractor, cat):
    flipped = np.ascontiguousarray(cat[:, ::-1])
    d, dm = bundled_extractor.extract([cat, flipped], layer=7, load_size=224)
    field = mirrored_field(dm, d.geometry)
    h, w = d.grid
    expected = torch.nn.functional.normalize(dm.descs.float(), dim=1).reshape(h, w, -1).flip(1).reshape(h * w, -1)
    assert field.geometry is d.geometry and field.descs.shape == d.descs.shape
    torch.testing.assert_close(field.descs.float(), expected, rtol=0, atol=1e-5)
    # not the unmirrored descriptors: the network is not mirror-equivariant (else mirroring were moot)
    cos = (torch.nn.functional.normalize(d.descs.float(), dim=1) * expected).sum(1)
    assert float(cos.mean()) < 0.95


def test_a_mirrored_target_is_answered_in_its_own_pixels(cached_extractor, cat, warped_cat):
    """A against a mirrored warp of itself, with log-binned layer 7 (load 112 to keep the test
    short): clicks land far from the truth unmirrored; with the mirrored field chosen they land
    where the warp says."""
    out, pa, pb, mirrored, pbm = warped_cat
    size = out.shape[:2]
    d1, d2 = extract_pair(cached_extractor, cat, mirrored, flip=False, saliency=False, load_size=112, layer=7,
                          bin=True)
    plain = PointMatcher(d1, d2)
    plain_pck = pck(np.array([plain.query(*p).point for p in pa]), pbm, 0.05, reference="image", image_size=size)
    d1, d2f, flipped = extract_oriented(cached_extractor, cat, mirrored, layer=7, bin=True, load_size=112)
    assert flipped and d2f.geometry.orig_size == size and d2f.params["mirrored"]
    m = PointMatcher(d1, d2f)
    answers = np.array([m.query(*p).point for p in pa])
    # measured: 1.0 with the mirrored field against 0.44 without
    assert pck(answers, pbm, 0.05, reference="image", image_size=size) >= 0.85 > plain_pck + 0.3
    # the unmirrored warp keeps its own orientation, and the pair extraction (mirroring on) agrees
    d1, d2, flipped = extract_oriented(cached_extractor, cat, out, layer=7, bin=True, load_size=112)
    assert not flipped
    same = extract_pair(cached_extractor, cat, out, saliency=False, load_size=112, layer=7, bin=True, flip=True)[1]
    torch.testing.assert_close(same.descs, d2.descs)


def test_orientation_score_is_the_mean_best_similarity():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 8, generator=g), torch.randn(30, 8, generator=g)
    full = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    for chunk in (1, 7, None):
        assert orientation_score(a, b, chunk) == pytest.approx(float(full.max(1).values.mean()), abs=1e-6)
    assert orientation_score(b, b * 2) == pytest.approx(1.0, abs=1e-6)

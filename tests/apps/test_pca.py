"""PCA of descriptors on real photographs (bundled DINOv2 ViT-S/14)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vitdense.apps.pca import PCAResult, pca, pca_descriptors, pca_rgb
from vitdense.errors import ParameterError


@pytest.fixture(scope="module")
def images():
    from skimage import data
    return [data.chelsea(), data.coffee()]


@pytest.fixture(scope="module")
def descs(bundled_extractor, images):
    """The PCA defaults (layer 11, default facet = token here, unbinned, stride 7, load 224) + saliency."""
    return bundled_extractor.extract(images, layer=11, load_size=224, saliency=True)


@pytest.fixture(scope="module")
def result(descs) -> PCAResult:
    return pca_descriptors(descs)


def test_shapes_and_explained_variance(descs, result):
    assert len(result.components) == 2
    for d, comp in zip(descs, result.components):
        assert comp.shape == (*d.grid, 4) and comp.dtype == np.float32
    assert result.axes.shape == (4, 384) and result.mean.shape == (384,)
    ev, ratio = result.explained_variance, result.explained_variance_ratio
    assert np.all(np.diff(ev) < 0) and np.all(ev > 0)
    assert np.all(ratio > 0) and ratio.sum() < 1
    assert ratio[0] > 0.2                       # measured 0.52 (layer-11 tokens)


def test_components_are_orthonormal_and_uncorrelated(descs, result):
    np.testing.assert_allclose(result.axes @ result.axes.T, np.eye(4), atol=1e-5)
    proj = np.concatenate([c.reshape(-1, 4) for c in result.components]).astype(np.float64)
    cov = np.cov(proj, rowvar=False)
    np.testing.assert_allclose(np.diag(cov), result.explained_variance, rtol=1e-4)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 1e-4 * cov[0, 0]
    # the projections are exactly the centred descriptors on the axes
    x = torch.cat([d.descs for d in descs]).numpy().astype(np.float64)
    np.testing.assert_allclose(x.mean(0), result.mean, atol=1e-4)
    np.testing.assert_allclose((x - result.mean) @ result.axes.T, proj, atol=1e-3)


def test_matches_scikit_learn(descs, result):
    from sklearn.decomposition import PCA
    x = torch.cat([d.descs for d in descs]).numpy()
    ref = PCA(n_components=4, svd_solver="covariance_eigh").fit(x)
    np.testing.assert_allclose(result.explained_variance, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(result.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(result.axes @ ref.components_.T), np.eye(4), atol=1e-4)


def test_first_component_separates_foreground(descs, result):
    for d, comp in zip(descs, result.components):
        fg = d.saliency.numpy() > 0.05
        assert 0.1 < fg.mean() < 0.9
        c0 = comp[..., 0]
        gap = abs(c0[fg].mean() - c0[~fg].mean()) / c0.std()
        # measured: 2.2 (chelsea) and 1.5 (coffee) standard deviations (layer-11 tokens)
        assert gap > 1.0


def test_rgb_is_jointly_normalised(result):
    rgb = result.rgb()
    assert [r.shape for r in rgb] == [(*c.shape[:2], 3) for c in result.components]
    assert all(r.dtype == np.float32 and r.min() >= 0 and r.max() <= 1 for r in rgb)
    flat = np.concatenate([r.reshape(-1, 3) for r in rgb])
    np.testing.assert_allclose(flat.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(flat.max(0), 1, atol=1e-6)
    # joint, not per image: the same component value gets the same colour in both images
    c = np.concatenate([x.reshape(-1, 4) for x in result.components])[:, :3]
    expected = (c - c.min(0)) / (c.max(0) - c.min(0))
    np.testing.assert_allclose(flat, expected, atol=1e-5)
    # a single array in, a single array out; the official script's last-three channels
    last = pca_rgb(result.components[0], channels=(-3, -2, -1))
    assert isinstance(last, np.ndarray) and last.shape == (*result.components[0].shape[:2], 3)
    assert last.min() == 0 and last.max() == 1


def test_rgb_validation(result):
    with pytest.raises(ParameterError, match="channels"):
        pca_rgb(result.components, channels=(0, 1, 4))
    with pytest.raises(ParameterError, match="channels"):
        pca_rgb(result.components, channels=(0, 1))
    with pytest.raises(ParameterError, match="h x w x n"):
        pca_rgb([np.zeros((3, 4))])


def test_binned_descriptors_use_the_randomized_path(bundled_extractor, images):
    ds = bundled_extractor.extract(images, layer=11, load_size=112, bin=True)
    assert ds[0].descs.shape[1] == 17 * 384          # above the exact-eigh limit
    res = pca_descriptors(ds, n_components=3)
    x = torch.cat([d.descs for d in ds]).double()
    xc = x - x.mean(0)
    s = torch.linalg.eigvalsh(xc @ xc.T).flip(0)[:3] / (x.shape[0] - 1)   # exact, T x T Gram
    np.testing.assert_allclose(res.explained_variance, s.numpy(), rtol=1e-4)
    np.testing.assert_allclose(res.axes @ res.axes.T, np.eye(3), atol=1e-5)


def test_pca_end_to_end_and_single_image(bundled_extractor, images):
    res = pca(bundled_extractor, images[0], n_components=3, load_size=112)
    assert len(res.components) == 1 and res.components[0].shape[-1] == 3
    assert res.params["stride"] == 7 and res.params["layer"] == [11] and res.params["n_components"] == 3


def test_parameter_errors(descs):
    with pytest.raises(ParameterError, match="n_components"):
        pca_descriptors(descs, n_components=0)
    with pytest.raises(ParameterError, match="n_components"):
        pca_descriptors(descs, n_components=385)
    with pytest.raises(ParameterError, match="at least one"):
        pca_descriptors([])
    with pytest.raises(ParameterError, match="same dimension"):
        pca_descriptors([descs[0], dataclasses.replace(descs[1], descs=descs[1].descs[:, :100])])

"""The device refinement (vitdense/ops/refine.py) against the CPU libraries it replaces on CUDA.

Real photographs throughout: the cat's face pasted on a brick wall (truth known by construction)
and the hand-labelled felines of ``bench/data/coseg_sets``. On the CPU the same torch code runs as
on a GPU (``refiner="torch"``); the quality is asserted against pydensecrf's CRF and GrabCut, the
speed lives in bench/bench_gpu.py. The comparisons with pydensecrf skip where it is not installed
(the GPU machine builds it only when time is left); tests/test_device.py compares the refinement on
the GPU with the same code on the CPU.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from vitdense.apps.cosegmentation import cosegment_descriptors, grid_to_size
from vitdense.apps.parts import part_cosegment_descriptors
from vitdense.errors import ParameterError
from vitdense.eval.metrics import ari, jaccard, nmi
from vitdense.ops.crf import dense_crf, unary_from_labels
from vitdense.ops.refine import crf_labels, grid_to_pixels, resolve_refiner
from tests import REPO

SETS = REPO / "bench" / "data" / "coseg_sets"


@pytest.fixture(scope="module")
def noisy(cat_on_bricks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, truth, 16-px blocky labels with 8% of the pixels flipped) of the cat on bricks."""
    image, truth = cat_on_bricks
    blocks = truth.reshape(15, 16, 20, 16).mean(axis=(1, 3)) >= 0.5
    blocky = np.kron(blocks, np.ones((16, 16), bool))
    flips = np.random.default_rng(0).random(truth.shape) < 0.08
    return image, truth, (blocky ^ flips).astype(np.int64)


def _torch_crf(images: list[np.ndarray], unaries: list[np.ndarray]) -> list[np.ndarray]:
    return [lab.numpy() for lab in crf_labels(images, [torch.from_numpy(u) for u in unaries])]


def test_torch_crf_agrees_with_pydensecrf_on_a_photo(noisy):
    pytest.importorskip("pydensecrf", reason="pydensecrf2 is not installed")
    image, truth, labels = noisy
    unary = unary_from_labels(labels, 2)
    cpu = dense_crf(image, unary).astype(bool)
    [dev] = _torch_crf([image], [unary])
    # measured: Jaccard 0.66 (speckled input; 5083 regions), pydensecrf 0.888 and torch 0.882 (2
    # regions each, 99.8% of the pixels equal); the 16 px blocks alone score 0.882
    assert jaccard(labels.astype(bool), truth) < 0.7 and _components(labels.astype(bool)) > 1000
    assert _components(dev.astype(bool)) <= 10
    assert abs(jaccard(dev.astype(bool), truth) - jaccard(cpu, truth)) <= 0.02
    assert (dev.astype(bool) == cpu).mean() >= 0.99


def _components(mask: np.ndarray) -> int:
    """Connected regions of the foreground plus those of the background (4-connectivity)."""
    from skimage.measure import label
    return int(label(mask, connectivity=1).max() + label(~mask, connectivity=1).max())


def test_padding_batching_and_orientation_do_not_change_labels(noisy, photos):
    """One image alone, in a batch with a larger portrait photo (transposed and padded for the batch),
    and transposed itself: the same labels."""
    image, _, labels = noisy
    unary = unary_from_labels(labels, 2)
    big = photos["coffee"][:336, :256]
    big_unary = unary_from_labels((big.mean(axis=2) > 120).astype(np.int64), 2)
    [alone] = _torch_crf([image], [unary])
    together = _torch_crf([big, image], [big_unary, unary])
    np.testing.assert_array_equal(together[1], alone)
    [turned] = _torch_crf([image.transpose(1, 0, 2)], [unary.transpose(0, 2, 1)])
    assert (turned.T == alone).mean() >= 0.999  # equal up to the order of float sums
    # the portrait photo, transposed for the batch and back, gets its own labels
    [big_alone] = _torch_crf([big], [big_unary])
    assert (together[0] == big_alone).mean() >= 0.999 and together[0].shape == big.shape[:2]


def test_grid_to_pixels_is_the_geometry_upsampling(bundled_extractor, photos):
    [d] = bundled_extractor.extract(photos["chelsea"], layer=9, stride=7, load_size=112)
    grid = torch.rand(*d.grid, 3, generator=torch.Generator().manual_seed(0))
    g = d.geometry
    ours = grid_to_pixels(grid, g.grid, g.patch, g.stride, tuple(g.resized_size)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, grid_to_size(grid.numpy(), g, None, mode="bilinear"), atol=1e-5)


def test_auto_picks_the_refiner_per_device():
    assert resolve_refiner("auto", "cpu") == "cpu" and resolve_refiner("auto", torch.device("cuda")) == "torch"
    assert resolve_refiner("torch", "cpu") == "torch"
    with pytest.raises(ParameterError, match="refiner"):
        resolve_refiner("gpu", "cpu")


def _read(name: str) -> tuple[list[Image.Image], list[np.ndarray], list[np.ndarray]]:
    folder = SETS / name
    stems = sorted(p.stem for p in (folder / "images").iterdir())
    images = [Image.open(folder / "images" / f"{s}.jpg").convert("RGB") for s in stems]
    masks = [np.asarray(Image.open(folder / "masks" / f"{s}.png")) > 0 for s in stems]
    parts = [np.asarray(Image.open(folder / "parts" / f"{s}.png")) for s in stems]
    return images, masks, parts


@pytest.fixture(scope="module")
def felines(bundled_extractor):
    """Five felines (hand-drawn masks and head / body labels) and their descriptors at 112 px."""
    images, masks, parts = _read("felines_5")
    descs = bundled_extractor.extract(images, layer=9, stride=7, load_size=112, saliency=True)
    return images, masks, parts, descs


def test_cosegmentation_on_the_device_matches_grabcut(felines):
    images, masks, _, descs = felines
    runs = {r: cosegment_descriptors(descs, images=images, refiner=r) for r in ("cpu", "torch")}
    score = {r: np.mean([jaccard(m, g) for m, g in zip(res.masks, masks)]) for r, res in runs.items()}
    assert score["cpu"] >= 0.75  # the task is solved at all
    assert score["torch"] >= score["cpu"] - 0.02
    assert all(runs["torch"].refined) and all(m.shape == g.shape for m, g in zip(runs["torch"].masks, masks))
    # the refinement did something: the masks are not the upsampled grid
    unrefined = cosegment_descriptors(descs, images=images, refine=False)
    assert any(not np.array_equal(a, b) for a, b in zip(runs["torch"].masks, unrefined.masks))


def test_parts_on_the_device_match_pydensecrf(felines):
    pytest.importorskip("pydensecrf", reason="pydensecrf2 is not installed")
    images, _, parts, descs = felines
    runs = {r: part_cosegment_descriptors(descs, images=images, num_parts=2, refiner=r) for r in ("cpu", "torch")}
    score = {r: np.mean([nmi(m, g, mask=g > 0) for m, g in zip(res.part_maps, parts) if len(np.unique(g)) > 2])
             for r, res in runs.items()}
    assert score["torch"] >= score["cpu"] - 0.02
    for a, b in zip(runs["cpu"].part_maps, runs["torch"].part_maps):
        assert a.shape == b.shape and ari(a.ravel(), b.ravel()) >= 0.8

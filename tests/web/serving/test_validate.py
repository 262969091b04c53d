"""One sentence for every bad number, image and video upload an API call can carry."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from vitdense.errors import ImageError, ParameterError
from vitdense.features.images import load_image
from vitdense.web.serving.validate import MIN_SIDE, VideoProbe, check_upload, check_video_upload, choice, flag, number


@pytest.mark.parametrize("value,message", [
    (float("nan"), "x must be a finite number, not nan"),
    (math.inf, "x must be a finite number, not inf"),
    ("-inf", "x must be a finite number, not -inf"),
    (10 ** 400, "x must be a finite number, not a 401-digit number"),
    (1e308, r"x=1e\+308 is out of range: expected from 0 to 511"),
    (-1, "x=-1 is out of range: expected from 0 to 511"),
    ("abc", "x='abc' is not a number"),
    (True, "x=True is not a number"),
    ([1], r"x=\[1\] is not a number"),
    (None, "x is missing: give a number"),
    (2.5, "x=2.5 must be a whole number"),
])
def test_bad_numbers(value, message):
    with pytest.raises(ParameterError, match=message) as info:
        number("x", value, 0, 511, integer=True)
    assert len(str(info.value)) < 90 and "\n" not in str(info.value)


def test_good_values():
    assert number("x", "12", 0, 511, integer=True) == 12
    assert number("t", 0.25, 0.0, 0.5) == 0.25
    assert number("k", None, 1, 50, integer=True, default=10) == 10
    assert choice("facet", "key", ["auto", "key"]) == "key"
    assert choice("stride", 7, ["auto", "7"]) == "7"
    with pytest.raises(ParameterError, match="facet='keys' is not one of: auto, key"):
        choice("facet", "keys", ["auto", "key"])
    assert flag("crf", "off") is False and flag("crf", True) is True
    with pytest.raises(ParameterError, match="crf='maybe' is not true or false"):
        flag("crf", "maybe")


def test_uploads(tmp_path, photos):
    ok = tmp_path / "cat.png"
    Image.fromarray(photos["chelsea"]).save(ok)
    assert check_upload(ok) == (451, 300)
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(ImageError, match=r"notes.jpg: not a readable image \(upload a JPEG"):
        check_upload(text)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(ImageError, match=f"1 x 1 pixels is too small \\(the shorter side must be at "
                                         f"least {MIN_SIDE} pixels\\)"):
        check_upload(tiny)


def test_decompression_bomb_is_too_large(tmp_path):
    """A 20000 x 20000 PNG of a few kB: PIL itself refuses it before we can read its size."""
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    assert bomb.stat().st_size < 200_000
    for check in (check_upload, load_image):
        with pytest.raises(ImageError, match=r"bomb.png: too large \(400 megapixels, the limit is 50\)"):
            check(bomb)


def test_video_uploads(tmp_path):
    from vitdense.apps.video import write_video
    clip = write_video([np.full((48, 64, 3), 20 * i, np.uint8) for i in range(12)], tmp_path / "clip.mp4", fps=6)
    assert check_video_upload(clip) == VideoProbe(64, 48, 2.0, 6.0) and VideoProbe(64, 48, 2.0, 6.0).frames == 12
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    for path, limits, message in [
            (notes, {}, r"notes.mp4: not a readable video \(upload an MP4, MOV"),
            (clip, dict(max_bytes=100), r"clip.mp4: too large \([\d.]+ MiB, the limit is [\d.e-]+ MiB\); shorten"),
            (clip, dict(max_seconds=1), r"clip.mp4: the clip is too long \(2.0 s, the limit is 1 s\); cut it"),
            (clip, dict(max_pixels=1000), r"clip.mp4: 64 x 48 pixels a frame is too large \(0.0 megapixels"),
            (tmp_path / "gone.mp4", {}, "gone.mp4: the uploaded file is no longer on the server")]:
        with pytest.raises(ImageError, match=message) as info:
            check_video_upload(path, **limits)
        assert "\n" not in str(info.value) and "ffmpeg" not in str(info.value)

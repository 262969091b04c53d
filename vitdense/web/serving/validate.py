"""Checking what a visitor (or a script) sends before anything runs: one sentence per problem.

:func:`number` and :func:`choice` accept the raw values an API call can carry (None, strings,
booleans, NaN, infinities, 10**400) and raise :class:`~vitdense.errors.ParameterError` with a short
sentence that never echoes more than a few characters of the input. :func:`check_upload` reads
an upload's header only and refuses non-images, images smaller than :data:`MIN_SIDE` pixels and
decompression bombs ("too large (N megapixels, the limit is M)"); :func:`check_video_upload` reads a
clip's header only (ffmpeg's metadata) and refuses non-videos and clips above the byte, length and
frame size limits.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from PIL import Image, UnidentifiedImageError

from vitdense.errors import ImageError, ParameterError
from vitdense.features.images import MAX_PIXELS, bomb_pixels, megapixels, too_large

#: images with a shorter side below this are refused: smaller than two patches of the largest
#: patch size (16), such an image has at most a handful of patches and every result is meaningless
MIN_SIDE = 32

# a clip's bounds (the demo reads at most 48 frames of it, but ffmpeg decodes the whole clip)
MAX_VIDEO_BYTES = 100 << 20         # 100 MiB
MAX_VIDEO_SECONDS = 120.0           # 2 minutes
MAX_VIDEO_PIXELS = 1920 * 1080      # a frame: full HD


def shown(value: Any, limit: int = 24) -> str:
    """``value`` as a short text for a message (long numbers and strings are cut)."""
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= 1e6:
        text = f"{value:.3g}"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 9:
        text = f"a {len(str(abs(value)))}-digit number"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number(name: str, value: Any, low: float | None = None, high: float | None = None,
           integer: bool = False, default: Any = None) -> Any:
    """``value`` as a finite float (int when ``integer``) within ``[low, high]``.

    Accepts numbers and numeric strings; None gives ``default`` (or an error when there is none).
    Booleans, NaN, infinities, overflowing integers and out-of-range values raise one sentence.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ParameterError(f"{name} is missing: give a number")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) and \
            not hasattr(value, "__float__"):
        raise ParameterError(f"{name}={shown(value)} is not a number")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf if not str(value).strip().startswith("-") else -math.inf
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={shown(value)!r} is not a number") from None
    if not math.isfinite(x):
        raise ParameterError(f"{name} must be a finite number, not {shown(value)}")
    if integer and not x.is_integer():
        raise ParameterError(f"{name}={shown(value)} must be a whole number")
    if (low is not None and x < low) or (high is not None and x > high):
        lo = "" if low is None else f"{low:g}"
        hi = "" if high is None else f"{high:g}"
        span = f"from {lo} to {hi}" if lo and hi else (f"at least {lo}" if lo else f"at most {hi}")
        raise ParameterError(f"{name}={shown(value)} is out of range: expected {span}")
    return int(x) if integer else x


def choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """``value`` if it is one of ``options`` (compared as text too), else one sentence."""
    for o in options:
        if value == o or (value is not None and str(value) == str(o)):
            return o
    listed = ", ".join(str(o) for o in options[:12]) + (", ..." if len(options) > 12 else "")
    raise ParameterError(f"{name}={shown(value)!r} is not one of: {listed}")


def flag(name: str, value: Any) -> bool:
    """A checkbox value: booleans and on/off/true/false/yes/no/1/0 strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ParameterError(f"{name}={shown(value)!r} is not true or false")


def _gone(name: str) -> ImageError:
    return ImageError(f"{name}: the uploaded file is no longer on the server (old uploads are "
                      "deleted): upload it again")


def check_upload(path: str | os.PathLike, name: str | None = None, max_pixels: int = MAX_PIXELS,
                 min_side: int = MIN_SIDE) -> tuple[int, int]:
    """An uploaded file's (W, H), read from its header only; :class:`ImageError` for a non-image,
    an image with a side below ``min_side`` pixels, or one above ``max_pixels`` (a bomb)."""
    name = name or Path(path).name
    if not Path(path).exists():
        raise _gone(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
    except Image.DecompressionBombError as err:
        raise too_large(name, bomb_pixels(err, 2 * max_pixels), max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(f"{name}: not a readable image (upload a JPEG, PNG, WebP, BMP, GIF or "
                         "TIFF file)") from None
    w, h = size
    if w * h > max_pixels:
        raise too_large(name, w * h, max_pixels, f"{w} x {h} pixels is ")
    if min(w, h) < min_side:
        raise ImageError(f"{name}: {w} x {h} pixels is too small (the shorter side must be at least "
                         f"{min_side} pixels)")
    return size


class VideoProbe(NamedTuple):
    """What a clip's header says: frame size, length, frame rate."""

    width: int
    height: int
    seconds: float
    fps: float

    @property
    def frames(self) -> int:
        """The number of frames, estimated from the length and the frame rate."""
        return max(1, round(self.seconds * self.fps))


def check_video_upload(path: str | os.PathLike, name: str | None = None,
                       max_bytes: int = MAX_VIDEO_BYTES, max_seconds: float = MAX_VIDEO_SECONDS,
                       max_pixels: int = MAX_VIDEO_PIXELS) -> VideoProbe:
    """An uploaded clip's header (ffmpeg's metadata, no frame decoded); :class:`ImageError` for a
    file above ``max_bytes``, a non-video, a clip whose length cannot be read, one longer than
    ``max_seconds`` or with frames above ``max_pixels``."""
    import imageio_ffmpeg

    name = name or Path(path).name
    try:
        size = os.path.getsize(path)
    except OSError:
        raise _gone(name) from None
    if size > max_bytes:
        raise ImageError(f"{name}: too large ({size / 2**20:.1f} MiB, the limit is "
                         f"{max_bytes / 2**20:g} MiB); shorten or compress it first")
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        try:
            meta = next(reader)
        finally:
            reader.close()                     # ends ffmpeg before it decodes a frame for us
        (w, h), seconds, fps = meta["size"], float(meta.get("duration") or 0), float(meta.get("fps") or 0)
    except Exception:  # noqa: BLE001 - ffmpeg and its parser fail in many ways on a non-video
        raise ImageError(f"{name}: not a readable video (upload an MP4, MOV, WebM, MKV, AVI or GIF "
                         "file)") from None
    if seconds <= 0 or fps <= 0:
        raise ImageError(f"{name}: the clip's length cannot be read from the file: save it as MP4 "
                         "and upload it again")
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w} x {h} pixels a frame is too large ({megapixels(w * h)} "
                         f"megapixels, the limit is {megapixels(max_pixels)}); downscale it first")
    if seconds > max_seconds:
        raise ImageError(f"{name}: the clip is too long ({seconds:.1f} s, the limit is "
                         f"{max_seconds:g} s); cut it first")
    return VideoProbe(int(w), int(h), seconds, fps)

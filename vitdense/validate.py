"""Checking what a visitor (or a script) sends before anything runs: one sentence per problem.

:func:`number` and :func:`choice` accept the raw values an API call can carry (None, strings,
booleans, NaN, infinities, 10**400) and raise :class:`~vitdense.errors.ParameterError` with a short
sentence that never echoes more than a few characters of the input. :func:`check_upload` reads
an upload's header only and refuses non-images, images smaller than :data:`MIN_SIDE` pixels and
decompression bombs ("too large (N megapixels, the limit is M)").
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, UnidentifiedImageError

from .errors import ImageError, ParameterError
from .images import MAX_PIXELS, bomb_pixels, too_large

#: images with a shorter side below this are refused: smaller than two patches of the largest
#: patch size (16), such an image has at most a handful of patches and every result is meaningless
MIN_SIDE = 32


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


def check_upload(path: str | os.PathLike, name: str | None = None, max_pixels: int = MAX_PIXELS,
                 min_side: int = MIN_SIDE) -> tuple[int, int]:
    """An uploaded file's (W, H), read from its header only; :class:`ImageError` for a non-image,
    an image with a side below ``min_side`` pixels, or one above ``max_pixels`` (a bomb)."""
    name = name or Path(path).name
    if not Path(path).exists():
        raise ImageError(f"{name}: the uploaded file is no longer on the server (old uploads are "
                         "deleted): upload it again")
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

"""Exceptions with one-line, user-facing messages.

Every error a user can cause derives from :class:`VitdenseError`; the CLI prints its message
without a traceback and the web app shows it as a notice.
"""
from __future__ import annotations

import numpy as np


class VitdenseError(Exception):
    """Base class of every user-facing vitdense error."""


class ParameterError(VitdenseError, ValueError):
    """A parameter is out of range or of the wrong kind."""


class UnknownModelError(ParameterError):
    """The model name is not in the registry."""


class ImageError(VitdenseError, ValueError):
    """An image cannot be read, is of an unsupported kind, or is too small / too large."""


class WeightsUnavailableError(VitdenseError, RuntimeError):
    """Pretrained weights are neither cached nor reachable."""


class OutOfMemoryError(VitdenseError, MemoryError):
    """The device ran out of memory; the message says what to reduce."""


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise :class:`ParameterError` unless ``low <= value <= high`` (bounds optional)."""
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        brackets = ("[" if low_inclusive else "(") + f"{lo}, {hi}" + ("]" if high_inclusive else ")")
        raise ParameterError(f"{name}={value!r} is out of range: expected a value in {brackets}")


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (bounds optional), else :class:`ParameterError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name}={value!r} must be an integer")
    check_range(name, int(value), low, high)
    return int(value)


def check_bool(name: str, value: object) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a boolean (Python or NumPy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name}={value!r} is not a boolean: expected True or False")

"""Hugging Face ZeroGPU Spaces: the GPU is attached only while a ``spaces.GPU`` function runs.

The documented rules (huggingface.co/docs/hub/spaces-zerogpu), and how vitdense keeps them:

* ``import spaces`` before anything initialises CUDA (``app.py`` does it first), and no CUDA call
  at import time: nothing here touches ``torch.cuda`` until a wrapped function runs;
* the model is created at start-up and moved to CUDA *outside* the wrapped function (the web
  demo's ``launch`` preloads it; ZeroGPU defers the actual move until a GPU is attached);
* a wrapped function returns only CPU objects (its result is pickled back to the main process):
  :func:`gpu_task` moves every tensor of the result to the CPU;
* ``duration`` is derived from the estimated work (:func:`estimated_seconds`), so short jobs ask
  for a short slot and get priority in the queue.

Everywhere else (no ``spaces`` package) :func:`gpu_task` returns the function unchanged.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from typing import Any, Callable, Sequence

from vitdense.web.serving.workbudget import grid_tokens

#: seconds asked for at least (start-up of the GPU worker, model transfer) and at most (the limit
#: of a free ZeroGPU slot is 120 s; longer requests wait longer in the queue)
MIN_SECONDS, MAX_SECONDS = 15, 120
#: effective throughput assumed for the estimate (a conservative fraction of a ZeroGPU H200 slice)
FLOPS_PER_SECOND = 5e12


def on_zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (the platform sets ``SPACES_ZERO_GPU``)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def load_spaces() -> Any | None:
    """The ``spaces`` module when installed (Hugging Face Spaces), else None."""
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def _size(image: Any) -> tuple[int, int]:
    """(H, W) of a PIL image or an H x W (x C) array; (224, 224) when unknown."""
    if hasattr(image, "size") and isinstance(image.size, tuple):
        return image.size[1], image.size[0]
    shape = getattr(image, "shape", None)
    return (int(shape[0]), int(shape[1])) if shape is not None and len(shape) >= 2 else (224, 224)


def estimated_seconds(model: str, images: Sequence[Any], settings: dict | None = None) -> int:
    """GPU seconds to ask for: the network passes of ``images`` at ``settings``, in [MIN, MAX].

    Work per image: ``depth * (24 T D^2 + 4 T^2 D)`` FLOPs for ``T`` tokens of width ``D`` (the
    MLP and projections, then attention), at :data:`FLOPS_PER_SECOND`, plus the minimum.
    """
    from vitdense.features.descriptors import DescriptorSettings
    from vitdense.features.models import get_spec
    spec = get_spec(model)
    settings = settings or {}
    load = settings.get("load_size", 224)
    load = load if isinstance(load, (int, float)) and load > 0 else None
    stride = settings.get("stride")
    stride = DescriptorSettings(stride=stride if isinstance(stride, int) and stride > 0 else None).resolve(spec).stride
    flops = 0.0
    for image in images:
        h, w = _size(image)
        t = grid_tokens((w, h), load, spec.patch_size, stride)     # the extractor's grid
        flops += spec.depth * (24 * t * spec.embed_dim ** 2 + 4 * t * t * spec.embed_dim)
    return int(min(MAX_SECONDS, MIN_SECONDS + flops // FLOPS_PER_SECOND))


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (dataclasses, lists, tuples and dicts walked)."""
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: to_cpu(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, (list, tuple)):
        items = [to_cpu(x) for x in obj]
        return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    return obj


def gpu_task(duration: Callable[..., int] = estimated_seconds, spaces: Any | None = None
             ) -> Callable[[Callable], Callable]:
    """Decorator: on ZeroGPU (``spaces`` importable), ``spaces.GPU(duration=...)`` around a function
    whose result is moved to the CPU; ``duration`` receives the function's own arguments.
    Without ``spaces`` the function is returned unchanged."""
    spaces = spaces if spaces is not None else load_spaces()

    def decorate(fn: Callable) -> Callable:
        if spaces is None:
            return fn

        @functools.wraps(fn)
        def on_gpu(*args: Any, **kwargs: Any) -> Any:
            return to_cpu(fn(*args, **kwargs))

        def seconds(*args: Any, **kwargs: Any) -> int:
            return int(min(MAX_SECONDS, max(MIN_SECONDS, duration(*args, **kwargs))))

        return spaces.GPU(duration=seconds)(on_gpu)

    return decorate

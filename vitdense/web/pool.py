"""Models: one Extractor per model name, shared by every session (the weights are read-only), the
network passes (wrapped for Hugging Face ZeroGPU), and the model-dependent choices of the page."""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Optional, Sequence

import gradio as gr
import numpy as np
import torch
from PIL import Image

from vitdense.apps.registry import App
from vitdense.features.cache import DescriptorCache
from vitdense.features.descriptors import ImageDescriptors
from vitdense.features.extractor import Extractor
from vitdense.features.models import BUNDLED_MODEL, MODELS, get_spec, hub_reachable, weights_status
from vitdense.ops.foreground import extract_with_saliency
from vitdense.stops import stop_point
from vitdense.web.errors import NOTICE_SOURCES, log
from vitdense.web.gate import offered_strides
from vitdense.web.controls import knob_values
from vitdense.web.inputs import LOAD_SIZES, admit, descriptor_settings, prepare_set
from vitdense.web.serving.zerogpu import estimated_seconds, gpu_task, load_spaces, on_zero_gpu

AUTO = "auto"

# Hugging Face ZeroGPU Spaces: spaces.GPU with a duration from the estimated work (vitdense.web.serving.zerogpu);
# everywhere else a plain call
gpu: Callable = gpu_task()
ON_ZERO_GPU = on_zero_gpu() and load_spaces() is not None


class ModelPool:
    """Lazily loaded extractors sharing one descriptor cache."""

    def __init__(self, device: str = "auto", cache_bytes: int = 1 << 30) -> None:
        self.device = device
        self.cache = DescriptorCache(max_bytes=cache_bytes)
        self._extractors: dict[str, Extractor] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Extractor:
        with self._lock:
            if name not in self._extractors:
                log.info("loading model %s on %s", name, self.device)
                self._extractors[name] = Extractor(name, device=self.device, cache=self.cache,
                                                   cpu_fallback=True)
            return self._extractors[name]

    def new_fallback_notices(self) -> list[str]:
        """A sentence per extractor that moved to the CPU after a GPU out-of-memory, each once."""
        with self._lock:
            fresh = [ex for ex in self._extractors.values()
                     if ex.notice and "ran out of memory" in ex.notice
                     and not getattr(ex, "_notice_shown", False)]
            for ex in fresh:
                ex._notice_shown = True
        return [f"The GPU ran out of memory, so {ex.model_name} now runs on the CPU (slower); a "
                "smaller load size or a larger stride would have fitted." for ex in fresh]

    def put(self, extractor: Extractor) -> None:
        """Register an already built extractor (tests share theirs; its cache is left as it is)."""
        with self._lock:
            self._extractors[extractor.model_name] = extractor

    def reconfigure(self, device: str = "auto", cache_bytes: int = 1 << 30) -> None:
        """Another device / cache size: the loaded extractors are dropped (loaded again on use)."""
        with self._lock:
            self.device = device
            self.cache = DescriptorCache(max_bytes=cache_bytes)
            self._extractors.clear()


POOL = ModelPool()
NOTICE_SOURCES.append(POOL.new_fallback_notices)


def configure(device: str = "auto", cache_bytes: int = 1 << 30) -> ModelPool:
    """Set the shared pool's device and cache size (``app.py --device``)."""
    POOL.reconfigure(device, cache_bytes)
    return POOL


def model_choices(online: bool | None = None) -> list[tuple[str, str]]:
    """(label, name) of the models a visitor can pick: the bundled one always; the others when
    their weights are cached, or when the Hugging Face hub is reachable (downloaded on first use)."""
    if online is None:
        online = hub_reachable()
    out = []
    for name, spec in MODELS.items():
        status = weights_status(name)
        if spec.bundled:
            if status.available:
                out.insert(0, (f"{name}: {spec.description}", name))
        elif status.available:
            out.append((f"{name}: {spec.description} (cached)", name))
        elif online:
            out.append((f"{name}: {spec.description} (downloads on first use)", name))
    if not out:
        out.append((f"{BUNDLED_MODEL}: {MODELS[BUNDLED_MODEL].description}", BUNDLED_MODEL))
    return out


def stride_choices(model: str) -> list[str]:
    """"auto" and the divisors of the model's patch size that the work limit accepts for a pair
    at some offered load size (stride 1 only where the hardware allows it)."""
    spec = get_spec(model)
    return offered_strides(spec.patch_size, spec.depth, LOAD_SIZES)


def layer_choices(model: str) -> list[str]:
    """"auto" and every block of the model."""
    return [AUTO] + [str(i) for i in range(get_spec(model).depth)]


def update_stride_choices(model: str) -> Any:
    """Model dropdown changed -> the stride dropdown offers that model's divisors."""
    return gr.Dropdown(choices=stride_choices(model), value=AUTO, allow_custom_value=True)  # checked by us


def update_model_choices(model: str) -> tuple[Any, Any]:
    """Model dropdown changed -> (layer, stride) dropdowns with that model's blocks and divisors."""
    return (gr.Dropdown(choices=layer_choices(model), value=AUTO, allow_custom_value=True),
            update_stride_choices(model))


def device_note() -> str:
    if torch.cuda.is_available():
        return f"Running on GPU ({torch.cuda.get_device_name(0)})."
    return "Running on CPU: each extraction takes a few seconds; clicks answer at once."


# -- network passes ---------------------------------------------------------------------------------
def _cpu(d: ImageDescriptors) -> ImageDescriptors:
    def mv(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else t.detach().to("cpu")
    return dataclasses.replace(d, descs=mv(d.descs), saliency=mv(d.saliency), cls=mv(d.cls))


@gpu
def extract(model: str, images: list[Image.Image], kwargs: dict) -> list[ImageDescriptors]:
    """The network pass (on the GPU when there is one); a job past its allowance stops before and
    after it (:func:`vitdense.stops.stop_point`)."""
    stop_point()
    descs = POOL.get(model).extract(images, **kwargs)
    stop_point()
    return [_cpu(d) for d in descs] if ON_ZERO_GPU else descs


@gpu
def extract_saliency(model: str, images: list[Image.Image],
                     settings: dict) -> tuple[list[ImageDescriptors], list[np.ndarray]]:
    """Descriptors and the saliency maps that vote in (part) co-segmentation (a job past its
    allowance stops before and after the pass)."""
    stop_point()
    descs, sal = extract_with_saliency(POOL.get(model), images, include_cls=False,
                                       low_res_saliency_maps=False, **settings)
    stop_point()
    return ([_cpu(d) for d in descs] if ON_ZERO_GPU else descs), sal


@gpu_task(duration=lambda model, fn, images, *args, **kwargs: estimated_seconds(model, images, kwargs))
def run_on_gpu(model: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(extractor, *args, **kwargs)`` for a library function that runs the network itself."""
    stop_point()
    return fn(POOL.get(model), *args, **kwargs)


def extract_set(model: str, images: Sequence[Any], settings: dict, progress: Any,
                with_saliency: bool = True, chunk: int = 4) -> tuple[list[ImageDescriptors], list]:
    """Extract a set of InputImages in chunks so that the progress bar moves; returns
    (descs, saliency maps). The work budget is checked first (refused at once, or a bounded wait);
    a job past its allowance stops between chunks (:func:`vitdense.stops.stop_point`)."""
    admit(model, images, settings, with_saliency, progress)
    progress(0.02, desc=f"Loading {model}")
    POOL.get(model)
    descs: list[ImageDescriptors] = []
    sal: list = []
    n = len(images)
    for start in range(0, n, chunk):
        progress(0.05 + 0.6 * start / n, desc=f"Extracting descriptors ({start}/{n} images)")
        pils = [im.image for im in images[start:start + chunk]]
        if with_saliency:
            d, s = extract_saliency(model, pils, settings)
            sal.extend(s)
        else:
            d = extract(model, pils, settings)
        descs.extend(d)
    progress(0.65, desc="Clustering")
    return descs, sal


def extract_app_set(app: App, images: Any, model: str, descriptor: Sequence[Any], knobs: dict | None,
                    progress: Any, with_saliency: bool = True) -> tuple[list, dict, dict, list, list]:
    """A set tab's run up to the descriptors: the upload checked (``app.min_images``), the Advanced
    settings ``descriptor`` (layer, facet, stride, load size, binning) resolved for ``app.task``,
    the web knobs read (:func:`vitdense.web.controls.knob_values`) and the set extracted.

    Returns (InputImages, descriptor settings, knob values, descriptors, saliency maps)."""
    ims = prepare_set(images, minimum=app.min_images)
    settings = descriptor_settings(model, app.task, *descriptor)
    values = knob_values(app, knobs or {}, model)
    descs, sal = extract_set(model, ims, {**settings, **app.extract_options}, progress, with_saliency=with_saliency)
    return ims, settings, values, descs, sal

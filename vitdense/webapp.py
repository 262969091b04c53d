"""The Gradio web demo: small handler functions over the library, and the page layout.

``app.py`` parses the command line and calls :func:`launch`; everything a visitor can do is a
handler here, each a thin call into ``vitdense`` (extraction, clustering, matching) followed by
``vitdense.draw`` (pictures). Handlers are plain functions, unit-tested without a server.

Sessions: the descriptors of what a visitor ran are kept in that visitor's ``gr.State`` (one per
tab), so a click or a re-clustering never runs the network again and two visitors never see each
other's data. A shared :class:`~vitdense.cache.DescriptorCache` (keyed by image content and every
parameter) only saves work when the same visitor re-runs with other clustering settings.

Limits (documented in the page and in README "Web demo"): images are downscaled to
:data:`MAX_SIDE` pixels on the longer side (with a notice), a set holds :data:`MIN_SET_IMAGES` to
:data:`MAX_SET_IMAGES` images, a video is read up to :data:`MAX_VIDEO_FRAMES` frames of at most
:data:`VIDEO_MAX_SIDE` pixels.
"""
import dataclasses
import functools
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gradio as gr
import numpy as np
import torch
from PIL import Image

from . import draw, validate
from . import webguard as guard
from .cache import DescriptorCache
from .correspondences import PointMatcher, find_correspondences_descriptors
from .cosegmentation import cosegment_descriptors, extract_with_saliency
from .errors import ImageError, OutOfMemoryError, ParameterError, VitdenseError
from .export import dumps, png_bytes, unique_stems
from .extractor import Extractor, ImageDescriptors
from .images import load_image
from .models import BUNDLED_MODEL, MODELS, hub_reachable, get_spec, weights_status
from .part_cosegmentation import part_cosegment_descriptors
from .pca import pca_descriptors
from .sessions import compact_descriptors, expand_descriptors
from .similarity import inspect_similarity_descriptors

log = logging.getLogger("vitdense.webapp")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MAX_SIDE = 1024            # longer image side kept (larger uploads are downscaled, with a notice)
MIN_SET_IMAGES = 2
MAX_SET_IMAGES = 30
MAX_VIDEO_FRAMES = 48      # frames read from a clip (evenly spread over it)
VIDEO_MAX_SIDE = 320       # video frames are downscaled to this longer side
MAX_CLICKS = 26            # clicks kept per pair (labelled a..z)
MIN_LOAD_SIZE, MAX_LOAD_SIZE = 56, 1024   # what the API accepts (the page offers 112-448)
LOAD_SIZES = list(range(112, 449, 14))    # the load size slider's steps
STATE_TTL_S = guard.DEFAULT_IDLE_S  # a session's results are dropped this long after their last use
OUTPUT_TTL_S = 2 * 3600    # downloadable zips are deleted after this long
AUTO = "auto"

#: each task's layer when the visitor leaves "auto" (the official code's defaults)
TASK_LAYER = {"correspondences": 9, "cosegmentation": 11, "parts": 11, "similarity": 11,
              "pca": 11, "video": 11}
#: colours of clicked points (neon, distinct from the automatic pairs' tab10 palette)
CLICK_COLORS = np.array([[255, 0, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0],
                         [255, 96, 0], [160, 64, 255], [255, 0, 112], [0, 160, 255],
                         [160, 255, 64], [255, 200, 120], [0, 255, 160], [255, 128, 255]],
                        dtype=np.uint8)

try:  # Hugging Face ZeroGPU Spaces: the GPU is attached only inside functions wrapped by spaces.GPU
    import spaces  # type: ignore[import-not-found]
    _gpu: Callable = spaces.GPU(duration=120)
    ON_ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")
except ImportError:  # everywhere else: a plain call
    spaces = None

    def _gpu(fn: Callable) -> Callable:
        return fn

    ON_ZERO_GPU = False


# ---------------------------------------------------------------------------------------------
# models: one Extractor per model name, shared by every session (the weights are read-only)
# ---------------------------------------------------------------------------------------------
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
                self._extractors[name] = Extractor(name, device=self.device, cache=self.cache)
            return self._extractors[name]

    def put(self, extractor: Extractor) -> None:
        """Register an already built extractor (tests share theirs; its cache is left as it is)."""
        with self._lock:
            self._extractors[extractor.model_name] = extractor


POOL = ModelPool()


def configure(device: str = "auto", cache_bytes: int = 1 << 30) -> ModelPool:
    """Replace the shared pool (``app.py --device``)."""
    global POOL
    POOL = ModelPool(device, cache_bytes)
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
    return guard.offered_strides(spec.patch_size, spec.depth, LOAD_SIZES)


def update_stride_choices(model: str) -> Any:
    """Model dropdown changed -> the stride dropdown offers that model's divisors."""
    return gr.Dropdown(choices=stride_choices(model), value=AUTO)


def device_note() -> str:
    if torch.cuda.is_available():
        return f"Running on GPU ({torch.cuda.get_device_name(0)})."
    return "Running on CPU: each extraction takes a few seconds; clicks answer at once."


# ---------------------------------------------------------------------------------------------
# errors: every handler is wrapped, so a visitor sees one clear line and never a traceback
# ---------------------------------------------------------------------------------------------
GENERIC_ERROR = ("Something went wrong on the server (the details were logged). "
                 "Try again with other images or settings.")


def ui_errors(fn: Callable) -> Callable:
    """VitdenseError -> gr.Error(its message); out of memory -> what to reduce; anything else ->
    logged with its traceback on the server and a generic gr.Error for the visitor."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except OutOfMemoryError as err:
            log.warning("%s: %s", fn.__name__, err)
            raise gr.Error(f"Out of memory: {err}", print_exception=False) from None
        except VitdenseError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except (torch.OutOfMemoryError, MemoryError):
            log.warning("%s: out of memory", fn.__name__, exc_info=True)
            raise gr.Error("Out of memory: use fewer images, a smaller load size or a larger "
                           "stride (Advanced settings).", print_exception=False) from None
        except Exception:  # noqa: BLE001 - the one place where unexpected errors are caught
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None

    return wrapper


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class InputImage:
    image: Image.Image   # 8-bit RGB, EXIF applied, longer side <= MAX_SIDE
    name: str            # file name shown in captions and used in the zip
    original_size: tuple[int, int]  # (W, H) as uploaded (after EXIF)

    @functools.cached_property
    def array(self) -> np.ndarray:
        """The image as an H x W x 3 uint8 array (converted once, then kept)."""
        return np.asarray(self.image)


def _source_name(src: Any, default: str) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    return default


def prepare_image(src: Any, default_name: str = "image") -> InputImage:
    """An upload (path / PIL / array) -> RGB at most MAX_SIDE pixels on its longer side.

    Larger images are downscaled with a notice (gr.Warning); unreadable files raise ImageError.
    """
    name = _source_name(src, default_name)
    if isinstance(src, (str, os.PathLike)):
        validate.check_upload(src, name)   # not an image / too small / too large, from the header
    img = load_image(src)
    if min(img.size) < validate.MIN_SIDE:
        raise ImageError(f"{name}: {img.width} x {img.height} pixels is too small (the shorter side "
                         f"must be at least {validate.MIN_SIDE} pixels)")
    original = img.size
    if max(img.size) > MAX_SIDE:
        s = MAX_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))),
                         Image.Resampling.LANCZOS)
        gr.Warning(f"{name}: {original[0]} x {original[1]} pixels was downscaled to "
                   f"{img.width} x {img.height} (the demo's limit is {MAX_SIDE} px on the longer side).")
    return InputImage(img, name, original)


def _gallery_paths(items: Any) -> list[Any]:
    """A gr.Gallery / gr.File value -> list of paths (or arrays)."""
    if items is None:
        return []
    if isinstance(items, (str, os.PathLike, np.ndarray, Image.Image)):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, (tuple, list)):      # gallery: (media, caption)
            item = item[0]
        if isinstance(item, dict):               # file data dict from an API call
            item = item.get("path") or item.get("image", {}).get("path")
        if item is not None:
            out.append(item)
    return out


def prepare_set(items: Any, minimum: int = MIN_SET_IMAGES) -> list[InputImage]:
    """A set upload -> InputImages; between ``minimum`` and MAX_SET_IMAGES of them."""
    paths = _gallery_paths(items)
    if len(paths) < minimum:
        need = "a set of at least 2 images" if minimum > 1 else "at least one image"
        got = "none" if not paths else f"only {len(paths)}"
        raise ParameterError(f"this needs {need} ({got} given): upload more images or pick an example")
    if len(paths) > MAX_SET_IMAGES:
        raise ParameterError(f"{len(paths)} images is more than the demo's maximum of {MAX_SET_IMAGES}: "
                             "remove some, or run the vitdense command line on the full set")
    return [prepare_image(p, f"image_{i + 1}") for i, p in enumerate(paths)]


def _choice(value: Any) -> Any:
    """"auto" / "" / None -> None; otherwise the value."""
    return None if value in (None, "", AUTO) else value


def _int_setting(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """A whole-number setting (numbers or numeric text) within ``[low, high]``, else one sentence."""
    try:
        number = float(value)
        whole = math.isfinite(number) and number.is_integer()
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or isinstance(value, bool):
        raise ParameterError(f"{name}={validate.shown(value)!r}: expected auto or a whole number")
    return validate.number(name, int(number), low, high, integer=True)


def descriptor_settings(model: str, task: str, layer: Any = AUTO, facet: Any = AUTO,
                        stride: Any = AUTO, load_size: Any = 224, bin: Any = AUTO) -> dict:
    """The Advanced settings -> keyword arguments of ``Extractor.extract`` for ``task``.

    "auto": layer = the task's default (9 for correspondences, 11 otherwise); facet = the model's
    default (key for DINO v1 as in the paper, token for DINOv2 whose keys encode position); stride =
    half the patch; bin = the model's default for correspondences (``spec.default_bin``: on for
    DINO v1 as in the paper, off for DINOv2), off otherwise.
    """
    spec = get_spec(model if isinstance(model, str) else validate.shown(model))
    layer = TASK_LAYER[task] if _choice(layer) is None else _int_setting("layer", layer, 0, spec.depth - 1)
    facet = _choice(facet) or spec.default_facet
    if facet not in ("key", "query", "value", "token"):
        raise ParameterError(f"facet={validate.shown(facet)!r} is unknown: expected one of key, "
                             "query, value, token")
    stride = spec.default_stride if _choice(stride) is None else _int_setting("stride", stride, 1)
    if spec.patch_size % stride:
        divisors = [d for d in range(1, spec.patch_size + 1) if spec.patch_size % d == 0]
        raise ParameterError(f"stride={stride} must divide the patch size {spec.patch_size} of "
                             f"{spec.name}: choose one of {divisors}")
    load_size = _int_setting("load_size", load_size, MIN_LOAD_SIZE, MAX_LOAD_SIZE)
    if _choice(bin) is None:
        binned = task == "correspondences" and spec.default_bin
    elif bin in (True, False):
        binned = bool(bin)
    elif str(bin).lower() in ("on", "true", "yes"):
        binned = True
    elif str(bin).lower() in ("off", "false", "no"):
        binned = False
    else:
        raise ParameterError(f"bin={bin!r}: expected auto, on or off")
    return dict(layer=layer, facet=facet, stride=stride, load_size=load_size, bin=binned)


def admit(model: str, images: Sequence[InputImage], settings: dict, saliency: bool,
          progress: Any = None) -> None:
    """The work budget: refuse a request above the limit at once, then wait for the gate."""
    spec = get_spec(model)
    guard.admit([im.image.size for im in images], settings["load_size"], spec.patch_size,
                settings["stride"], guard.blocks_run(spec.depth, settings["layer"], saliency), progress)


def _cpu(d: ImageDescriptors) -> ImageDescriptors:
    def mv(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else t.detach().to("cpu")
    return dataclasses.replace(d, descs=mv(d.descs), saliency=mv(d.saliency), cls=mv(d.cls))


@_gpu
def _extract(model: str, images: list[Image.Image], kwargs: dict) -> list[ImageDescriptors]:
    """The network pass (on the GPU when there is one)."""
    descs = POOL.get(model).extract(images, **kwargs)
    return [_cpu(d) for d in descs] if ON_ZERO_GPU else descs


@_gpu
def _extract_with_saliency(model: str, images: list[Image.Image],
                           settings: dict) -> tuple[list[ImageDescriptors], list[np.ndarray]]:
    """Descriptors and the saliency maps that vote in (part) co-segmentation."""
    descs, sal = extract_with_saliency(POOL.get(model), images, include_cls=False,
                                       low_res_saliency_maps=False, **settings)
    return ([_cpu(d) for d in descs] if ON_ZERO_GPU else descs), sal


def extract_set(model: str, images: Sequence[InputImage], settings: dict, progress: Any,
                with_saliency: bool = True, chunk: int = 4) -> tuple[list[ImageDescriptors], list]:
    """Extract a set in chunks so that the progress bar moves; returns (descs, saliency maps)."""
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
            d, s = _extract_with_saliency(model, pils, settings)
            sal.extend(s)
        else:
            d = _extract(model, pils, settings)
        descs.extend(d)
    progress(0.65, desc="Clustering")
    return descs, sal


# ---------------------------------------------------------------------------------------------
# downloads
# ---------------------------------------------------------------------------------------------
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "vitdense-app"


PRUNE_INTERVAL_S = 60        # the output folder is scanned for expired zips at most this often
_last_prune = 0.0


def _prune_outputs() -> None:
    global _last_prune
    now = time.time()
    if now - _last_prune < PRUNE_INTERVAL_S or not OUTPUT_ROOT.is_dir():
        return
    _last_prune = now
    for d in OUTPUT_ROOT.iterdir():
        try:
            if now - d.stat().st_mtime > OUTPUT_TTL_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


class Png(bytes):
    """Bytes of an already encoded PNG file (a zip entry that is stored, not encoded again)."""


def write_zip(stem: str, entries: dict[str, Any]) -> str:
    """Zip ``entries`` (name -> uint8 array (PNG) | :class:`Png` | dict/list (JSON) | bytes | str)
    into a fresh, unguessable folder; returns its path (served to this session only).

    PNG entries are stored as they are (already compressed); the others are deflated.
    """
    _prune_outputs()
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUT_ROOT))
    path = folder / f"{stem}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                value = Png(png_bytes(value))
            if isinstance(value, Png):
                zf.writestr(name, value, compress_type=zipfile.ZIP_STORED)
            elif isinstance(value, (dict, list)):
                zf.writestr(name, dumps(value))
            elif isinstance(value, bytes):
                zf.writestr(name, value)
            else:
                zf.writestr(name, str(value))
    return str(path)


def _stem(name: str) -> str:
    return Path(name).stem or "image"


def _unique_stems(images: Sequence[InputImage]) -> list[str]:
    """File stems for zip entries, numbered so two uploads with one name stay apart."""
    return unique_stems([im.name for im in images], numbered=True)


def _xy(yx: Sequence[float]) -> dict:
    return {"x": round(float(yx[1]), 2), "y": round(float(yx[0]), 2)}


# ---------------------------------------------------------------------------------------------
# correspondences: automatic best buddies + click-to-correspond
# ---------------------------------------------------------------------------------------------
@dataclass
class PairSession:
    """One visitor's extracted pair (lives in that visitor's gr.State)."""

    images: list[InputImage]
    descs: list[ImageDescriptors]
    matcher: PointMatcher
    corr: Any                       # vitdense.correspondences.Correspondences
    base: list[np.ndarray]          # A and B with the automatic pairs drawn (drawn once)
    params: dict
    clicks: list[dict] = field(default_factory=list)   # {"a": (y, x), "b": (y, x), ...}
    last_map: Optional[np.ndarray] = None               # h x w similarity of the last click
    base_png: tuple = ()            # ``base`` encoded as PNG (once; the zip's images without clicks)


def _pairs_json(s: PairSession) -> dict:
    c = s.corr
    pairs = [{"id": i + 1, "a": _xy(c.points1[i]), "b": _xy(c.points2[i]),
              "similarity": round(float(c.similarity[i]), 4),
              "saliency": None if not np.isfinite(c.saliency[i]) else round(float(c.saliency[i]), 4)}
             for i in range(len(c))]
    clicks = [{"id": chr(ord("a") + i), "a": _xy(k["a"]), "a_cell": _xy(k["a_cell"]), "b": _xy(k["b"]),
               "similarity": round(k["similarity"], 4), "mutual": k["mutual"]}
              for i, k in enumerate(s.clicks)]
    return {"image_a": {"name": s.images[0].name, "width": s.images[0].image.width,
                        "height": s.images[0].image.height},
            "image_b": {"name": s.images[1].name, "width": s.images[1].image.width,
                        "height": s.images[1].image.height},
            "coordinates": "pixels (x right, y down) of the images as processed",
            "num_best_buddies": int(c.num_best_buddies), "pairs": pairs, "clicks": clicks,
            "params": s.params}


def _render_pair(s: PairSession) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A and B with the automatic pairs and the clicks; the last click's heat map over B."""
    a, b = s.base
    if s.clicks:
        cols = CLICK_COLORS[np.arange(len(s.clicks)) % len(CLICK_COLORS)]
        labels = [chr(ord("a") + i) for i in range(len(s.clicks))]
        r = max(7, round(0.024 * max(a.shape[:2] + b.shape[:2])))
        a = draw.draw_markers(a, [k["a"] for k in s.clicks], cols, labels=labels, radius=r)
        b = draw.draw_markers(b, [k["b"] for k in s.clicks], cols, labels=labels, radius=r)
    heat = None
    if s.clicks and s.last_map is not None:
        last = s.clicks[-1]
        heat = draw.heatmap_overlay(s.images[1].array, s.last_map, geometry=s.descs[1].geometry)
        heat = draw.draw_markers(heat, [last["b"]], CLICK_COLORS[[(len(s.clicks) - 1) % len(CLICK_COLORS)]],
                                 labels=[chr(ord("a") + len(s.clicks) - 1)])
    return a, b, heat


def _clicks_markdown(s: PairSession) -> str:
    c = s.corr
    head = (f"**{len(c)} automatic pairs** (numbered) from {c.num_best_buddies} foreground best buddies "
            f"({c.num_mutual} mutual nearest neighbours in all).")
    if c.reason:
        head = f"**No automatic pairs:** {c.reason}."
    if not s.clicks:
        return head + "\n\nClick a point on image A to see its match on B."
    rows = ["| click | A (x, y) | match on B (x, y) | similarity | mutual (best buddies) |",
            "|---|---|---|---|---|"]
    for i, k in enumerate(s.clicks):
        rows.append(f"| {chr(ord('a') + i)} | {k['a'][1]:.0f}, {k['a'][0]:.0f} | "
                    f"{k['b'][1]:.0f}, {k['b'][0]:.0f} | {k['similarity']:.3f} | "
                    f"{'yes' if k['mutual'] else 'no'} |")
    return head + "\n\n" + "\n".join(rows)


def _pair_zip(s: PairSession, points: dict, a: np.ndarray, b: np.ndarray) -> str:
    """The download: points JSON, parameters and A, B as shown (with the clicks). Without clicks
    the images are the automatic-pairs pictures, whose PNG bytes the session already holds."""
    if not s.clicks and s.base_png:
        a, b = s.base_png
    return write_zip("correspondences", {
        "points.json": points, "params.json": s.params,
        f"A_{_stem(s.images[0].name)}_points.png": a, f"B_{_stem(s.images[1].name)}_points.png": b})


def _pair_outputs(s: PairSession, key: str) -> tuple:
    """(A, B, heat map, summary markdown, points JSON, zip, session key): every pair event's outputs."""
    a, b, heat = _render_pair(s)
    points = _pairs_json(s)
    return a, b, heat, _clicks_markdown(s), points, _pair_zip(s, points, a, b), key


def _pair_cleared(msg: str) -> tuple:
    """A cleared session: the sentence in the summary, every other output left as it is."""
    return gr.skip(), gr.skip(), gr.skip(), f"**{msg}**", gr.skip(), gr.skip(), gr.skip()


def _point_on_a(size: tuple[int, int], x: Any, y: Any) -> tuple[float, float]:
    """Validated pixel coordinates on image A (``size`` = (W, H))."""
    x, y = validate.number("x", x), validate.number("y", y)
    w, h = size
    if not (0 <= x < w and 0 <= y < h):
        raise ParameterError(f"the point (x={validate.shown(x)}, y={validate.shown(y)}) is outside "
                             f"image A ({w} x {h} pixels)")
    return x, y


def _pair_session(key: Any) -> PairSession:
    session = guard.STORE.get(key, "press Find correspondences")
    if session is None:
        raise ParameterError("run correspondences first (button 'Find correspondences'), "
                             "then click on image A")
    return session


def _extract_pair(image_a: Any, image_b: Any, model: str, task: str, progress: gr.Progress,
                  *settings_args: Any, saliency: bool = False) -> tuple[list, dict, list[ImageDescriptors]]:
    """Both uploads -> (prepared images, descriptor settings of ``task``, their descriptors)."""
    if image_a is None or image_b is None:
        raise ParameterError("upload two images (A and B) or pick an example first")
    images = [prepare_image(image_a, "A"), prepare_image(image_b, "B")]
    settings = descriptor_settings(model, task, *settings_args)
    admit(model, images, settings, saliency, progress)
    progress(0.05, desc=f"Loading {model}")
    POOL.get(model)
    progress(0.2, desc="Extracting descriptors")
    return images, settings, _extract(model, [im.image for im in images], dict(settings, saliency=saliency))


@guard.guarded("correspondences")
def run_correspondences(image_a: Any, image_b: Any, num_pairs: float = 10,
                        model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
                        stride: Any = AUTO, load_size: float = 224, bin: Any = AUTO,
                        corr_thresh: float = 0.05, progress: gr.Progress = gr.Progress()) -> tuple:
    """Two images -> the K best-buddy pairs drawn on both, and a session ready for clicks.

    Returns (A with points, B with points, heat map (None), summary markdown, points JSON,
    zip path, session).
    """
    num_pairs = validate.number("num_pairs", num_pairs, 1, 50, integer=True, default=10)
    corr_thresh = validate.number("corr_thresh", corr_thresh, 0.0, 1.0, default=0.05)
    images, settings, (d1, d2) = _extract_pair(image_a, image_b, model, "correspondences", progress,
                                               layer, facet, stride, load_size, bin, saliency=True)
    progress(0.75, desc="Finding best buddies")
    matcher = PointMatcher(d1, d2)  # one mutual-NN pass serves the automatic pairs and the clicks
    corr = find_correspondences_descriptors(d1, d2, num_pairs=int(num_pairs), thresh=float(corr_thresh),
                                            matcher=matcher)
    if corr.reason:
        gr.Warning(f"No automatic pairs: {corr.reason}. You can still click points on A.")
    base = draw.draw_correspondence_result(images[0].array, images[1].array, corr, separate=True)
    params = dict(task="correspondences", model=model, **settings, num_pairs=int(num_pairs),
                  thresh=float(corr_thresh), max_side=MAX_SIDE)
    matcher.compact()   # the session keeps one fp16 normalised copy of the descriptors
    s = PairSession(images, [matcher.d1, matcher.d2], matcher, corr, list(base), params,
                    base_png=tuple(Png(png_bytes(x)) for x in base))
    key = guard.STORE.put(guard.session_id(), s, slot="correspondences")
    return _pair_outputs(s, key) + (guard.Done(f"Found {len(corr)} pairs."),)


@guard.guarded("correspondences", cleared=_pair_cleared)
def match_point(key: Any, x: float, y: float) -> tuple:
    """Pixel (x, y) of image A -> its match on B; adds a click (kept per session)."""
    session = _pair_session(key)
    x, y = _point_on_a(session.images[0].image.size, x, y)
    m = session.matcher.query(float(y), float(x))
    click = {"a": (float(y), float(x)), "a_cell": m.source_point, "b": m.point,
             "similarity": float(m.similarity), "mutual": bool(m.is_best_buddy)}
    clicks = (session.clicks + [click])[-MAX_CLICKS:]
    s = dataclasses.replace(session, clicks=clicks, last_map=m.similarity_map)
    guard.STORE.update(key, s)
    return _pair_outputs(s, key) + (guard.Done(f"Click {chr(ord('a') + len(clicks) - 1)}: "
                                               f"(x={x:.0f}, y={y:.0f}) on A matches "
                                               f"(x={m.point[1]:.0f}, y={m.point[0]:.0f}) on B."),)


def click_correspondence(session: Any, evt: gr.SelectData) -> tuple:
    """A click on image A (gr.SelectData.index = [x, y] in the image's pixels)."""
    x, y = evt.index[0], evt.index[1]
    return match_point(session, x, y)


@guard.guarded("correspondences", cleared=_pair_cleared)
def clear_points(key: Any) -> tuple:
    """Forget the clicks (the automatic pairs stay)."""
    session = guard.STORE.get(key, "press Find correspondences")
    if session is None:
        return None, None, None, "", None, None, None
    s = dataclasses.replace(session, clicks=[], last_map=None)
    guard.STORE.update(key, s)
    return _pair_outputs(s, key)


# ---------------------------------------------------------------------------------------------
# co-segmentation
# ---------------------------------------------------------------------------------------------
@dataclass
class SetSession:
    """One visitor's set and its latest result (with the descriptors when they are re-clustered)."""

    images: list[InputImage]
    result: Any                     # CosegResult or PartsResult
    params: dict
    descs: list[ImageDescriptors] = field(default_factory=list)  # part co-segmentation only
    saliency: list = field(default_factory=list)                 # (re-clustering needs them)


def _coverage(mask: np.ndarray) -> float:
    return round(float(np.asarray(mask, bool).mean()), 4)


def _coseg_summary(s: SetSession) -> dict:
    r = s.result
    return {"num_images": len(s.images), "num_clusters": int(r.num_clusters),
            "salient_clusters": [int(c) for c in r.salient_clusters],
            "votes": [int(v) for v in r.votes], "votes_needed": int(r.votes_needed),
            "reason": r.reason,
            "images": [{"name": im.name, "width": im.image.width, "height": im.image.height,
                        "foreground_fraction": _coverage(m), "grabcut_refined": bool(ok)}
                       for im, m, ok in zip(s.images, r.masks, r.refined)],
            "params": s.params}


@guard.guarded("cosegmentation")
def run_cosegmentation(images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
                       stride: Any = AUTO, load_size: float = 224, bin: Any = AUTO,
                       thresh: float = 0.065, elbow: float = 0.975, votes_percentage: float = 75,
                       refine: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
    """A set -> each image's foreground mask as overlay and cut-out.

    Returns (overlays gallery, cut-outs gallery, summary markdown, summary JSON, zip, session).
    """
    thresh = validate.number("thresh", thresh, 0.0, 1.0, default=0.065)
    elbow = validate.number("elbow", elbow, 0.5, 1.0, default=0.975)
    votes_percentage = validate.number("votes_percentage", votes_percentage, 0, 100, default=75)
    refine = validate.flag("refine", refine)
    ims = prepare_set(images)
    settings = descriptor_settings(model, "cosegmentation", layer, facet, stride, load_size, bin)
    descs, sal = extract_set(model, ims, settings, progress)
    result = cosegment_descriptors(descs, sal, [im.image for im in ims], elbow=float(elbow),
                                   thresh=float(thresh), votes_percentage=float(votes_percentage),
                                   refine=bool(refine))
    if result.reason:
        gr.Warning(f"Empty masks: {result.reason}.")
    params = dict(task="cosegmentation", model=model, **settings, thresh=float(thresh),
                  elbow=float(elbow), votes_percentage=float(votes_percentage), refine=bool(refine),
                  max_side=MAX_SIDE)
    s = SetSession(ims, result, params)   # the descriptors are not kept: nothing re-clusters them
    progress(0.9, desc="Drawing")
    overlays = list(zip(draw.draw_cosegmentation([im.array for im in ims], result), [im.name for im in ims]))
    cutouts = [(draw.cutout(im.array, m), im.name) for im, m in zip(ims, result.masks)]
    summary = _coseg_summary(s)
    md = (f"**{result.num_clusters} clusters**, salient (foreground): "
          f"{', '.join(str(c) for c in result.salient_clusters) or 'none'} "
          f"(a cluster needs {result.votes_needed} of {len(ims)} votes). Foreground per image: "
          + ", ".join(f"{im.name} {100 * _coverage(m):.0f}%" for im, m in zip(ims, result.masks)))
    entries: dict[str, Any] = {"summary.json": summary, "params.json": params}
    for stem, m, (cut, _) in zip(_unique_stems(ims), result.masks, cutouts):
        entries[f"masks/{stem}.png"] = np.asarray(m, bool).astype(np.uint8) * 255
        entries[f"cutouts/{stem}.png"] = cut
    key = guard.STORE.put(guard.session_id(), s, slot="cosegmentation")
    return (overlays, cutouts, md, summary, write_zip("cosegmentation", entries), key,
            guard.Done(f"Co-segmented {len(ims)} images."))


@guard.guarded("cosegmentation")
def coseg_maps(key: Any) -> tuple:
    """The intermediate maps of the last co-segmentation: clusters (salient ones listed) and saliency."""
    session = guard.STORE.get(key, "press Co-segment")
    if session is None or not hasattr(session.result, "salient_clusters"):
        raise ParameterError("run co-segmentation first")
    r = session.result
    salient = ", ".join(str(c) for c in r.salient_clusters) or "none"
    clusters = [(draw.overlay_labels(im.array, lab, num_labels=r.num_clusters, background="keep",
                                     geometry=g),
                 f"{im.name}: clusters (salient: {salient})")
                for im, lab, g in zip(session.images, r.labels, r.geometries)]
    sal = [(draw.saliency_overlay(im.array, m, geometry=g), f"{im.name}: saliency")
           for im, m, g in zip(session.images, r.saliency, r.geometries)]
    return clusters, sal


# ---------------------------------------------------------------------------------------------
# part co-segmentation
# ---------------------------------------------------------------------------------------------
def _legend_html(k: int, fractions: Sequence[float]) -> str:
    cols = draw.part_colors(max(k, 1))
    items = []
    for p in range(k):
        r, g, b = (int(v) for v in cols[p])
        frac = f" {100 * float(fractions[p]):.0f}%" if p < len(fractions) else ""
        items.append(f"<span style='display:inline-block;margin-right:12px'>"
                     f"<span style='display:inline-block;width:14px;height:14px;background:rgb({r},{g},{b});"
                     f"border:1px solid #444;vertical-align:middle'></span> part {p + 1}{frac}</span>")
    return "".join(items)


def _parts_outputs(s: SetSession, index: int = 0) -> tuple:
    r = s.result
    k = int(r.num_parts)
    overlays = list(zip(draw.draw_parts([im.array for im in s.images], r), [im.name for im in s.images]))
    names = [im.name for im in s.images]
    index = min(max(int(index), 0), len(names) - 1)
    fig = _parts_figure(s, index)
    summary = {"num_images": len(s.images), "num_parts": k,
               "part_fractions": [round(float(f), 4) for f in r.part_fractions],
               "reason": r.reason, "notes": list(getattr(r, "notes", []) or []),
               "images": [{"name": im.name, "width": im.image.width, "height": im.image.height,
                           "part_pixels": np.bincount(np.asarray(m).ravel(), minlength=k + 1)[1:].tolist(),
                           "foreground_fraction": _coverage(np.asarray(m) > 0)}
                          for im, m in zip(s.images, r.part_maps)],
               "params": s.params}
    md = (f"<b>{k} parts</b> over {len(s.images)} images (share of the foreground):<br>"
          + _legend_html(k, r.part_fractions))
    if r.reason:
        md = f"<b>No parts:</b> {r.reason}."
    entries: dict[str, Any] = {"summary.json": summary, "params.json": s.params}
    for stem, m, (ov, _) in zip(_unique_stems(s.images), r.part_maps, overlays):
        entries[f"label_maps/{stem}.png"] = np.asarray(m).astype(np.uint8)  # 0 background, 1..K parts
        entries[f"overlays/{stem}.png"] = ov
    z = write_zip("part_cosegmentation", entries)
    selector = gr.Dropdown(choices=[(n, i) for i, n in enumerate(names)], value=index)
    key = guard.STORE.put(guard.session_id(), s, slot="parts")
    return overlays, fig, selector, md, summary, z, key, guard.Done(f"{k} parts in {len(s.images)} images.")


def _parts_figure(s: SetSession, index: int) -> Any:
    r = s.result
    k = int(r.num_parts)
    im = s.images[index]
    return draw.parts_figure(im.array, r.part_maps[index], num_parts=k, title=im.name)


def _part_knobs(num_parts: float, thresh: float, elbow: float, votes_percentage: float,
                crf: bool) -> dict:
    return dict(num_parts=validate.number("num_parts", num_parts, 1, 10, integer=True, default=4),
                thresh=validate.number("thresh", thresh, 0.0, 1.0, default=0.065),
                elbow=validate.number("elbow", elbow, 0.5, 1.0, default=0.975),
                votes_percentage=validate.number("votes_percentage", votes_percentage, 0, 100, default=75),
                crf=validate.flag("crf", crf))


@guard.guarded("parts")
def run_part_cosegmentation(images: Any, num_parts: float = 4, model: str = BUNDLED_MODEL,
                            layer: Any = AUTO, facet: Any = AUTO, stride: Any = AUTO,
                            load_size: float = 224, bin: Any = AUTO, thresh: float = 0.065,
                            elbow: float = 0.975, votes_percentage: float = 75, crf: bool = True,
                            progress: gr.Progress = gr.Progress()) -> tuple:
    """A set -> common parts in consistent colours.

    Returns (part overlays gallery, plotly figure of one image, image selector, legend markdown,
    summary JSON, zip, session).
    """
    knobs = _part_knobs(num_parts, thresh, elbow, votes_percentage, crf)
    ims = prepare_set(images)
    settings = descriptor_settings(model, "parts", layer, facet, stride, load_size, bin)
    descs, sal = extract_set(model, ims, settings, progress)
    result = part_cosegment_descriptors(descs, sal, [im.image for im in ims], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    params = dict(task="part_cosegmentation", model=model, **settings, **knobs, max_side=MAX_SIDE)
    progress(0.9, desc="Drawing")
    # the session keeps the descriptors in fp16 for re-clustering
    return _parts_outputs(SetSession(ims, result, params, [compact_descriptors(d) for d in descs], sal))


@guard.guarded("parts")
def recluster_parts(key: Any, num_parts: float = 4, thresh: float = 0.065,
                    elbow: float = 0.975, votes_percentage: float = 75, crf: bool = True,
                    progress: gr.Progress = gr.Progress()) -> tuple:
    """Re-cluster the session's cached descriptors (no network pass) with new part settings."""
    knobs = _part_knobs(num_parts, thresh, elbow, votes_percentage, crf)
    session = guard.STORE.get(key, "press Find parts")
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first, then change the number of parts")
    guard.admit([], None, 1, 1, 0, progress)   # no network pass, but CPU work: one at a time
    progress(0.1, desc="Re-clustering the cached descriptors")
    result = part_cosegment_descriptors([expand_descriptors(d) for d in session.descs], session.saliency,
                                        [im.image for im in session.images], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    params = dict(session.params, **knobs)
    return _parts_outputs(dataclasses.replace(session, result=result, params=params))


@guard.guarded("parts")
def part_view(key: Any, index: Any) -> Any:
    """The interactive (hover shows the part) figure of image ``index`` of the last result."""
    session = guard.STORE.get(key, "press Find parts")
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first")
    index = validate.number("index", index, 0, len(session.images) - 1, integer=True, default=0)
    return _parts_figure(session, index)


# ---------------------------------------------------------------------------------------------
# similarity inspector
# ---------------------------------------------------------------------------------------------
@dataclass
class SimilaritySession:
    images: list[InputImage]
    descs: list[ImageDescriptors]
    params: dict


@guard.guarded("similarity")
def run_similarity(image_a: Any, image_b: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO,
                   facet: Any = AUTO, stride: Any = AUTO, load_size: float = 224, bin: Any = AUTO,
                   progress: gr.Progress = gr.Progress()) -> tuple:
    """Extract A and B for the inspector. Returns (A, B, hint markdown, session)."""
    ims, settings, descs = _extract_pair(image_a, image_b, model, "similarity", progress,
                                         layer, facet, stride, load_size, bin)
    params = dict(task="similarity", model=model, **settings, max_side=MAX_SIDE)
    s = SimilaritySession(ims, [compact_descriptors(d) for d in descs], params)
    key = guard.STORE.put(guard.session_id(), s, slot="similarity")
    return (ims[0].array, ims[1].array, "Descriptors ready: click a point on image A.", key,
            guard.Done("Descriptors extracted."))


@guard.guarded("similarity")
def similarity_point(key: Any, x: float, y: float, top_n: float = 5) -> tuple:
    """Pixel (x, y) of A -> similarity maps over A and B with the top-n patches of each.

    Returns (map over A, map over B, markdown, JSON).
    """
    session = guard.STORE.get(key, "press Extract descriptors")
    if session is None:
        raise ParameterError("extract the images first (button 'Extract descriptors'), then click on A")
    x, y = _point_on_a(session.images[0].image.size, x, y)
    top_n = validate.number("top_n", top_n, 1, 20, integer=True, default=5)
    d1, d2 = (expand_descriptors(d) for d in session.descs)
    r = inspect_similarity_descriptors(d1, d2, (float(y), float(x)), top_n=int(top_n))
    maps = draw.draw_similarity(session.images[0].array, session.images[1].array, r)
    def top(points: np.ndarray, sims: np.ndarray) -> list[dict]:
        return [dict(_xy(p), similarity=round(float(v), 4)) for p, v in zip(points, sims)]

    info = {"query": {"x": float(x), "y": float(y)}, "query_cell": _xy(r.query_cell_point),
            "top_a": top(r.top_a_points, r.top_a_similarity),
            "top_b": top(r.top_b_points, r.top_b_similarity),
            "params": dict(session.params, top_n=int(top_n))}
    md = (f"Query (x={x:.0f}, y={y:.0f}) -> cell centre ({r.query_cell_point[1]:.0f}, "
          f"{r.query_cell_point[0]:.0f}). Best on B: " +
          ", ".join(f"#{i + 1} ({p[1]:.0f}, {p[0]:.0f}) {v:.3f}"
                    for i, (p, v) in enumerate(zip(r.top_b_points, r.top_b_similarity))))
    return maps[0], maps[1], md, info


def click_similarity(session: Any, top_n: float, evt: gr.SelectData) -> tuple:
    return similarity_point(session, evt.index[0], evt.index[1], top_n)


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------
@guard.guarded("pca")
def run_pca(images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
            stride: Any = AUTO, load_size: float = 224, bin: Any = AUTO,
            progress: gr.Progress = gr.Progress()) -> tuple:
    """The first three principal components (computed jointly over the set) as RGB.

    Returns (gallery, explained-variance markdown, zip).
    """
    ims = prepare_set(images, minimum=1)
    settings = descriptor_settings(model, "pca", layer, facet, stride, load_size, bin)
    descs, _ = extract_set(model, ims, settings, progress, with_saliency=False)
    result = pca_descriptors(descs, n_components=3)
    rgb = draw.draw_pca(result, order="bilinear")
    ratio = ", ".join(f"{100 * v:.1f}%" for v in result.explained_variance_ratio)
    params = dict(task="pca", model=model, **settings, n_components=3, max_side=MAX_SIDE)
    entries: dict[str, Any] = {"params.json": params,
                               "explained_variance_ratio.json": result.explained_variance_ratio.tolist()}
    for stem, img in zip(_unique_stems(ims), rgb):
        entries[f"pca/{stem}.png"] = img
    gallery = [(img, im.name) for img, im in zip(rgb, ims)]
    md = f"Components 1-3 as R, G, B (joint over {len(ims)} images); explained variance {ratio}."
    return gallery, md, write_zip("pca", entries), guard.Done(f"PCA of {len(ims)} images.")


# ---------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------
def video_available() -> bool:
    try:
        from . import video  # noqa: F401
    except Exception:  # noqa: BLE001 - an optional feature: any import failure hides the tab
        return False
    return True


@_gpu
def _video_parts(model: str, frames: list, kwargs: dict) -> Any:
    from .video import video_parts
    return video_parts(POOL.get(model), frames, **kwargs)


@guard.guarded("video")
def run_video(clip: Any, num_parts: float = 4, num_sampled_frames: float = 8,
              model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO, stride: Any = AUTO,
              load_size: float = 224, bin: Any = AUTO, thresh: float = 0.065, elbow: float = 0.975,
              votes_percentage: float = 75, progress: gr.Progress = gr.Progress()) -> tuple:
    """A short clip -> the clip with its parts coloured. Returns (video path, markdown, zip)."""
    from .video import read_video, write_video
    num_parts = validate.number("num_parts", num_parts, 1, 10, integer=True, default=4)
    num_sampled_frames = validate.number("num_sampled_frames", num_sampled_frames, 2, 20, integer=True,
                                         default=8)
    thresh = validate.number("thresh", thresh, 0.0, 1.0, default=0.065)
    elbow = validate.number("elbow", elbow, 0.5, 1.0, default=0.975)
    votes_percentage = validate.number("votes_percentage", votes_percentage, 0, 100, default=75)
    if clip is None:
        raise ParameterError("upload a short video or pick the example first")
    path = clip.get("path") if isinstance(clip, dict) else clip
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError("the upload is not a video file")
    progress(0.02, desc="Reading the clip")
    frames, fps = read_video(path, max_side=VIDEO_MAX_SIDE)
    if len(frames) > MAX_VIDEO_FRAMES:
        step = int(np.ceil(len(frames) / MAX_VIDEO_FRAMES))
        frames, fps = frames[::step], fps / step
        gr.Warning(f"The clip was subsampled to every {step}th frame ({len(frames)} frames; "
                f"the demo's limit is {MAX_VIDEO_FRAMES}).")
    settings = descriptor_settings(model, "video", layer, facet, stride, load_size, bin)
    spec = get_spec(model)
    guard.admit([frames[0].shape[1::-1]] * min(int(num_sampled_frames), len(frames)), settings["load_size"],
                spec.patch_size, settings["stride"], spec.depth, progress)
    progress(0.1, desc=f"Part co-segmentation of {min(int(num_sampled_frames), len(frames))} frames, "
                       f"then labelling {len(frames)} frames")
    POOL.get(model)
    result = _video_parts(model, frames, dict(settings, num_sampled_frames=int(num_sampled_frames),
                                              fps=fps, num_parts=int(num_parts), thresh=float(thresh),
                                              elbow=float(elbow), votes_percentage=float(votes_percentage)))
    progress(0.85, desc="Drawing and encoding the clip")
    k = int(result.num_parts)
    label_maps = [result.label_map(i) for i in range(result.num_frames)]   # once: drawn and saved
    annotated = draw.draw_video_parts(frames, result, label_maps=label_maps)
    part_maps = [np.asarray(m).astype(np.uint8) for m in label_maps]
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="video-", dir=OUTPUT_ROOT))
    out = write_video(annotated, folder / "parts.mp4", fps=fps or 10.0)
    params = dict(task="video", model=model, **settings, num_parts=int(num_parts),
                  num_sampled_frames=int(num_sampled_frames), thresh=float(thresh), elbow=float(elbow),
                  votes_percentage=float(votes_percentage), frames=len(frames), fps=fps)
    entries: dict[str, Any] = {"params.json": params, "parts.mp4": Path(out).read_bytes()}
    for i, m in enumerate(part_maps):
        entries[f"label_maps/frame_{i:04d}.png"] = m       # 0 = background, 1..K = parts
    md = (f"<b>{k} parts</b> in {len(frames)} frames (part co-segmentation of "
          f"{len(result.sampled_indices)} sampled frames, labels propagated to every frame).<br>"
          + _legend_html(k, []))
    return str(out), md, write_zip("video_parts", entries), guard.Done(f"{k} parts in {len(frames)} frames.")


# ---------------------------------------------------------------------------------------------
# examples
# ---------------------------------------------------------------------------------------------
def _assets(pattern: str) -> list[str]:
    return [str(p) for p in sorted(ASSETS.glob(pattern))]


def example_pairs() -> list[list[str]]:
    pairs = []
    for a in _assets("pairs/*_a.jpg"):
        b = a[:-len("_a.jpg")] + "_b.jpg"
        if Path(b).is_file():
            pairs.append([a, b])
    return pairs


def example_sets() -> dict[str, list[str]]:
    return {name: _assets(f"{name}/*.jpg") for name in ("cats", "cups") if _assets(f"{name}/*.jpg")}


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------
def _upload_path(self: gr.Image, payload: Any) -> Optional[str]:
    """gr.Image.preprocess replacement: the uploaded file's path, unopened (see image_input)."""
    if payload is None:
        return None
    if payload.path is None or (payload.url or "").startswith("data:"):
        return gr.Image.preprocess(self, payload)  # pasted data URLs: Gradio writes them to a file
    return str(payload.path)


def image_input(**kwargs: Any) -> gr.Image:
    """A gr.Image upload whose value reaches the handler as the file's path, unopened.

    gr.Image opens the file with PIL before the handler runs, so a non-image or corrupt upload
    would fail inside Gradio with a long message; here vitdense.load_image reads it and reports
    the problem in one line. (The instance's preprocess is replaced: a gr.Image subclass would make
    Gradio write a .pyi stub next to this module.)
    """
    component = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], **kwargs)
    component.preprocess = types.MethodType(_upload_path, component)
    return component


def _release_key(key: Any) -> None:
    """gr.State's delete callback (its time to live passed, or the session ended)."""
    guard.STORE.release(key)


def release_session(request: gr.Request) -> None:
    """The browser tab was closed: free that visitor's results at once."""
    n = guard.STORE.release_owner(str(getattr(request, "session_hash", "") or ""))
    if n:
        log.info("released %d results of a closed tab", n)


def status_line(tab: str) -> gr.Markdown:
    """The tab's status line: what went wrong (or what was done), kept until the next action."""
    return gr.Markdown("", elem_id=f"{tab}-status", elem_classes=["vitdense-status"])


def check_uploads(components: Sequence[Any], tab: str, status: Any) -> None:
    """Warn as soon as a file is uploaded that a run would refuse (not an image, too small, too
    large), in a toast and in the tab's status line."""
    for component in components:
        def check(value: Any) -> None:
            guard.check_upload_value(value, tab)
        guard.wire_status(component.upload(check, component, None, api_visibility="private",
                                           concurrency_limit=None, show_progress="hidden"), tab, status)


def update_load_size(model: Any, stride: Any, load_size: Any) -> Any:
    """Stride changed -> the load size slider ends at the largest size the work limit accepts."""
    try:
        spec = get_spec(model)
        s = spec.default_stride if _choice(stride) is None else int(stride)
    except (VitdenseError, TypeError, ValueError):
        return gr.skip()
    top = guard.load_size_bound(spec.patch_size, s, spec.depth, LOAD_SIZES)
    value = load_size if isinstance(load_size, (int, float)) and load_size <= top else min(224, top)
    return gr.Slider(maximum=top, value=value)


INTRO = f"""
# Deep ViT features as dense visual descriptors
Zero-shot correspondences, co-segmentation and part co-segmentation from the descriptors of a
self-supervised Vision Transformer ([Amir, Gandelsman, Bagon, Dekel 2021](https://arxiv.org/abs/2112.05814)),
implemented by `vitdense`. Pick a tab, upload images or click an example,
then press the button. Images are downscaled to {MAX_SIDE} px; sets hold {MIN_SET_IMAGES} to
{MAX_SET_IMAGES} images. Everything you upload stays in your session.
"""


def build_demo(online: bool | None = None) -> gr.Blocks:
    """The page, top to bottom: model and advanced settings, then one tab per application."""
    choices = model_choices(online)
    default_model = choices[0][1]
    pairs, sets = example_pairs(), example_sets()
    set_labels = [f"{name} ({len(paths)} photos)" for name, paths in sets.items()]

    with gr.Blocks(title="vitdense: deep ViT features as dense descriptors",
                   delete_cache=guard.delete_cache()) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            model = gr.Dropdown(choices, value=default_model, label="Model", scale=3,
                                info="The bundled DINOv2 ViT-S/14 works offline; DINO v1 models (the "
                                     "paper's) appear when their weights are cached or downloadable.")
            gr.Markdown(device_note())
        with gr.Accordion("Advanced settings", open=False):
            with gr.Row():
                layer = gr.Dropdown([AUTO] + [str(i) for i in range(get_spec(default_model).depth)],
                                    value=AUTO, label="Layer",
                                    info="Block whose features are used. auto: 9 for correspondences, "
                                         "11 for the rest (the paper's choices).")
                facet = gr.Dropdown([AUTO, "key", "query", "value", "token"], value=AUTO, label="Facet",
                                    info="auto: key for DINO v1 (paper), token for DINOv2 (its keys "
                                         "mostly encode position).")
                stride = gr.Dropdown(stride_choices(default_model), value=AUTO, label="Stride",
                                     info="Patch step in pixels; smaller = denser grid, slower. "
                                          "auto: half the patch.")
                bin_ = gr.Dropdown([AUTO, "on", "off"], value=AUTO, label="Log-binning",
                                   info="Adds context from neighbouring patches. auto: on for "
                                        "correspondences with DINO v1, off otherwise.")
            with gr.Row():
                load_size = gr.Slider(112, 448, value=224, step=14, label="Load size",
                                      info="Smaller image side after resizing, in pixels. Time grows "
                                           "with its square.")
                corr_thresh = gr.Slider(0.0, 0.5, value=0.05, step=0.005,
                                        label="Saliency threshold (correspondences)",
                                        info="Automatic pairs must be this salient in both images.")
                thresh = gr.Slider(0.0, 0.5, value=0.065, step=0.005,
                                   label="Saliency threshold (co-segmentation)",
                                   info="An image votes for a cluster whose mean saliency exceeds this.")
            with gr.Row():
                elbow = gr.Slider(0.8, 0.999, value=0.975, step=0.001, label="Elbow",
                                  info="k-means stops adding clusters when the error drops by less "
                                       "than this ratio.")
                votes = gr.Slider(0, 100, value=75, step=5, label="Votes %",
                                  info="Share of the images that must find a cluster salient for it "
                                       "to be foreground.")
                refine = gr.Checkbox(True, label="GrabCut refinement",
                                     info="Refine co-segmentation masks along image edges.")
                crf = gr.Checkbox(True, label="CRF smoothing",
                                  info="Smooth part maps along image edges (dense CRF).")
            gr.Markdown("The number of pairs and of parts are set in their tabs.")
        descriptor_inputs = [model, layer, facet, stride, load_size, bin_]
        model.change(update_stride_choices, model, stride, api_visibility="private")
        stride.change(update_load_size, [model, stride, load_size], load_size, api_visibility="private")

        with gr.Tabs():
            # -- correspondences -----------------------------------------------------------
            with gr.Tab("Correspondences", id="correspondences"):
                pair_state = gr.State(None, time_to_live=guard.LIMITS.idle_s, delete_callback=_release_key)
                corr_status = status_line("correspondences")
                with gr.Row():
                    corr_a_in = image_input(label="Image A", height=260, elem_id="corr-a-input")
                    corr_b_in = image_input(label="Image B", height=260, elem_id="corr-b-input")
                gr.Examples(pairs, [corr_a_in, corr_b_in], label="Example pairs")
                check_uploads([corr_a_in, corr_b_in], "correspondences", corr_status)
                with gr.Row():
                    num_pairs = gr.Slider(1, 50, value=10, step=1, label="Number of pairs",
                                          info="Best buddies are clustered into this many well-spread pairs.")
                    corr_btn = gr.Button("Find correspondences", variant="primary", elem_id="corr-run")
                with gr.Row():
                    corr_a_out = gr.Image(label="A: click a point", format="png", interactive=False,
                                          elem_id="corr-a-output")
                    corr_b_out = gr.Image(label="B: matches", format="png", interactive=False,
                                          elem_id="corr-b-output")
                with gr.Row():
                    corr_heat = gr.Image(label="Similarity of the last click over B", format="png",
                                         interactive=False, elem_id="corr-heat")
                    with gr.Column():
                        corr_md = gr.Markdown(elem_id="corr-summary")
                        with gr.Row():
                            click_x = gr.Number(None, label="x on A", precision=0, minimum=0)
                            click_y = gr.Number(None, label="y on A", precision=0, minimum=0)
                        with gr.Row():
                            match_btn = gr.Button("Match this point")
                            clear_btn = gr.Button("Clear clicks", elem_id="corr-clear")
                        corr_zip = gr.File(height=90, label="Download (points JSON, annotated images, parameters)")
                with gr.Accordion("Points (JSON)", open=False):
                    corr_json = gr.JSON()
                pair_outputs = [corr_a_out, corr_b_out, corr_heat, corr_md, corr_json, corr_zip, pair_state]
                guard.wire_status(corr_btn.click(run_correspondences,
                               [corr_a_in, corr_b_in, num_pairs, *descriptor_inputs, corr_thresh],
                               pair_outputs, api_name="correspondences", concurrency_limit=None), 'correspondences', corr_status)
                guard.wire_status(corr_a_out.select(click_correspondence, pair_state, pair_outputs, api_visibility="private",
                                  concurrency_limit=None, show_progress="minimal"), 'correspondences', corr_status)
                guard.wire_status(match_btn.click(match_point, [pair_state, click_x, click_y], pair_outputs,
                                api_name="match_point", concurrency_limit=None), 'correspondences', corr_status)
                guard.wire_status(clear_btn.click(clear_points, pair_state, pair_outputs, api_name="clear_points",
                                concurrency_limit=None), 'correspondences', corr_status)

            # -- co-segmentation ------------------------------------------------------------
            with gr.Tab("Co-segmentation", id="cosegmentation"):
                coseg_state = gr.State(None, time_to_live=guard.LIMITS.idle_s, delete_callback=_release_key)
                coseg_status = status_line("cosegmentation")
                coseg_in = gr.Gallery(label=f"Image set ({MIN_SET_IMAGES}-{MAX_SET_IMAGES} images)",
                                      type="filepath", interactive=True, file_types=["image"],
                                      columns=6, height=220, elem_id="coseg-input")
                gr.Examples([[v] for v in sets.values()], [coseg_in], label="Example sets",
                            example_labels=set_labels)
                check_uploads([coseg_in], "cosegmentation", coseg_status)
                coseg_btn = gr.Button("Co-segment", variant="primary")
                coseg_md = gr.Markdown()
                with gr.Row():
                    coseg_overlays = gr.Gallery(label="Masks", columns=4, format="png")
                    coseg_cutouts = gr.Gallery(label="Cut-outs", columns=4, format="png")
                coseg_zip = gr.File(height=90, label="Download (masks PNG, cut-outs, summary, parameters)")
                with gr.Accordion("Intermediate maps: clusters and saliency", open=False):
                    maps_btn = gr.Button("Show clustering and saliency maps")
                    with gr.Row():
                        coseg_clusters = gr.Gallery(label="Clusters", columns=4, format="png")
                        coseg_saliency = gr.Gallery(label="Saliency", columns=4, format="png")
                with gr.Accordion("Summary (JSON)", open=False):
                    coseg_json = gr.JSON()
                guard.wire_status(coseg_btn.click(run_cosegmentation,
                                [coseg_in, *descriptor_inputs, thresh, elbow, votes, refine],
                                [coseg_overlays, coseg_cutouts, coseg_md, coseg_json, coseg_zip, coseg_state],
                                api_name="cosegmentation", concurrency_limit=None), 'cosegmentation', coseg_status)
                guard.wire_status(maps_btn.click(coseg_maps, coseg_state, [coseg_clusters, coseg_saliency],
                               api_name="coseg_maps", concurrency_limit=None), 'cosegmentation', coseg_status)

            # -- part co-segmentation -------------------------------------------------------
            with gr.Tab("Part co-segmentation", id="parts"):
                parts_state = gr.State(None, time_to_live=guard.LIMITS.idle_s, delete_callback=_release_key)
                parts_status = status_line("parts")
                parts_in = gr.Gallery(label=f"Image set ({MIN_SET_IMAGES}-{MAX_SET_IMAGES} images)",
                                      type="filepath", interactive=True, file_types=["image"],
                                      columns=6, height=220)
                gr.Examples([[v] for v in sets.values()], [parts_in], label="Example sets",
                            example_labels=set_labels)
                check_uploads([parts_in], "parts", parts_status)
                with gr.Row():
                    num_parts = gr.Slider(1, 10, value=4, step=1, label="Number of parts",
                                          info="After a run, 'Re-cluster' reuses the cached descriptors "
                                               "(no network pass).")
                    parts_btn = gr.Button("Find parts", variant="primary")
                    recluster_btn = gr.Button("Re-cluster")
                parts_md = gr.HTML()
                parts_gallery = gr.Gallery(label="Parts (same colour = same part in every image)",
                                           columns=5, format="png")
                with gr.Row():
                    parts_index = gr.Dropdown(choices=[], label="Inspect image", scale=1,
                                              info="Hover the picture to see the part under the cursor.")
                    parts_plot = gr.Plot(label="Interactive view", scale=3)
                parts_zip = gr.File(height=90, label="Download (label maps PNG: 0 = background, 1..K = parts)")
                with gr.Accordion("Summary (JSON)", open=False):
                    parts_json = gr.JSON()
                parts_outputs = [parts_gallery, parts_plot, parts_index, parts_md, parts_json, parts_zip,
                                 parts_state]
                part_knobs = [num_parts, thresh, elbow, votes, crf]
                guard.wire_status(parts_btn.click(run_part_cosegmentation,
                                [parts_in, num_parts, *descriptor_inputs, thresh, elbow, votes, crf],
                                parts_outputs, api_name="part_cosegmentation", concurrency_limit=None), 'parts', parts_status)
                guard.wire_status(recluster_btn.click(recluster_parts, [parts_state, *part_knobs], parts_outputs,
                                    api_name="recluster_parts", concurrency_limit=None), 'parts', parts_status)
                guard.wire_status(parts_index.input(part_view, [parts_state, parts_index], parts_plot, api_name="part_view",
                                  concurrency_limit=None), 'parts', parts_status)

            # -- similarity -----------------------------------------------------------------
            with gr.Tab("Similarity inspector", id="similarity"):
                sim_state = gr.State(None, time_to_live=guard.LIMITS.idle_s, delete_callback=_release_key)
                sim_status = status_line("similarity")
                with gr.Row():
                    sim_a_in = image_input(label="Image A", height=260)
                    sim_b_in = image_input(label="Image B", height=260)
                gr.Examples(pairs, [sim_a_in, sim_b_in], label="Example pairs")
                check_uploads([sim_a_in, sim_b_in], "similarity", sim_status)
                with gr.Row():
                    top_n = gr.Slider(1, 20, value=5, step=1, label="Top-n patches")
                    sim_btn = gr.Button("Extract descriptors", variant="primary")
                sim_md = gr.Markdown()
                with gr.Row():
                    sim_a_out = gr.Image(label="A: click a point (similarity over A)", format="png",
                                         interactive=False)
                    sim_b_out = gr.Image(label="Similarity over B (top-n numbered)", format="png",
                                         interactive=False)
                with gr.Row():
                    sim_x = gr.Number(None, label="x on A", precision=0, minimum=0)
                    sim_y = gr.Number(None, label="y on A", precision=0, minimum=0)
                    sim_point_btn = gr.Button("Inspect this point")
                with gr.Accordion("Top patches (JSON)", open=False):
                    sim_json = gr.JSON()
                guard.wire_status(sim_btn.click(run_similarity, [sim_a_in, sim_b_in, *descriptor_inputs],
                              [sim_a_out, sim_b_out, sim_md, sim_state], api_name="similarity",
                              concurrency_limit=None), 'similarity', sim_status)
                guard.wire_status(sim_a_out.select(click_similarity, [sim_state, top_n], [sim_a_out, sim_b_out, sim_md, sim_json],
                                 api_visibility="private", concurrency_limit=None, show_progress="minimal"), 'similarity', sim_status)
                guard.wire_status(sim_point_btn.click(similarity_point, [sim_state, sim_x, sim_y, top_n],
                                    [sim_a_out, sim_b_out, sim_md, sim_json], api_name="similarity_point",
                                    concurrency_limit=None), 'similarity', sim_status)

            # -- PCA ------------------------------------------------------------------------
            with gr.Tab("PCA", id="pca"):
                pca_status = status_line("pca")
                pca_in = gr.Gallery(label=f"Images (1-{MAX_SET_IMAGES})", type="filepath", interactive=True,
                                    file_types=["image"], columns=6, height=220)
                gr.Examples([[v] for v in sets.values()], [pca_in], label="Example sets",
                            example_labels=set_labels)
                check_uploads([pca_in], "pca", pca_status)
                pca_btn = gr.Button("Compute PCA", variant="primary")
                pca_md = gr.Markdown()
                pca_gallery = gr.Gallery(label="First three components as RGB", columns=5, height=300,
                                         format="png")
                pca_zip = gr.File(height=90, label="Download (PCA images, parameters)")
                guard.wire_status(pca_btn.click(run_pca, [pca_in, *descriptor_inputs], [pca_gallery, pca_md, pca_zip],
                              api_name="pca", concurrency_limit=None), 'pca', pca_status)

            # -- video ----------------------------------------------------------------------
            if video_available():
                with gr.Tab("Video", id="video"):
                    video_status = status_line("video")
                    with gr.Row():
                        video_in = gr.Video(label="Clip (short; frames downscaled to "
                                                  f"{VIDEO_MAX_SIDE} px, at most {MAX_VIDEO_FRAMES} frames)",
                                            sources=["upload"])
                        video_out = gr.Video(label="Parts", format="mp4")
                    clips = _assets("video/*.mp4")
                    if clips:
                        gr.Examples([[c] for c in clips], [video_in], label="Example clip",
                                    example_labels=[Path(c).stem.replace("_", " ") for c in clips])
                    with gr.Row():
                        video_parts_n = gr.Slider(1, 10, value=4, step=1, label="Number of parts")
                        video_frames = gr.Slider(2, 20, value=8, step=1, label="Frames to co-segment",
                                                 info="Parts are found on these evenly spread frames, "
                                                      "then every frame is labelled.")
                        video_btn = gr.Button("Segment parts", variant="primary")
                    video_md = gr.HTML()
                    video_zip = gr.File(height=90, label="Download (label maps PNG, clip, parameters)")
                    guard.wire_status(video_btn.click(run_video,
                                    [video_in, video_parts_n, video_frames, *descriptor_inputs, thresh,
                                     elbow, votes],
                                    [video_out, video_md, video_zip], api_name="video", concurrency_limit=None), 'video', video_status)
        demo.unload(release_session)
    for block in demo.blocks.values():   # every number / choice reaches our validators as sent
        if isinstance(block, (gr.Number, gr.Slider, gr.Dropdown, gr.Checkbox)):
            guard.raw(block)
    return demo


def launch(server_name: str | None = None, server_port: int | None = None, share: bool = False,
           concurrency: int = 1, device: str = "auto", online: bool | None = None,
           preload: bool = True, limits: dict | None = None, **kwargs: Any) -> Any:
    """Build and serve the demo (blocks the caller unless ``prevent_thread_lock=True``).

    ``limits``: :class:`vitdense.webguard.Limits` fields (session memory, work limit, queue...)."""
    configure(device)
    guard.configure(concurrency=concurrency, **(limits or {}))
    guard.start_janitor([OUTPUT_ROOT])
    if preload or ON_ZERO_GPU:  # ZeroGPU: the model must be loaded outside the GPU-wrapped calls
        POOL.get(BUNDLED_MODEL)
    demo = build_demo(online)
    demo.queue(default_concurrency_limit=None, max_size=guard.QUEUE_SIZE)
    return demo.launch(server_name=server_name, server_port=server_port, share=share,
                       show_error=True, allowed_paths=[str(ASSETS)], theme=gr.themes.Soft(),
                       footer_links=["api", "gradio"], **kwargs)

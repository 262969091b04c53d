"""Upload preparation: files a visitor sends -> RGB images within the demo's limits, the Advanced
settings -> descriptor settings, the upload components, and the example assets."""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
from PIL import Image

from vitdense.errors import ImageError, ParameterError
from vitdense.features.descriptors import FACETS, DescriptorSettings
from vitdense.features.images import load_image
from vitdense.features.models import get_spec
from vitdense.web import gate
from vitdense.web.patches import upload_path
from vitdense.web.serving import validate
from vitdense.web.serving.workbudget import Job

AUTO = "auto"
ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
MAX_SIDE = 1024            # longer image side kept (larger uploads are downscaled, with a notice)
MIN_SET_IMAGES = 2
MAX_SET_IMAGES = 30
MIN_LOAD_SIZE, MAX_LOAD_SIZE = 56, 1024   # what the API accepts (the page offers 112-448)
LOAD_SIZES = list(range(112, 449, 14))    # the load size slider's steps


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


def gallery_paths(items: Any) -> list[Any]:
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
            inner = item.get("image")
            item = item.get("path") or (inner.get("path") if isinstance(inner, dict) else inner)
        if item is not None:
            out.append(item)
    return out


def prepare_set(items: Any, minimum: int = MIN_SET_IMAGES) -> list[InputImage]:
    """A set upload -> InputImages; between ``minimum`` and MAX_SET_IMAGES of them."""
    paths = gallery_paths(items)
    if len(paths) < minimum:
        need = "a set of at least 2 images" if minimum > 1 else "at least one image"
        got = "none" if not paths else f"only {len(paths)}"
        raise ParameterError(f"this needs {need} ({got} given): upload more images or pick an example")
    if len(paths) > MAX_SET_IMAGES:
        raise ParameterError(f"{len(paths)} images is more than the demo's maximum of {MAX_SET_IMAGES}: "
                             "remove some, or run the vitdense command line on the full set")
    return [prepare_image(p, f"image_{i + 1}") for i, p in enumerate(paths)]


def prepare_pair(image_a: Any, image_b: Any) -> list[InputImage]:
    """Two uploads (A and B) -> InputImages."""
    if image_a is None or image_b is None:
        raise ParameterError("upload two images (A and B) or pick an example first")
    return [prepare_image(image_a, "A"), prepare_image(image_b, "B")]


def job(model: str, sizes_wh: Sequence[tuple[int, int]], settings: dict, saliency: bool) -> Job:
    """The heavy job of the running tab that extracts images of ``sizes_wh`` (W, H) with ``model``
    at the descriptor ``settings``."""
    spec = get_spec(model)
    return Job(app=gate.CURRENT_TAB.get(), sizes_wh=tuple(tuple(s) for s in sizes_wh),
               load_size=settings["load_size"], patch=spec.patch_size, stride=settings["stride"],
               blocks=gate.blocks_run(spec.depth, settings["layer"], saliency), embed_dim=spec.embed_dim,
               bin=bool(settings.get("bin")))


def admit(model: str, images: Sequence[InputImage], settings: dict, saliency: bool,
          progress: Any = None) -> None:
    """Admit the heavy job of ``images`` (vitdense.web.gate.admit): refused at once above the
    limits, else it waits (bounded, one job per visitor) for its turn; held until the handler returns."""
    gate.admit(job(model, [im.image.size for im in images], settings, saliency), progress)


def numbered_stems(images: Sequence[InputImage]) -> list[str]:
    """File stems for zip entries, numbered so two uploads with one name stay apart."""
    from vitdense.export import unique_stems
    return unique_stems([im.name for im in images], numbered=True)


# -- settings -------------------------------------------------------------------------------------
def choice(value: Any) -> Any:
    """"auto" / "" / None -> None; otherwise the value."""
    return None if value in (None, "", AUTO) else value


def int_setting(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
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
                        stride: Any = AUTO, load_size: Any = None, bin: Any = AUTO) -> dict:
    """The Advanced settings -> keyword arguments of ``Extractor.extract`` for ``task``.

    "auto" (and an unset load size) is the defaults table's value for the task and the model
    (vitdense/defaults.py: layer 9 for correspondences, 11 otherwise, as the paper), with the model's
    own facet (key for DINO v1 as in the paper, token for DINOv2), stride (half the patch) and, where
    the table says None, log-binning (on for DINO v1, off for DINOv2).
    """
    spec = get_spec(model if isinstance(model, str) else validate.shown(model))
    facet = choice(facet)
    if facet is not None and facet not in FACETS:
        raise ParameterError(f"facet={validate.shown(facet)!r} is unknown: expected one of "
                             f"{', '.join(FACETS)}")
    if choice(bin) is None or bin in (True, False):
        binned = choice(bin)
    elif str(bin).lower() in ("on", "true", "yes"):
        binned = True
    elif str(bin).lower() in ("off", "false", "no"):
        binned = False
    else:
        raise ParameterError(f"bin={bin!r}: expected auto, on or off")
    settings = DescriptorSettings.for_model(
        task, spec, facet=facet, bin=binned,
        layer=None if choice(layer) is None else int_setting("layer", layer, 0, spec.depth - 1),
        stride=None if choice(stride) is None else int_setting("stride", stride, 1),
        load_size=None if choice(load_size) is None else int_setting("load_size", load_size, MIN_LOAD_SIZE,
                                                                     MAX_LOAD_SIZE))
    return {k: v for k, v in settings.kwargs().items() if k != "hierarchy"}


# -- upload components ------------------------------------------------------------------------------
def image_input(**kwargs: Any) -> gr.Image:
    """A gr.Image upload whose value reaches the handler as the file's path, unopened.

    gr.Image opens the file with PIL before the handler runs, so a non-image or corrupt upload
    would fail inside Gradio with a long message; here vitdense.load_image reads it and reports
    the problem in one line. (The instance's preprocess is replaced: a gr.Image subclass would make
    Gradio write a .pyi stub next to this module.)
    """
    return upload_path(gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], **kwargs))


def set_input(label: str | None = None, **kwargs: Any) -> gr.Gallery:
    """A gallery upload of a set of images."""
    return gr.Gallery(label=label or f"Image set ({MIN_SET_IMAGES}-{MAX_SET_IMAGES} images)",
                      type="filepath", interactive=True, file_types=["image"], columns=6, height=220,
                      **kwargs)


# -- examples -------------------------------------------------------------------------------------
def assets(pattern: str) -> list[str]:
    return [str(p) for p in sorted(ASSETS.glob(pattern))]


#: the example pairs, in the page's order, and what each shows (the first is the landing result)
PAIRS = {"cat": "the cat and a **mirrored** crop of it (B is flipped: its left and right swap)",
         "animals": "a horse and a zebra: **different animals** in the same pose",
         "astronaut": "the astronaut and a **mirrored** crop",
         "coffee": "the cup and a **mirrored** copy pasted on gravel"}


def example_pairs() -> list[list[str]]:
    """[A, B] paths of the example pairs: those of :data:`PAIRS` first, in its order."""
    found = {Path(a).name[:-len("_a.jpg")]: [a, a[:-len("_a.jpg")] + "_b.jpg"] for a in assets("pairs/*_a.jpg")}
    order = [n for n in PAIRS if n in found] + sorted(n for n in found if n not in PAIRS)
    return [found[n] for n in order if Path(found[n][1]).is_file()]


def pair_caption(pairs: list[list[str]]) -> str:
    """What each example row shows, in order (mirrored pairs say so: left/right swaps are expected)."""
    rows = [PAIRS.get(Path(a).name[:-len("_a.jpg")], Path(a).stem[:-2]) for a, _ in pairs]
    return "Example pairs, top to bottom: " + "; ".join(f"{i + 1}. {r}" for i, r in enumerate(rows)) + "."


def example_sets() -> dict[str, list[str]]:
    return {name: assets(f"{name}/*.jpg") for name in ("cats", "cups") if assets(f"{name}/*.jpg")}


def set_examples(component: Any) -> None:
    """The example sets, loadable into ``component`` with one click."""
    sets = example_sets()
    if sets:
        gr.Examples([[v] for v in sets.values()], [component], label="Example sets",
                    example_labels=[f"{name} ({len(paths)} photos)" for name, paths in sets.items()])


def pair_inputs(elem_prefix: str) -> tuple[gr.Image, gr.Image]:
    """Image A and image B side by side (element ids ``<prefix>-a-input`` / ``-b-input``), with
    the example pairs under them."""
    with gr.Row():
        a_in = image_input(label="Image A", height=260, elem_id=f"{elem_prefix}-a-input")
        b_in = image_input(label="Image B", height=260, elem_id=f"{elem_prefix}-b-input")
    pair_examples(a_in, b_in)
    return a_in, b_in


def pair_examples(a: Any, b: Any) -> None:
    pairs = example_pairs()
    if pairs:
        gr.Markdown(pair_caption(pairs), elem_classes=["vd-examples-caption"])
        gr.Examples(pairs, [a, b], label="Example pairs")

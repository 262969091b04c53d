"""Part co-segmentation tab: common parts in consistent colours, re-clustering from the session's
descriptors, and an interactive view of one image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import gradio as gr

from ... import draw
from ...apps import get_app
from ...errors import ParameterError
from ...export import to_jsonable
from ...models import BUNDLED_MODEL
from ...part_cosegmentation import part_cosegment_descriptors
from ...registry import Inputs
from ..controls import Page, knob_component, knob_value
from ..errors import ui_errors
from ..inputs import AUTO, MAX_SIDE, InputImage, descriptor_settings, numbered_stems, prepare_set, set_examples, set_input
from ..pool import extract_set
from ... import validate
from ...sessions import compact_descriptors, expand_descriptors
from .. import guard
from ..guard import Done
from ..sessions import keep, load, session_state, updated
from ..zips import write_zip

ID, TITLE, APP, ORDER = "parts", "Part co-segmentation", "parts", 30
KNOBS = ("num_parts", "thresh", "elbow", "votes_percentage", "crf")


@dataclass
class PartsSession:
    """One visitor's set, its descriptors and saliency (re-clustering needs them) and latest parts."""

    images: list[InputImage]
    result: Any                     # PartsResult
    params: dict
    descs: list = field(default_factory=list)
    saliency: list = field(default_factory=list)


def legend_html(k: int, fractions: Sequence[float]) -> str:
    cols = draw.part_colors(max(k, 1))
    items = []
    for p in range(k):
        r, g, b = (int(v) for v in cols[p])
        frac = f" {100 * float(fractions[p]):.0f}%" if p < len(fractions) else ""
        items.append(f"<span style='display:inline-block;margin-right:12px'>"
                     f"<span style='display:inline-block;width:14px;height:14px;background:rgb({r},{g},{b});"
                     f"border:1px solid #444;vertical-align:middle'></span> part {p + 1}{frac}</span>")
    return "".join(items)


def _figure(s: PartsSession, index: int) -> Any:
    im = s.images[index]
    return draw.parts_figure(im.array, s.result.part_maps[index], num_parts=int(s.result.num_parts),
                             title=im.name)


def _outputs(s: PartsSession, index: int = 0) -> tuple:
    """(gallery, figure, image selector, legend, summary JSON, zip, session)."""
    r = s.result
    k = int(r.num_parts)
    names = [im.name for im in s.images]
    stems = numbered_stems(s.images)
    entries = get_app(APP).export(r, Inputs([im.array for im in s.images], names), stems)
    entries["params.json"] = s.params
    overlays = [(entries[f"overlays/{st}.png"], n) for st, n in zip(stems, names)]
    index = min(max(int(index), 0), len(names) - 1)
    md = (f"<b>{k} parts</b> over {len(s.images)} images (share of the foreground):<br>"
          + legend_html(k, r.part_fractions))
    if r.reason:
        md = f"<b>No parts:</b> {r.reason}."
    # allow_custom_value: Gradio rebuilds an updated dropdown per session, with its own choice check;
    # this way the value reaches part_view as sent, and the range check (one sentence) is ours
    selector = gr.Dropdown(choices=[(n, i) for i, n in enumerate(names)], value=index, allow_custom_value=True)
    return (overlays, _figure(s, index), selector, md, to_jsonable(entries["result.json"]),
            write_zip("part_cosegmentation", entries), keep(s, ID), Done(f"{k} parts in {len(s.images)} images."))


def _knobs(model: str, values: Sequence[Any]) -> dict:
    return {name: knob_value(APP, name, v, model) for name, v in zip(KNOBS, values)}


@ui_errors
def run_part_cosegmentation(images: Any, num_parts: float | None = None, model: str = BUNDLED_MODEL,
                            layer: Any = AUTO, facet: Any = AUTO, stride: Any = AUTO,
                            load_size: float | None = None, bin: Any = AUTO, thresh: float | None = None,
                            elbow: float | None = None, votes_percentage: float | None = None,
                            crf: bool | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
    """A set -> common parts in consistent colours.

    Returns (part overlays gallery, plotly figure of one image, image selector, legend markdown,
    summary JSON, zip, session).
    """
    ims = prepare_set(images)
    settings = descriptor_settings(model, "parts", layer, facet, stride, load_size, bin)
    knobs = _knobs(model, (num_parts, thresh, elbow, votes_percentage, crf))
    descs, sal = extract_set(model, ims, settings, progress)
    result = part_cosegment_descriptors(descs, sal, [im.image for im in ims], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    params = dict(task="part_cosegmentation", model=model, **settings, **knobs, max_side=MAX_SIDE)
    progress(0.9, desc="Drawing")
    # the session keeps the descriptors in fp16 for re-clustering
    return _outputs(PartsSession(ims, result, params, [compact_descriptors(d) for d in descs], sal))


@ui_errors
def recluster_parts(key: Any, num_parts: float | None = None,
                    thresh: float | None = None, elbow: float | None = None,
                    votes_percentage: float | None = None, crf: bool | None = None,
                    progress: gr.Progress = gr.Progress()) -> tuple:
    """Re-cluster the session's cached descriptors (no network pass) with new part settings."""
    session = load(key, "press Find parts")
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first, then change the number of parts")
    knobs = _knobs(session.params["model"], (num_parts, thresh, elbow, votes_percentage, crf))
    guard.admit([], None, 1, 1, 0, progress)   # no network pass, but CPU work: one job at a time
    progress(0.1, desc="Re-clustering the cached descriptors")
    result = part_cosegment_descriptors([expand_descriptors(d) for d in session.descs], session.saliency,
                                        [im.image for im in session.images], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    return _outputs(updated(session, result=result, params=dict(session.params, **knobs)))


@ui_errors
def part_view(key: Any, index: Any) -> Any:
    """The interactive (hover shows the part) figure of image ``index`` of the last result."""
    session = load(key, "press Find parts")
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first")
    n = len(session.images)
    index = validate.number("image index", index, 0, n - 1, integer=True, default=0)
    return _figure(session, index)


def build(page: Page) -> None:
    state = session_state()
    images = set_input(elem_id="parts-input")
    set_examples(images)
    with gr.Row():
        num_parts = knob_component(APP, "num_parts", page.default_model, label="Number of parts")
        thresh = knob_component(APP, "thresh", page.default_model, label="Saliency threshold")
        elbow = knob_component(APP, "elbow", page.default_model, label="Elbow")
        votes = knob_component(APP, "votes_percentage", page.default_model, label="Votes %")
        crf = knob_component(APP, "crf", page.default_model, label="CRF smoothing")
    with gr.Row():
        run_btn = gr.Button("Find parts", variant="primary", elem_id="parts-run")
        recluster_btn = gr.Button("Re-cluster", elem_id="parts-recluster")
    md = gr.HTML(elem_id="parts-legend")
    gallery = gr.Gallery(label="Parts (same colour = same part in every image)", columns=5, format="png")
    with gr.Row():
        index = gr.Dropdown(choices=[], label="Inspect image", scale=1,
                            info="Hover the picture to see the part under the cursor.")
        plot = gr.Plot(label="Interactive view", scale=3)
    zip_out = gr.File(height=90, label="Download (label maps PNG: 0 = background, 1..K = parts)")
    with gr.Accordion("Summary (JSON)", open=False):
        summary = gr.JSON()
    outputs = [gallery, plot, index, md, summary, zip_out, state]
    knobs = [num_parts, thresh, elbow, votes, crf]
    page.watch(run_btn.click(run_part_cosegmentation,
                  [images, num_parts, *page.descriptor_inputs, thresh, elbow, votes, crf],
                  outputs, api_name="part_cosegmentation", concurrency_limit=None))
    page.watch(recluster_btn.click(recluster_parts, [state, *knobs], outputs, api_name="recluster_parts",
                        concurrency_limit=None))
    page.watch(index.input(part_view, [state, index], plot, api_name="part_view", concurrency_limit=None))

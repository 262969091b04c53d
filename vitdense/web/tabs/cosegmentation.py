"""Co-segmentation tab: a mask per image of a set, as overlays and cut-outs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from vitdense import draw
from vitdense.apps import get_app
from vitdense.apps.cosegmentation import cosegment_descriptors
from vitdense.apps.registry import Inputs
from vitdense.errors import ParameterError
from vitdense.export import to_jsonable
from vitdense.features.models import BUNDLED_MODEL
from vitdense.web.controls import Page, endpoint, knob_components, knob_params, run_inputs
from vitdense.web.errors import ui_errors
from vitdense.web.inputs import AUTO, MAX_SIDE, InputImage, numbered_stems, set_examples, set_input
from vitdense.web.pool import extract_app_set
from vitdense.web.state import keep, load, session_state
from vitdense.web.status import Done
from vitdense.web.zips import write_zip

APP = get_app("cosegmentation")
ID, TITLE, ORDER = APP.id, APP.title, 20
RUN_API, MAPS_API = APP.api_names


@dataclass
class CosegSession:
    """One visitor's set and its latest co-segmentation (the descriptors are not kept: nothing
    re-clusters them)."""

    images: list[InputImage]
    result: Any                     # CosegResult
    params: dict


def vote_rule(model: str, knobs: dict, needed: int, n: int) -> str:
    """The foreground vote in words, with the Votes % the visitor set: an image votes for a cluster
    whose mean saliency there exceeds the threshold; counted over all images (the paper's rule) or
    over the images where the cluster appears (the default for DINOv2)."""
    pct, thresh = knobs["votes_percentage"], knobs["thresh"]
    vote = f"an image votes when the cluster's mean saliency there exceeds {thresh:g}"
    if APP.default("vote_mode", model) == "present":
        return f"a cluster is foreground when {pct:g}% of the images where it appears vote for it; {vote}"
    return f"a cluster is foreground when {pct:g}% of the {n} images vote for it, here {needed}; {vote}"


@ui_errors(heavy=True)
@knob_params(APP)
def run_cosegmentation(images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
                       stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO,
                       knobs: dict | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
    """A set -> each image's foreground mask as overlay and cut-out (``knobs``: the entry's web knobs).

    Returns (overlays gallery, cut-outs gallery, summary markdown, summary JSON, zip, session).
    """
    ims, settings, knobs, descs, sal = extract_app_set(APP, images, model, (layer, facet, stride, load_size, bin),
                                                       knobs, progress)
    result = cosegment_descriptors(descs, sal, [im.image for im in ims], **knobs)
    if result.reason:
        gr.Warning(f"Empty masks: {result.reason}.")
    params = dict(task="cosegmentation", model=model, **settings, **knobs, max_side=MAX_SIDE)
    progress(0.9, desc="Drawing")
    stems = numbered_stems(ims)
    entries = APP.export(result, Inputs([im.array for im in ims], [im.name for im in ims]), stems)
    entries["params.json"] = params
    names = [im.name for im in ims]
    overlays = [(entries[f"overlays/{s}.png"], n) for s, n in zip(stems, names)]
    cutouts = [(entries[f"cutouts/{s}.png"], n) for s, n in zip(stems, names)]
    summary = to_jsonable(entries["result.json"])
    md = (f"**{result.num_clusters} clusters**, salient (foreground): "
          f"{', '.join(str(c) for c in result.salient_clusters) or 'none'} "
          f"({vote_rule(model, knobs, result.votes_needed, len(ims))}). Foreground per image: "
          + ", ".join(f"{row['file']} {100 * row['foreground_fraction']:.0f}%" for row in summary["images"]))
    key = keep(CosegSession(ims, result, params), ID)
    return (overlays, cutouts, md, summary, write_zip("cosegmentation", entries), key,
            Done(f"Co-segmented {len(ims)} images."))


@ui_errors
def coseg_maps(key: Any) -> tuple:
    """The intermediate maps of the last co-segmentation: clusters (salient ones listed) and saliency."""
    session = load(key, "press Co-segment")
    if session is None or not hasattr(session.result, "salient_clusters"):
        raise ParameterError("run co-segmentation first")
    r = session.result
    salient = ", ".join(str(c) for c in r.salient_clusters) or "none"
    clusters = [(draw.overlay_labels(im.array, lab, num_labels=r.num_clusters, background="keep", geometry=g),
                 f"{im.name}: clusters (salient: {salient})")
                for im, lab, g in zip(session.images, r.labels, r.geometries)]
    sal = [(draw.saliency_overlay(im.array, m, geometry=g), f"{im.name}: saliency")
           for im, m, g in zip(session.images, r.saliency, r.geometries)]
    return clusters, sal


def build(page: Page) -> None:
    state = session_state()
    images = set_input(elem_id="coseg-input")
    set_examples(images)
    knobs = knob_components(APP, page.default_model)
    run_btn = gr.Button("Co-segment", variant="primary")
    md = gr.Markdown()
    with gr.Row():
        overlays = gr.Gallery(label="Masks", columns=4, format="png")
        cutouts = gr.Gallery(label="Cut-outs", columns=4, format="png")
    zip_out = gr.File(height=90, label="Download (masks PNG, overlays, cut-outs, result, parameters)")
    with gr.Accordion("Intermediate maps: clusters and saliency", open=False):
        maps_btn = gr.Button("Show clustering and saliency maps")
        with gr.Row():
            clusters = gr.Gallery(label="Clusters", columns=4, format="png")
            saliency = gr.Gallery(label="Saliency", columns=4, format="png")
    with gr.Accordion("Summary (JSON)", open=False):
        summary = gr.JSON()
    endpoint(page, run_btn.click, run_cosegmentation, run_inputs(APP, [images], page, knobs),
             [overlays, cutouts, md, summary, zip_out, state], api_name=RUN_API)
    endpoint(page, maps_btn.click, coseg_maps, state, [clusters, saliency], api_name=MAPS_API)

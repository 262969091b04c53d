"""Part co-segmentation tab: common parts in consistent colours, re-clustering from the session's
descriptors, and an interactive view of one image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import gradio as gr
import numpy as np

from ... import draw
from ...apps import get_app
from ...errors import ParameterError
from ...export import to_jsonable
from ...models import BUNDLED_MODEL
from ...part_cosegmentation import part_cosegment_descriptors
from ...registry import Inputs
from ..controls import Page, knob_components, knob_value
from ..errors import ui_errors
from ..inputs import AUTO, MAX_SIDE, InputImage, descriptor_settings, numbered_stems, prepare_set, set_examples, set_input
from ..pool import extract_set
from ..sessions import session_state, updated
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
    shown: Optional[tuple[int, ...]] = None   # part ids drawn (None = all)
    highlight: int = 0                        # the part clicked (0 = none)
    opacity: float = 0.55
    index: int = 0                            # the image shown for clicking


def _view(s: PartsSession, i: int) -> Any:
    return draw.highlight_parts(s.images[i].array, s.result.part_maps[i], int(s.result.num_parts), s.shown,
                                s.highlight, s.opacity)


def shares_html(s: PartsSession) -> str:
    """Each part's share of each image (percent of its pixels); the highlighted part in bold."""
    k = int(s.result.num_parts)
    cols = draw.part_colors(max(k, 1))
    head = "".join(f"<th style='color:rgb({int(c[0])},{int(c[1])},{int(c[2])})'>part {p + 1}</th>"
                   for p, c in enumerate(cols[:k]))
    rows = []
    for im, pm in zip(s.images, s.result.part_maps):
        share = np.bincount(np.asarray(pm).ravel(), minlength=k + 1)[1:] / max(np.asarray(pm).size, 1)
        cells = "".join((f"<td><b>{100 * v:.1f}%</b></td>" if p + 1 == s.highlight else f"<td>{100 * v:.1f}%</td>")
                        for p, v in enumerate(share))
        rows.append(f"<tr><td>{im.name}</td>{cells}</tr>")
    note = (f"<p id='parts-highlight'>Part {s.highlight} highlighted in every image (click the background "
            "to show all parts).</p>" if s.highlight else
            "<p>Click a part in the picture below to highlight it in every image.</p>")
    return f"{note}<table class='parts-shares'><tr><th>image</th>{head}</tr>{''.join(rows)}</table>"


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
    default_view = s.shown is None and not s.highlight and s.opacity == 0.55
    overlays = [(entries[f"overlays/{st}.png"] if default_view else _view(s, i), n)
                for i, (st, n) in enumerate(zip(stems, names))]
    index = min(max(int(index), 0), len(names) - 1)
    md = (f"<b>{k} parts</b> over {len(s.images)} images (share of the foreground):<br>"
          + legend_html(k, r.part_fractions) + shares_html(s))
    if r.reason:
        md = f"<b>No parts:</b> {r.reason}."
    selector = gr.Dropdown(choices=[(n, i) for i, n in enumerate(names)], value=index)
    return (overlays, _figure(s, index), selector, md, to_jsonable(entries["result.json"]),
            write_zip("part_cosegmentation", entries), s)


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
    return _outputs(PartsSession(ims, result, params, descs, sal))


@ui_errors
def recluster_parts(session: Optional[PartsSession], num_parts: float | None = None,
                    thresh: float | None = None, elbow: float | None = None,
                    votes_percentage: float | None = None, crf: bool | None = None,
                    progress: gr.Progress = gr.Progress()) -> tuple:
    """Re-cluster the session's cached descriptors (no network pass) with new part settings."""
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first, then change the number of parts")
    progress(0.1, desc="Re-clustering the cached descriptors")
    knobs = _knobs(session.params["model"], (num_parts, thresh, elbow, votes_percentage, crf))
    result = part_cosegment_descriptors(session.descs, session.saliency,
                                        [im.image for im in session.images], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    return _outputs(updated(session, result=result, params=dict(session.params, **knobs), shown=None, highlight=0))


@ui_errors
def part_view(session: Optional[PartsSession], index: Any) -> Any:
    """The interactive (hover shows the part) figure of image ``index`` of the last result."""
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first")
    index = 0 if index is None else int(index)
    if not 0 <= index < len(session.images):
        raise ParameterError(f"image index {index} is out of range: the set has {len(session.images)} images")
    return _figure(session, index)


def _need(session: Optional[PartsSession]) -> PartsSession:
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first")
    return session


def _view_outputs(s: PartsSession) -> tuple:
    """(gallery, the clickable image, legend and shares, session)."""
    k = int(s.result.num_parts)
    gallery = [(_view(s, i), im.name) for i, im in enumerate(s.images)]
    md = (f"<b>{k} parts</b> over {len(s.images)} images (share of the foreground):<br>"
          + legend_html(k, s.result.part_fractions) + shares_html(s))
    return gallery, _view(s, s.index), md, s


@ui_errors
def part_display(session: Optional[PartsSession], shown: Any = None, opacity: float | None = None) -> tuple:
    """Show only the parts ``shown`` (ids 1..K), with part colours at ``opacity`` (no re-clustering)."""
    s = _need(session)
    k = int(s.result.num_parts)
    ids = tuple(sorted({int(p) for p in shown})) if shown is not None else None
    if ids is not None and any(not 1 <= p <= k for p in ids):
        raise ParameterError(f"parts {list(ids)}: this result has parts 1..{k}")
    opacity = s.opacity if opacity is None else float(opacity)
    if not 0.0 <= opacity <= 1.0:
        raise ParameterError(f"opacity={opacity}: expected a value in [0, 1]")
    return _view_outputs(updated(s, shown=ids, opacity=opacity))


@ui_errors
def part_highlight(session: Optional[PartsSession], index: Any, x: float, y: float) -> tuple:
    """Pixel (x, y) of image ``index`` -> highlight the part there in every image (the background
    clears the highlight)."""
    s = _need(session)
    index = 0 if index is None else int(index)
    if not 0 <= index < len(s.images):
        raise ParameterError(f"image index {index} is out of range: the set has {len(s.images)} images")
    pm = np.asarray(s.result.part_maps[index])
    h, w = pm.shape
    if x is None or y is None or not (0 <= float(x) < w and 0 <= float(y) < h):
        raise ParameterError(f"the point (x={x}, y={y}) is outside the image ({w} x {h} pixels)")
    return _view_outputs(updated(s, index=index, highlight=int(pm[int(y), int(x)])))


def click_part(session: Optional[PartsSession], evt: gr.SelectData) -> tuple:
    return part_highlight(session, None if session is None else session.index, evt.index[0], evt.index[1])


@ui_errors
def part_pick_image(session: Optional[PartsSession], index: Any) -> tuple:
    """The image to click on (and the hover view of the same image)."""
    s = _need(session)
    index = 0 if index is None else int(index)
    if not 0 <= index < len(s.images):
        raise ParameterError(f"image index {index} is out of range: the set has {len(s.images)} images")
    s = updated(s, index=index)
    return _view(s, index), s


def part_toggles(session: Optional[PartsSession]) -> Any:
    """The part toggles of the current result (all on)."""
    if session is None or not hasattr(session.result, "part_maps"):
        return gr.CheckboxGroup(choices=[], value=[])
    k = int(session.result.num_parts)
    return gr.CheckboxGroup(choices=[(f"part {p}", p) for p in range(1, k + 1)], value=list(range(1, k + 1)))


def build(page: Page) -> None:
    state = session_state()
    images = set_input(elem_id="parts-input")
    set_examples(images)
    knobs = knob_components(APP, KNOBS, page.default_model)
    num_parts, thresh, elbow, votes, crf = knobs
    with gr.Row():
        run_btn = gr.Button("Find parts", variant="primary", elem_id="parts-run")
        recluster_btn = gr.Button("Re-cluster", elem_id="parts-recluster")
    md = gr.HTML(elem_id="parts-legend")
    gallery = gr.Gallery(label="Parts (same colour = same part in every image)", columns=5, format="png",
                         elem_id="parts-gallery")
    with gr.Row():
        toggles = gr.CheckboxGroup(choices=[], value=[], label="Parts shown", elem_id="parts-toggles", scale=3)
        opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Opacity", elem_id="parts-opacity", scale=1)
    with gr.Row():
        index = gr.Dropdown(choices=[], label="Inspect image", scale=1,
                            info="Click a part in the picture: it is highlighted in every image. "
                                 "Hover the plot to see the part under the cursor.")
        click_img = gr.Image(label="Click a part", format="png", interactive=False, scale=2,
                             elem_id="parts-click")
        plot = gr.Plot(label="Interactive view", scale=2)
    zip_out = gr.File(height=90, label="Download (label maps PNG: 0 = background, 1..K = parts)")
    with gr.Accordion("Summary (JSON)", open=False):
        summary = gr.JSON()
    outputs = [gallery, plot, index, md, summary, zip_out, state]
    view_outputs = [gallery, click_img, md, state]
    run_btn.click(run_part_cosegmentation,
                  [images, num_parts, *page.descriptor_inputs, thresh, elbow, votes, crf],
                  outputs, api_name="part_cosegmentation", concurrency_id="gpu") \
        .then(part_toggles, state, toggles, api_visibility="private") \
        .then(part_pick_image, [state, index], [click_img, state], api_visibility="private")
    recluster_btn.click(recluster_parts, [state, *knobs], outputs, api_name="recluster_parts",
                        concurrency_id="gpu") \
        .then(part_toggles, state, toggles, api_visibility="private") \
        .then(part_pick_image, [state, index], [click_img, state], api_visibility="private")
    index.input(part_view, [state, index], plot, api_name="part_view", concurrency_limit=None) \
        .then(part_pick_image, [state, index], [click_img, state], api_visibility="private")
    click_img.select(click_part, state, view_outputs, api_visibility="private", concurrency_limit=None,
                     show_progress="minimal")
    toggles.input(part_display, [state, toggles, opacity], view_outputs, api_name="part_display",
                  concurrency_limit=None)
    opacity.release(part_display, [state, toggles, opacity], view_outputs, api_visibility="private",
                    concurrency_limit=None)

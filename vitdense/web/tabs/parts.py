"""Part co-segmentation tab: common parts in consistent colours, re-clustering from the session's
descriptors, and an interactive view of one image."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import gradio as gr
import numpy as np

from vitdense import draw
from vitdense.apps import get_app
from vitdense.apps.parts import part_cosegment_descriptors
from vitdense.apps.registry import Inputs
from vitdense.errors import ParameterError, VitdenseError
from vitdense.export import to_jsonable
from vitdense.features.models import BUNDLED_MODEL
from vitdense.web import gate
from vitdense.web.controls import Page, download_output, endpoint, knob_components, knob_params, knob_values, \
    run_inputs
from vitdense.web.errors import ui_errors
from vitdense.web.hover import clear_marks, highlight_payload, marks_block, page_draws, page_pictures, parts_block, \
    parts_payload
from vitdense.web.inputs import AUTO, MAX_SIDE, InputImage, numbered_stems, set_examples, set_input
from vitdense.web.pool import extract_app_set
from vitdense.web.serving import validate
from vitdense.web.serving.results import compact_descriptors, expand_descriptors
from vitdense.web.serving.workbudget import Job
from vitdense.web.state import keep, load, save, session_state, updated
from vitdense.web.status import Done
from vitdense.web.zips import download_zip, write_zip

APP = get_app("parts")
ID, TITLE, ORDER = APP.id, APP.title, 30
RUN_API, RECLUSTER_API, VIEW_API, DISPLAY_API, DOWNLOAD_API = APP.api_names
ZIP_STEM = "part_cosegmentation"     # the download's file name, as before


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
    baked: int = 0                            # the highlight drawn into the pictures last sent (0 = none)


def _view(s: PartsSession, i: int) -> Any:
    return draw.highlight_parts(s.images[i].array, s.result.part_maps[i], int(s.result.num_parts), s.shown,
                                s.highlight, s.opacity)


def _shown_map(s: PartsSession, i: int) -> np.ndarray:
    """Image ``i``'s part map as displayed: hidden parts and, with a highlight, the others are 0."""
    pm = np.asarray(s.result.part_maps[i]).copy()
    if s.shown is not None:
        pm[~np.isin(pm, np.asarray(s.shown, dtype=pm.dtype))] = 0
    if s.highlight:
        pm[pm != s.highlight] = 0
    return pm


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
    note = (f"<p id='parts-highlight'>Part {s.highlight} highlighted in every image (\"Show all parts\" "
            "or a click on the background shows them all).</p>" if s.highlight else
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
    """The hover view of image ``index``, as displayed (toggles, highlight and opacity)."""
    im = s.images[index]
    return draw.parts_figure(im.array, _shown_map(s, index), alpha=s.opacity, num_parts=int(s.result.num_parts),
                             title=im.name)


def _entries(s: PartsSession) -> dict:
    """The result's export (the command line's layout) and its parameters."""
    entries = APP.export(s.result, Inputs([im.array for im in s.images], [im.name for im in s.images]),
                         numbered_stems(s.images))
    entries["params.json"] = s.params
    return entries


def _outputs(s: PartsSession, index: int = 0, with_zip: bool = False) -> tuple:
    """(gallery, figure, image selector, legend, summary JSON, zip, session); the zip (a run's) is
    written only ``with_zip``: after a re-clustering it is None, "Prepare download" builds it."""
    r = s.result
    k = int(r.num_parts)
    names = [im.name for im in s.images]
    stems = numbered_stems(s.images)
    entries = _entries(s)
    default_view = s.shown is None and not s.highlight and s.opacity == 0.55
    overlays = [(entries[f"overlays/{st}.png"] if default_view else _view(s, i), n)
                for i, (st, n) in enumerate(zip(stems, names))]
    index = min(max(int(index), 0), len(names) - 1)
    md = (f"<b>{k} parts</b> over {len(s.images)} images (share of the foreground):<br>"
          + legend_html(k, r.part_fractions) + shares_html(s))
    if r.reason:
        md = f"<b>No parts:</b> {r.reason}."
    # allow_custom_value: Gradio rebuilds an updated dropdown per session, with its own choice check;
    # this way the value reaches part_view as sent, and the range check (one sentence) is ours
    selector = gr.Dropdown(choices=[(n, i) for i, n in enumerate(names)], value=index, allow_custom_value=True)
    return (overlays, _figure(s, index), selector, md, to_jsonable(entries["result.json"]),
            write_zip(ZIP_STEM, entries) if with_zip else None, keep(s, ID),
            Done(f"{k} parts in {len(s.images)} images."))


@ui_errors(heavy=True)
@knob_params(APP)
def run_part_cosegmentation(images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
                            stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO,
                            knobs: dict | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
    """A set -> common parts in consistent colours.

    Returns (part overlays gallery, plotly figure of one image, image selector, legend markdown,
    summary JSON, zip, session).
    """
    ims, settings, knobs, descs, sal = extract_app_set(APP, images, model, (layer, facet, stride, load_size, bin),
                                                       knobs, progress)
    result = part_cosegment_descriptors(descs, sal, [im.image for im in ims], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    params = dict(task="part_cosegmentation", model=model, **settings, **knobs, max_side=MAX_SIDE)
    progress(0.9, desc="Drawing")
    # the session keeps the descriptors in fp16 for re-clustering
    return _outputs(PartsSession(ims, result, params, [compact_descriptors(d) for d in descs], sal), with_zip=True)


@ui_errors
@knob_params(APP)
def recluster_parts(key: Any, knobs: dict | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
    """Re-cluster the session's cached descriptors (no network pass) with new part settings."""
    session = load(key, "press Find parts")
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first, then change the number of parts")
    knobs = knob_values(APP, knobs, session.params["model"])
    gate.admit(Job(app=ID), progress)   # no network pass, but CPU work: one job at a time
    progress(0.1, desc="Re-clustering the cached descriptors")
    result = part_cosegment_descriptors([expand_descriptors(d) for d in session.descs], session.saliency,
                                        [im.image for im in session.images], **knobs)
    if result.reason:
        gr.Warning(f"No parts: {result.reason}.")
    return _outputs(updated(session, result=result, params=dict(session.params, **knobs), shown=None, highlight=0))


@ui_errors
def part_view(key: Any, index: Any) -> Any:
    """The interactive (hover shows the part) figure of image ``index`` of the last result."""
    session = _need(key)
    index = _image_index(session, index)
    return _figure(session, index)


@ui_errors
def parts_download(key: Any) -> tuple:
    """The zip of the current result (after re-clustering too): label maps, colours, overlays, result,
    parameters, built now."""
    s = _need(key)
    return download_zip(ZIP_STEM, _entries(s)), Done(f"The download is ready ({int(s.result.num_parts)} parts).")


def _need(key: Any) -> PartsSession:
    session = load(key, "press Find parts")
    if session is None or not hasattr(session.result, "part_maps"):
        raise ParameterError("run part co-segmentation first")
    return session


def _image_index(s: PartsSession, index: Any) -> int:
    return validate.number("image index", index, 0, len(s.images) - 1, integer=True, default=0)


def _view_outputs(s: PartsSession, key: str, done: str, drawn: bool = False, figure: bool = True) -> tuple:
    """(gallery, the clickable image, the hover view, legend and shares, session key, status);
    ``s`` is stored under ``key``. ``drawn`` (the page draws the highlight, :func:`click_part`):
    the pictures without it, sent only if the last ones had one drawn in. ``figure=False``: the
    hover view is left to :func:`part_figure` (None here)."""
    k = int(s.result.num_parts)
    shown = updated(s, highlight=0) if drawn else s
    gallery, picture = page_pictures(bool(s.baked) or not drawn, lambda: (
        [(_view(shown, i), im.name) for i, im in enumerate(s.images)], _view(shown, s.index)), 2)
    s = updated(s, baked=0 if drawn else s.highlight)
    save(key, s)
    md = (f"<b>{k} parts</b> over {len(s.images)} images (share of the foreground):<br>"
          + legend_html(k, s.result.part_fractions) + shares_html(s))
    return gallery, picture, _figure(s, s.index) if figure else None, md, key, Done(done)


@ui_errors
def part_display(key: Any, shown: Any = None, opacity: float | None = None) -> tuple:
    """Show only the parts ``shown`` (ids 1..K), with part colours at ``opacity`` (no re-clustering)."""
    s = _need(key)
    k = int(s.result.num_parts)
    if shown is not None and not isinstance(shown, (list, tuple)):
        raise ParameterError(f"parts={validate.shown(shown)!r}: expected a list of part ids 1..{k}")
    ids = tuple(sorted({validate.number("part", p, integer=True) for p in shown})) if shown is not None else None
    if ids is not None and any(not 1 <= p <= k for p in ids):
        raise ParameterError(f"parts {list(ids)}: this result has parts 1..{k}")
    opacity = s.opacity if opacity is None else validate.number("opacity", opacity, 0.0, 1.0)
    # new toggles show the parts ticked (a highlight would hide the change)
    highlight = s.highlight if ids == s.shown else 0
    shown_text = "all parts" if ids is None or len(ids) == k else \
        ("no part" if not ids else "part" + ("s " if len(ids) > 1 else " ") + ", ".join(map(str, ids)))
    return _view_outputs(updated(s, shown=ids, opacity=opacity, highlight=highlight), key,
                         f"Showing {shown_text} at opacity {opacity:.2f}.")


@ui_errors
def show_all_parts(key: Any) -> tuple:
    """Every part shown, no highlight (the toggles all ticked again)."""
    s = _need(key)
    k = int(s.result.num_parts)
    return (*_view_outputs(updated(s, shown=None, highlight=0), key, "Showing all parts.")[:-1],
            gr.CheckboxGroup(value=list(range(1, k + 1))), Done("Showing all parts."))


@ui_errors
def part_highlight(key: Any, index: Any, x: float, y: float) -> tuple:
    """Pixel (x, y) of image ``index`` -> highlight the part there in every image (the background
    clears the highlight)."""
    s, done = _highlighted(key, index, x, y)
    return _view_outputs(s, key, done)


def _highlighted(key: Any, index: Any, x: Any, y: Any) -> tuple[PartsSession, str]:
    """The visitor's result with the part at (x, y) of image ``index`` highlighted (not yet
    stored), and its sentence."""
    s = _need(key)
    index = _image_index(s, index)
    pm = np.asarray(s.result.part_maps[index])
    h, w = pm.shape
    x, y = validate.number("x", x), validate.number("y", y)
    if not (0 <= x < w and 0 <= y < h):
        raise ParameterError(f"the point (x={validate.shown(x)}, y={validate.shown(y)}) is outside the "
                             f"image ({w} x {h} pixels)")
    part = int(pm[int(y), int(x)])
    done = (f"Part {part} highlighted in every image." if part else
            "Background clicked: all parts shown.")
    return updated(s, index=index, highlight=part), done


@ui_errors
def click_part(key: Any, drawn: Any, evt: gr.SelectData) -> tuple:
    """A click on the picture (gr.SelectData.index = [x, y] in its pixels): :func:`part_highlight`'s
    outputs and the highlight for the page to draw when ``drawn``
    (:func:`vitdense.web.hover.page_draws`; otherwise the server draws it, None)."""
    try:
        s = load(key, "press Find parts")
    except VitdenseError:
        s = None                     # _highlighted says why
    new, done = _highlighted(key, None if s is None else s.index, evt.index[0], evt.index[1])
    drawn = validate.flag("drawn", drawn)
    gallery, picture, _, md, key, status = _view_outputs(new, key, done, drawn, figure=False)
    return gallery, picture, gr.skip(), md, key, highlight_payload(new.highlight) if drawn else None, status


@ui_errors(quiet=True)
def part_figure(key: Any) -> Any:
    """The hover view as displayed now (after a click: it follows the highlight in an event of its
    own, so that the click's answer does not wait for the figure)."""
    s = _need(key)
    return _figure(s, s.index)


@ui_errors(quiet=True)
def send_parts(key: Any) -> Any:
    """The label maps for the page's instant highlight (private event, after a result or a pick)."""
    s = load(key, "press Find parts")
    if s is None or not hasattr(s.result, "part_maps"):
        return None
    return parts_payload(s.result.part_maps, s.index, run=time.monotonic_ns())


@ui_errors(quiet=True)      # an auxiliary step after a run: it leaves the status line as it is
def part_pick_image(key: Any, index: Any) -> tuple:
    """The image to click on (and the hover view of the same image)."""
    s = _need(key)
    index = _image_index(s, index)
    s = updated(s, index=index)
    save(key, s)
    return _view(updated(s, highlight=s.baked), index), key     # as the gallery shows it


def part_toggles(key: Any) -> Any:
    """The part toggles of the current result (all on)."""
    try:
        session = load(key, "press Find parts")
    except VitdenseError:
        session = None
    if session is None or not hasattr(session.result, "part_maps"):
        return gr.CheckboxGroup(choices=[], value=[])
    k = int(session.result.num_parts)
    return gr.CheckboxGroup(choices=[(f"part {p}", p) for p in range(1, k + 1)], value=list(range(1, k + 1)))


def build(page: Page) -> None:
    state = session_state()
    images = set_input(elem_id="parts-input")
    set_examples(images)
    knobs = knob_components(APP, page.default_model)
    with gr.Row():
        run_btn = gr.Button("Find parts", variant="primary", elem_id="parts-run")
        recluster_btn = gr.Button("Re-cluster", elem_id="parts-recluster")
    md = gr.HTML(elem_id="parts-legend")
    gallery = gr.Gallery(label="Parts (same colour = same part in every image)", columns=5, format="png",
                         elem_id="parts-gallery", object_fit="contain", height="auto")
    with gr.Row():
        toggles = gr.CheckboxGroup(choices=[], value=[], label="Parts shown", elem_id="parts-toggles", scale=3)
        opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Opacity", elem_id="parts-opacity", scale=1)
        show_all = gr.Button("Show all parts", elem_id="parts-show-all", scale=1)
    with gr.Row():
        index = gr.Dropdown(choices=[], label="Inspect image", scale=1,
                            info="Click a part in the picture: it is highlighted in every image. "
                                 "Hover the plot to see the part under the cursor.")
        click_img = gr.Image(label="Click a part", format="png", interactive=False, scale=2,
                             elem_id="parts-click")
        plot = gr.Plot(label="Interactive view (hover: the part under the cursor)", scale=2)
    pin = parts_block("parts-click", "parts-gallery")
    marks = marks_block("parts", "parts-click")
    zip_out, download_btn = download_output("Download (label maps PNG: 0 = background, 1..K = parts)")
    with gr.Accordion("Summary (JSON)", open=False):
        summary = gr.JSON()
    outputs = [gallery, plot, index, md, summary, zip_out, state]
    view_outputs = [gallery, click_img, plot, md, state]
    aux = dict(api_visibility="private", concurrency_limit=None)
    no_marks = clear_marks(marks)
    for ev in (endpoint(page, run_btn.click, run_part_cosegmentation, run_inputs(APP, [images], page, knobs),
                        outputs, api_name=RUN_API),
               endpoint(page, recluster_btn.click, recluster_parts, [state, *knobs], outputs, api_name=RECLUSTER_API)):
        ev.then(part_toggles, state, toggles, **aux).then(part_pick_image, [state, index], [click_img, state], **aux) \
            .then(send_parts, state, pin, **aux).then(**no_marks)
    endpoint(page, index.input, part_view, [state, index], plot, api_name=VIEW_API) \
        .then(part_pick_image, [state, index], [click_img, state], **aux).then(send_parts, state, pin, **aux)
    page.on_select(click_img, click_part, state, [*view_outputs, marks], drawn=page_draws("parts-click")) \
        .then(part_figure, state, plot, **aux, queue=False, show_progress="hidden")
    endpoint(page, toggles.input, part_display, [state, toggles, opacity], view_outputs, api_name=DISPLAY_API) \
        .then(**no_marks)
    endpoint(page, download_btn.click, parts_download, state, zip_out, api_name=DOWNLOAD_API)
    page.watch(opacity.release(part_display, [state, toggles, opacity], view_outputs, **aux)).then(**no_marks)
    page.watch(show_all.click(show_all_parts, state, [*view_outputs, toggles], **aux)).then(**no_marks)

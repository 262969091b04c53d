"""Keypoint transfer tab: extract a set once, pick the source image, click points on it; every
other image shows each point's match and the last point's heat map (no network pass per click)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from PIL import ImageOps

from vitdense import draw
from vitdense.apps import get_app
from vitdense.apps.registry import Inputs
from vitdense.apps.transfer import SetMatcher, TransferResult, transfer_points_descriptors
from vitdense.defaults import task_defaults
from vitdense.errors import ParameterError
from vitdense.export import to_jsonable
from vitdense.features.models import BUNDLED_MODEL
from vitdense.ops.mirror import choose_orientation
from vitdense.web.controls import Page, download_output, endpoint
from vitdense.web.errors import ui_errors
from vitdense.web.hover import clear_marks, hover_block, hover_payload, mark_heat, marks_block, marks_payload, \
    page_draws, page_pictures, picture_marks
from vitdense.web.inputs import AUTO, MAX_SIDE, InputImage, descriptor_settings, numbered_stems, prepare_set, \
    set_examples, set_input
from vitdense.web.pool import extract, extract_set
from vitdense.web.serving import validate
from vitdense.web.state import keep, load, save, session_state, updated
from vitdense.web.status import Done
from vitdense.web.zips import download_zip

APP = get_app("transfer")
ID, TITLE, ORDER = APP.id, APP.title, 15
RUN_API, POINT_API, CLEAR_API, DOWNLOAD_API = APP.api_names
MAX_POINTS = 20
SOURCE_PICTURE, TARGETS_GALLERY = "transfer-source", "transfer-targets"     # element ids


@dataclass
class TransferSession:
    """One visitor's set, its descriptors, the source's matchers and the clicked points."""

    images: list[InputImage]
    descs: list
    matcher: SetMatcher
    params: dict
    points: list[tuple[float, float]] = field(default_factory=list)   # (y, x) on the source
    marked: bool = False            # the pictures last sent have the points drawn in (by the server)


def _source_choices(s: TransferSession) -> Any:
    return gr.Dropdown(choices=[(im.name, i) for i, im in enumerate(s.images)], value=s.matcher.source_index,
                       allow_custom_value=True)   # the index is checked by us (one sentence)


def _entries(s: TransferSession, result: TransferResult, pictures: list) -> dict:
    """The set's export with its points (the command line's layout) and the parameters."""
    entries = APP.export(result, Inputs([im.array for im in s.images], [im.name for im in s.images]),
                         numbered_stems(s.images), pictures=pictures)
    entries["params.json"] = s.params
    return entries


def _plain(s: TransferSession) -> tuple:
    """The source and the targets gallery as given (no points)."""
    src = s.matcher.source_index
    return s.images[src].array, [(im.array, im.name) for i, im in enumerate(s.images) if i != src]


def _marks(s: TransferSession, result: TransferResult) -> dict:
    """The points as the page draws them: numbered on the source, their matches numbered on each
    target thumbnail (in the gallery's order) over the last point's heat map there."""
    src = s.matcher.source_index
    n = result.num_points
    labels, colors = [str(p + 1) for p in range(n)], draw.point_colors(n)
    order = [i for i in range(len(s.images)) if i != src]
    pictures = [picture_marks(SOURCE_PICTURE, s.images[src].array.shape[:2], s.points, labels, colors)]
    pictures += [picture_marks(f"{TARGETS_GALLERY}@{k}", s.images[i].array.shape[:2], result.matches[i], labels,
                               colors) for k, i in enumerate(order)]
    heats = [mark_heat(f"{TARGETS_GALLERY}@{k}", k + 1, s.points[-1]) for k in range(len(order))]
    return marks_payload(pictures, heats=heats)


def _result(s: TransferSession) -> TransferResult:
    """The points of the session transferred with its matchers (no network pass)."""
    return transfer_points_descriptors(s.descs, s.matcher.source_index, s.points, matcher=s.matcher)


def _outputs(s: TransferSession, key: str, drawn: bool = False, result: TransferResult | None = None) -> tuple:
    """(source with points, targets gallery, summary markdown, points JSON, file (None: the
    visitor's "Prepare download" builds it, :func:`transfer_download`), session); stores ``s``.
    ``drawn`` (the page draws the points, from :func:`_marks`): the pictures as given, sent only
    if the last ones had points drawn in; nothing is drawn or written to disk."""
    src = s.matcher.source_index
    names = [im.name for im in s.images]
    plain = page_pictures(s.marked or not drawn, lambda: _plain(s), 2)
    save(key, updated(s, marked=bool(s.points) and not drawn))
    if not s.points:
        md = (f"Descriptors of {len(s.images)} images ready. Click a point on **{names[src]}**: "
              "its match appears on every other image.")
        return plain + (md, None, None, key)
    result = result or _result(s)
    if drawn:
        md, points = _summary(s, result, [None] * len(s.images))
        return plain + (md, points, None, key)
    pictures = draw.draw_transfer([im.array for im in s.images], result)
    last = len(s.points) - 1
    targets = []
    for i, im in enumerate(s.images):
        if i == src:
            continue
        heat = draw.top_heatmap(im.array, result.heatmaps[i][last], geometry=result.geometries[i])
        targets.append((draw.draw_markers(heat, result.matches[i], draw.point_colors(result.num_points)),
                        f"{im.name}: point {last + 1} {result.similarity[i, last]:.2f}"
                        + (" (mutual)" if result.mutual[i, last] else "")))
    md, points = _summary(s, result, pictures)
    return pictures[src], targets, md, points, None, key


def _summary(s: TransferSession, result: TransferResult, pictures: list) -> tuple[str, Any]:
    """The points' table (markdown) and their JSON (with the parameters)."""
    src = s.matcher.source_index
    names = [im.name for im in s.images]
    rows = ["| point | image | match (x, y) | similarity | mutual |", "|---|---|---|---|---|"]
    for p in range(result.num_points):
        for i in range(len(s.images)):
            if i != src:
                y, x = result.matches[i, p]
                rows.append(f"| {p + 1} | {names[i]} | {x:.0f}, {y:.0f} | {result.similarity[i, p]:.3f} | "
                            f"{'yes' if result.mutual[i, p] else 'no'} |")
    md = f"**{result.num_points} point(s)** on {names[src]}.\n\n" + "\n".join(rows)
    return md, to_jsonable({**_entries(s, result, pictures)["points.json"], "params": s.params})


@ui_errors(heavy=True)
def run_transfer(images: Any, source: Any = 0, model: str = BUNDLED_MODEL, layer: Any = AUTO,
                 facet: Any = AUTO, stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO,
                 progress: gr.Progress = gr.Progress()) -> tuple:
    """Extract a set (2-30 images) once. Returns (source, targets, markdown, JSON, file, session,
    source selector)."""
    ims = prepare_set(images)
    settings = descriptor_settings(model, "correspondences", layer, facet, stride, load_size, bin)
    descs, _ = extract_set(model, ims, settings, progress, with_saliency=False)
    index = validate.number("source", source, 0, None, integer=True, default=0)
    if not 0 <= index < len(ims):
        index = 0
    if task_defaults("correspondences", model)["flip"]:    # every target also mirrored (vitdense.ops.mirror)
        progress(0.6, desc="Describing the mirrored targets")
        targets = [t for t in range(len(ims)) if t != index]
        mirrored = extract(model, [ImageOps.mirror(ims[t].image) for t in targets], settings)
        descs = list(descs)
        for t, m in zip(targets, mirrored):
            descs[t] = choose_orientation(descs[index], descs[t], m)[0]
    progress(0.8, desc="Preparing the matchers")
    s = TransferSession(ims, descs, SetMatcher(descs, index),
                        dict(task="transfer", model=model, **settings, max_side=MAX_SIDE))
    return (*_outputs(s, keep(s, ID)), _source_choices(s), Done(f"Descriptors of {len(ims)} images ready."))


def _need(key: Any) -> TransferSession:
    session = load(key, "press Extract descriptors")
    if session is None:
        raise ParameterError("extract the set first (button 'Extract descriptors'), then click on the source")
    return session


@ui_errors
def transfer_source(key: Any, source: Any) -> tuple:
    """Another source image: its matchers (no network pass); the points are cleared."""
    s = _need(key)
    index = validate.number("image index", source, 0, len(s.images) - 1, integer=True)
    return _outputs(updated(s, matcher=SetMatcher(s.descs, index), points=[]), key)


@ui_errors
def transfer_point(key: Any, x: float, y: float) -> tuple:
    """Pixel (x, y) of the source -> its match on every other image; points accumulate."""
    new, done = _added(key, x, y)
    return (*_outputs(new, key), done)


def _added(key: Any, x: Any, y: Any) -> tuple[TransferSession, Done]:
    """The visitor's set with point (x, y) of the source added (not yet stored), and its sentence."""
    s = _need(key)
    x, y = validate.number("x", x), validate.number("y", y)
    w, h = s.images[s.matcher.source_index].image.size
    if not (0 <= float(x) < w and 0 <= float(y) < h):
        raise ParameterError(f"the point (x={float(x):.0f}, y={float(y):.0f}) is outside the source image "
                             f"({w} x {h} pixels)")
    new = updated(s, points=(s.points + [(float(y), float(x))])[-MAX_POINTS:])
    return new, Done(f"Point {len(new.points)} (x={float(x):.0f}, y={float(y):.0f}) matched on "
                     f"{len(s.images) - 1} images.")


#: sets sent to the page for hovering (each image is about 0.9 MB of text at the defaults)
MAX_HOVER_IMAGES = 8


@ui_errors(quiet=True)
def send_hover(key: Any) -> Any:
    """After a run or a new source: the source and the targets (in the gallery's order) for the
    page's hover preview; None (click only) for a set larger than :data:`MAX_HOVER_IMAGES`."""
    session = load(key, "press Extract descriptors")
    if session is None or len(session.descs) > MAX_HOVER_IMAGES:
        return None
    src = session.matcher.source_index
    order = [src] + [i for i in range(len(session.descs)) if i != src]
    return hover_payload("correspondences", [session.descs[i] for i in order], run=time.monotonic_ns())


@ui_errors
def click_transfer(key: Any, drawn: Any, evt: gr.SelectData) -> tuple:
    """A click on the source (gr.SelectData.index = [x, y] in its pixels): :func:`transfer_point`'s
    outputs and the marks, which the page draws when ``drawn`` (:func:`vitdense.web.hover.page_draws`;
    otherwise the server draws the pictures, marks None)."""
    new, done = _added(key, evt.index[0], evt.index[1])
    drawn = validate.flag("drawn", drawn)
    result = _result(new)
    return (*_outputs(new, key, drawn, result), _marks(new, result) if drawn else None, done)


@ui_errors
def transfer_clear(key: Any) -> tuple:
    return _outputs(updated(_need(key), points=[]), key)


@ui_errors
def transfer_download(key: Any) -> tuple:
    """The zip of the points clicked so far (points/<image>.png, points.json, params.json), built now."""
    s = _need(key)
    if not s.points:
        raise ParameterError("click a point on the source image first: the download holds the transferred points")
    result = _result(s)
    pictures = draw.draw_transfer([im.array for im in s.images], result)
    return download_zip(ID, _entries(s, result, pictures)), Done(f"The download is ready ({len(s.points)} point(s)).")


def build(page: Page) -> None:
    state = session_state()
    images = set_input(elem_id="transfer-input")
    set_examples(images)
    with gr.Row():
        source = gr.Dropdown(choices=[], value=None, label="Source image", elem_id="transfer-source-select",
                             info="Points are clicked on this image; choosing another keeps the descriptors.")
        run_btn = gr.Button("Extract descriptors", variant="primary", elem_id="transfer-run")
        clear_btn = gr.Button("Clear points", elem_id="transfer-clear")
    with gr.Row():
        src_img = gr.Image(label="Source: click a point", format="png", interactive=False, scale=2,
                           elem_id=SOURCE_PICTURE)
        with gr.Column(scale=3):
            targets = gr.Gallery(label="Matches (last point's similarity: top 5% coloured)", columns=3, format="png",
                                 elem_id=TARGETS_GALLERY, object_fit="contain", height="auto")
    hover = hover_block("transfer", SOURCE_PICTURE, [f"{TARGETS_GALLERY}@{k}" for k in range(MAX_HOVER_IMAGES)],
                        "Arrow keys move a cursor cell on the source, Enter transfers it on the server.")
    marks = marks_block("transfer", SOURCE_PICTURE)
    md = gr.Markdown(elem_id="transfer-summary")
    with gr.Row():
        with gr.Column():
            x = gr.Number(None, label="x on the source", precision=0, minimum=0)
            y = gr.Number(None, label="y on the source", precision=0, minimum=0)
            point_btn = gr.Button("Transfer this point")
        file_out, download_btn = download_output("Download (points/<image>.png, points.json, parameters)")
    with gr.Accordion("Points (JSON)", open=False):
        points = gr.JSON()
    outputs = [src_img, targets, md, points, file_out, state]
    aux = dict(api_visibility="private", concurrency_limit=None, show_progress="hidden")
    no_marks = clear_marks(marks)
    pick = source.input(transfer_source, [state, source], outputs, api_visibility="private", concurrency_limit=None)
    page.watch(pick)
    for ev in (endpoint(page, run_btn.click, run_transfer, [images, source, *page.descriptor_inputs],
                        [*outputs, source], api_name=RUN_API), pick):
        ev.success(send_hover, state, hover, **aux).then(**no_marks)
    page.on_select(src_img, click_transfer, state, [*outputs, marks], drawn=page_draws(SOURCE_PICTURE))
    endpoint(page, point_btn.click, transfer_point, [state, x, y], outputs, api_name=POINT_API).then(**no_marks)
    endpoint(page, clear_btn.click, transfer_clear, state, outputs, api_name=CLEAR_API).then(**no_marks)
    endpoint(page, download_btn.click, transfer_download, state, file_out, api_name=DOWNLOAD_API)

"""Correspondences tab: the K best-buddy pairs of two images, then click-to-correspond on A."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import numpy as np
from PIL import ImageOps

from vitdense import draw
from vitdense.apps import get_app
from vitdense.apps.correspondences import PointMatcher, find_correspondences_descriptors
from vitdense.apps.registry import Inputs
from vitdense.defaults import task_defaults
from vitdense.errors import ParameterError
from vitdense.export import to_jsonable
from vitdense.features.descriptors import ImageDescriptors
from vitdense.features.models import BUNDLED_MODEL
from vitdense.ops.mirror import choose_orientation
from vitdense.web import gate
from vitdense.web.controls import Page, download_output, endpoint, knob_components, knob_params, knob_values, \
    run_inputs
from vitdense.web.errors import ui_errors
from vitdense.draw.maps import boxes_of
from vitdense.web.hover import clear_marks, hover_block, mark_heat, mark_line, marks_block, marks_payload, \
    matcher_payload, page_draws, picture_marks
from vitdense.web.inputs import AUTO, MAX_SIDE, InputImage, admit, descriptor_settings, example_pairs, \
    pair_inputs, prepare_pair
from vitdense.web.pool import POOL, extract
from vitdense.web.serving import validate
from vitdense.web.state import keep, load, save, session_state, updated
from vitdense.web.status import Done
from vitdense.web.zips import Png, as_png, download_zip, output_folder, png_files, write_zip

APP = get_app("correspondences")
ID, TITLE, ORDER = APP.id, APP.title, 10
RUN_API, MATCH_API, CLEAR_API, DOWNLOAD_API = APP.api_names
MAX_CLICKS = 26            # clicks kept per pair (labelled a..z)
A_PICTURE, B_PICTURE, HEAT_PICTURE = "corr-a-output", "corr-b-output", "corr-heat"   # element ids
#: colours of clicked points (neon, distinct from the automatic pairs' tab10 palette)
CLICK_COLORS = np.array([[255, 0, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0],
                         [255, 96, 0], [160, 64, 255], [255, 0, 112], [0, 160, 255],
                         [160, 255, 64], [255, 200, 120], [0, 255, 160], [255, 128, 255]],
                        dtype=np.uint8)


@dataclass
class PairSession:
    """One visitor's extracted pair (lives in that visitor's gr.State)."""

    images: list[InputImage]
    descs: list[ImageDescriptors]
    matcher: PointMatcher
    corr: Any                       # vitdense.apps.correspondences.Correspondences
    base: list[np.ndarray]          # A and B with the automatic pairs drawn (drawn once)
    params: dict
    clicks: list[dict] = field(default_factory=list)   # {"a": (y, x), "b": (y, x), ...}
    last_map: Optional[np.ndarray] = None               # h x w similarity of the last click
    base_png: tuple = ()            # ``base`` encoded as PNG (once; shown and zipped without clicks)
    overview_png: Png = Png()       # the side-by-side picture of the zip (drawn and encoded once)
    plain_png: Png = Png()          # B as given: the heat map's box before a click, or drawn over by the page
    marked: bool = False            # the pictures last sent have the clicks drawn in (by the server)


def click_label(i: int) -> str:
    return chr(ord("a") + i)


def click_color(i: int) -> np.ndarray:
    return CLICK_COLORS[i % len(CLICK_COLORS)]


def _xy(yx: Any) -> dict:
    return {"x": round(float(yx[1]), 2), "y": round(float(yx[0]), 2)}


def _clicks_json(s: PairSession) -> list[dict]:
    return [{"id": click_label(i), "a": _xy(k["a"]), "a_cell": _xy(k["a_cell"]), "b": _xy(k["b"]),
             "b_cell": _xy(k["b_cell"]),
             "similarity": round(k["similarity"], 4), "mutual": k["mutual"]} for i, k in enumerate(s.clicks)]


def _render_pair(s: PairSession) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A and B with the automatic pairs and the clicks; the last click's heat map over B."""
    a, b = s.base
    if s.clicks:
        cols = np.stack([click_color(i) for i in range(len(s.clicks))])
        labels = [click_label(i) for i in range(len(s.clicks))]
        r = max(7, round(0.024 * max(a.shape[:2] + b.shape[:2])))
        a = draw.draw_markers(a, [k["a"] for k in s.clicks], cols, labels=labels, radius=r)
        b = draw.draw_markers(b, [k["b"] for k in s.clicks], cols, labels=labels, radius=r)
    heat = None
    if s.clicks and s.last_map is not None:
        last, i = s.clicks[-1], len(s.clicks) - 1
        heat = draw.top_heatmap(s.images[1].array, s.last_map, geometry=s.descs[1].geometry)
        heat = draw.draw_markers(heat, [last["b"]], click_color(i)[None], labels=[click_label(i)])
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
        rows.append(f"| {click_label(i)} | {k['a'][1]:.0f}, {k['a'][0]:.0f} | "
                    f"{k['b'][1]:.0f}, {k['b'][0]:.0f} | {k['similarity']:.3f} | "
                    f"{'yes' if k['mutual'] else 'no'} |")
    return head + "\n\n" + "\n".join(rows)


def _entries(s: PairSession, pictures: tuple) -> dict:
    """The pair's export with its clicks (the command line's layout; A and B as already encoded)."""
    inputs = Inputs([im.array for im in s.images], [im.name for im in s.images])
    stems = ["A_" + _stem(s.images[0].name), "B_" + _stem(s.images[1].name)]
    entries = APP.export(s.corr, inputs, stems, pictures=pictures, clicks=_clicks_json(s), overview=s.overview_png)
    entries["params.json"] = s.params
    return entries


def _pictures(s: PairSession) -> tuple:
    """A and B as shown, PNG-encoded once (without clicks, the bytes the session already holds),
    and the last click's heat map (an array, or None)."""
    a, b, heat = _render_pair(s)
    return (s.base_png if not s.clicks else (as_png(a), as_png(b))), heat


def _marks(s: PairSession) -> dict:
    """The clicks as the page draws them (lettered markers on A and B, a line from A to B and the
    heat map of the last click): :func:`vitdense.web.hover.marks_payload`."""
    a_size, b_size = (im.array.shape[:2] for im in s.images)
    labels = [click_label(i) for i in range(len(s.clicks))]
    colors = [click_color(i) for i in range(len(s.clicks))]
    a = picture_marks(A_PICTURE, a_size, [k["a"] for k in s.clicks], labels, colors, boxes_of(s.base[0]))
    b = picture_marks(B_PICTURE, b_size, [k["b"] for k in s.clicks], labels, colors, boxes_of(s.base[1]))
    if not s.clicks:
        return marks_payload([a, b])
    last = s.clicks[-1]
    heat = picture_marks(HEAT_PICTURE, b_size, [last["b"]], labels[-1:], colors[-1:])
    return marks_payload([a, b, heat], [mark_line(a, last["a"], b, last["b"], colors[-1])],
                         [mark_heat(HEAT_PICTURE, 1, last["a"])])


def _pair_outputs(s: PairSession, key: str, with_zip: bool = False, drawn: bool = False) -> tuple:
    """(A, B, heat map, summary markdown, points JSON, zip, session key): every pair event's
    outputs; the pictures are PNG files (paths). ``drawn`` (the page draws the clicks, from
    :func:`_marks`): the pictures stay as they are (the base pictures, sent again only if the last
    ones had the clicks drawn in), and nothing is written to disk. The zip (a run's) is written
    only ``with_zip``: a click's is None, "Prepare download" builds it
    (:func:`correspondences_download`). Stores ``s`` under ``key``."""
    if drawn and not s.marked:
        save(key, s)
        points = to_jsonable(_entries(s, s.base_png)["points.json"])
        return gr.skip(), gr.skip(), gr.skip(), _clicks_markdown(s), points, None, key
    pictures, heat = _pictures(s) if not drawn else (s.base_png, None)
    folder = output_folder("corr-")
    a_path, b_path, heat_path = png_files([*pictures, s.plain_png if heat is None else heat],
                                          ["A", "B", "similarity"], folder)
    entries = _entries(s, pictures)
    zip_path = write_zip(ID, entries, folder) if with_zip else None
    save(key, updated(s, marked=bool(s.clicks) and not drawn))
    return a_path, b_path, heat_path, _clicks_markdown(s), to_jsonable(entries["points.json"]), zip_path, key


def _cleared(msg: str) -> tuple:
    """A cleared session: the sentence in the summary, every other output left as it is."""
    return gr.skip(), gr.skip(), gr.skip(), f"**{msg}**", gr.skip(), gr.skip(), gr.skip()


def _cleared_click(msg: str) -> tuple:
    """:func:`_cleared`, the marks left as they are too."""
    return _cleared(msg) + (gr.skip(),)


def _session(key: Any) -> PairSession:
    session = load(key, "press Find correspondences")
    if session is None:
        raise ParameterError("run correspondences first (button 'Find correspondences'), "
                             "then click on image A")
    return session


def point_on_a(size: tuple[int, int], x: Any, y: Any) -> tuple[float, float]:
    """Validated pixel coordinates (x, y) on image A of ``size`` (W, H)."""
    x, y = validate.number("x", x), validate.number("y", y)
    w, h = size
    if not (0 <= x < w and 0 <= y < h):
        raise ParameterError(f"the point (x={validate.shown(x)}, y={validate.shown(y)}) is outside "
                             f"image A ({w} x {h} pixels)")
    return x, y


def _stem(name: str) -> str:
    return Path(name).stem or "image"


def pair_session(image_a: Any, image_b: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
                 stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO, knobs: dict | None = None,
                 progress: Any = lambda *a, **k: None) -> PairSession:
    """Two images -> their PairSession: descriptors, the K best-buddy pairs drawn once, the matcher
    (``knobs``: the entry's web knobs as sent, None = the defaults)."""
    images = prepare_pair(image_a, image_b)
    settings = descriptor_settings(model, "correspondences", layer, facet, stride, load_size, bin)
    knobs = knob_values(APP, knobs, model)
    num_pairs, thresh = knobs["num_pairs"], knobs["thresh"]
    flip = bool(task_defaults("correspondences", model)["flip"])   # B mirrored too (vitdense.ops.mirror)
    admit(model, list(images) + [images[1]] * flip, settings, True, progress)
    progress(0.05, desc=f"Loading {model}")
    POOL.get(model)
    progress(0.2, desc="Extracting descriptors")
    d1, d2 = extract(model, [im.image for im in images], dict(settings, saliency=True))
    if flip:
        [d2m] = extract(model, [ImageOps.mirror(images[1].image)], settings)
        d2, _ = choose_orientation(d1, d2, d2m)
    progress(0.75, desc="Finding best buddies")
    matcher = PointMatcher(d1, d2)  # one mutual-NN pass serves the automatic pairs and the clicks
    corr = find_correspondences_descriptors(d1, d2, num_pairs=num_pairs, thresh=thresh, matcher=matcher)
    if corr.reason:
        gr.Warning(f"No automatic pairs: {corr.reason}. You can still click points on A.")
    base = draw.draw_correspondence_result(images[0].array, images[1].array, corr, separate=True)
    params = dict(task="correspondences", model=model, **settings, **knobs, max_side=MAX_SIDE)
    matcher.compact()   # the session keeps one fp16 normalised copy of the descriptors
    overview = draw.draw_correspondence_result(images[0].array, images[1].array, corr, lines=True)
    return PairSession(images, [matcher.d1, matcher.d2], matcher, corr, list(base), params,
                       base_png=tuple(as_png(x) for x in base), overview_png=as_png(overview),
                       plain_png=as_png(images[1].array))


@ui_errors(heavy=True)
@knob_params(APP)
def run_correspondences(image_a: Any, image_b: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO,
                        facet: Any = AUTO, stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO,
                        knobs: dict | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
    """Two images -> the K best-buddy pairs drawn on both, and a session ready for clicks
    (``knobs``: ``num_pairs`` right after the images, ``thresh`` last).

    Returns (A with points, B with points, B (the last click's heat map goes there), summary
    markdown, points JSON, zip path, session).
    """
    s = pair_session(image_a, image_b, model, layer, facet, stride, load_size, bin, knobs, progress)
    return _pair_outputs(s, keep(s, ID), with_zip=True) + (Done(f"Found {len(s.corr)} pairs."),)


@ui_errors(cleared=_cleared)
def match_point(key: Any, x: float, y: float) -> tuple:
    """Pixel (x, y) of image A -> its match on B; adds a click (kept per session)."""
    s, done = _clicked(key, x, y)
    return _pair_outputs(s, key) + (done,)


def _clicked(key: Any, x: Any, y: Any) -> tuple[PairSession, Done]:
    """The visitor's pair with the click at pixel (x, y) of A added (not yet stored), and its sentence."""
    session = _session(key)
    x, y = point_on_a(session.images[0].image.size, x, y)
    m = session.matcher.query(float(y), float(x))
    click = {"a": (float(y), float(x)), "a_cell": m.source_point, "b": m.point, "b_cell": m.cell_point,
             "similarity": float(m.similarity), "mutual": bool(m.is_best_buddy)}
    clicks = (session.clicks + [click])[-MAX_CLICKS:]
    return updated(session, clicks=clicks, last_map=m.similarity_map), \
        Done(f"Click {click_label(len(clicks) - 1)}: (x={x:.0f}, y={y:.0f}) on A matches "
             f"(x={m.point[1]:.0f}, y={m.point[0]:.0f}) on B.")


_LANDING: dict[str, PairSession] = {}     # the first example's result (computed once per server)
_LANDING_LOCK = threading.Lock()


@ui_errors(quiet=True)
def landing() -> tuple:
    """On arrival: the first example pair's result at the defaults, computed once per server, so
    that a visitor sees what the tab does with zero clicks (then hovers and clicks on it)."""
    pairs = example_pairs()
    if not pairs:
        return (gr.skip(),) * 9
    with _LANDING_LOCK, gate.for_every_visitor():   # once, for everyone: not the arriving visitor's job
        if "pair" not in _LANDING:
            _LANDING["pair"] = pair_session(*pairs[0])
    s = _LANDING["pair"]
    return (*pairs[0], *_pair_outputs(s, keep(s, ID)))     # no zip per arrival: "Prepare download" builds it


@ui_errors(quiet=True)
def send_hover(key: Any) -> Any:
    """After a run: the pair's descriptors and grids for the page's hover preview (private event)."""
    session = load(key, "press Find correspondences")
    if session is None:
        return None
    m = session.matcher
    return matcher_payload(m, run=time.monotonic_ns())


@ui_errors(cleared=_cleared_click)
def click_correspondence(key: Any, drawn: Any, evt: gr.SelectData) -> tuple:
    """A click on image A (gr.SelectData.index = [x, y] in the image's pixels): the pair event's
    outputs and the marks, which the page draws when ``drawn``
    (:func:`vitdense.web.hover.page_draws`; otherwise the server draws the pictures, marks None)."""
    s, done = _clicked(key, evt.index[0], evt.index[1])
    drawn = validate.flag("drawn", drawn)
    return _pair_outputs(s, key, drawn=drawn) + (_marks(s) if drawn else None, done)


@ui_errors(cleared=_cleared)
def clear_points(key: Any) -> tuple:
    """Forget the clicks (the automatic pairs stay)."""
    session = load(key, "press Find correspondences")
    if session is None:
        return None, None, None, "", None, None, None
    return _pair_outputs(updated(session, clicks=[], last_map=None), key)


@ui_errors
def correspondences_download(key: Any) -> tuple:
    """The zip of the pair as the page shows it, clicks included (built now, on request)."""
    s = _session(key)
    return download_zip(ID, _entries(s, _pictures(s)[0])), Done("The download is ready (points JSON, "
                                                                "annotated images, parameters).")


def build(page: Page) -> None:
    """The tab's layout and wiring (inside ``gr.Tab``)."""
    state = session_state()
    a_in, b_in = pair_inputs("corr")
    with gr.Row():
        knobs = knob_components(APP, page.default_model)
        run_btn = gr.Button("Find correspondences", variant="primary", elem_id="corr-run")
    with gr.Row():
        a_out = gr.Image(label="A: hover to preview, click to pin", format="png", interactive=False,
                         elem_id=A_PICTURE)
        b_out = gr.Image(label="B: matches", format="png", interactive=False, elem_id=B_PICTURE)
    with gr.Row():
        heat = gr.Image(label="Last click's similarity over B (top 5% coloured)", format="png", interactive=False,
                        elem_id=HEAT_PICTURE)
        with gr.Column():
            md = gr.Markdown(elem_id="corr-summary")
            with gr.Row():
                click_x = gr.Number(None, label="x on A", precision=0, minimum=0)
                click_y = gr.Number(None, label="y on A", precision=0, minimum=0)
            with gr.Row():
                match_btn = gr.Button("Match this point")
                clear_btn = gr.Button("Clear clicks", elem_id="corr-clear")
            zip_out, download_btn = download_output("Download (points JSON, annotated images, parameters)")
    hover = hover_block("corr", A_PICTURE, [B_PICTURE],
                        "Arrow keys move a cursor cell on image A, Enter asks the server for its match.")
    marks = marks_block("corr", A_PICTURE)
    with gr.Accordion("Points (JSON)", open=False):
        points = gr.JSON()
    outputs = [a_out, b_out, heat, md, points, zip_out, state]
    no_marks = clear_marks(marks)
    run = endpoint(page, run_btn.click, run_correspondences, run_inputs(APP, [a_in, b_in], page, knobs), outputs,
                   api_name=RUN_API)
    run.success(send_hover, state, hover, api_visibility="private", concurrency_limit=None,
                show_progress="hidden").then(**no_marks)
    if page.demo is not None:     # the first example's result on arrival (computed once per server)
        page.demo.load(landing, None, [a_in, b_in, *outputs], api_visibility="private",
                       concurrency_limit=None, show_progress="hidden") \
            .success(send_hover, state, hover, api_visibility="private", concurrency_limit=None,
                     show_progress="hidden")
    page.on_select(a_out, click_correspondence, state, [*outputs, marks], drawn=page_draws(A_PICTURE))
    endpoint(page, match_btn.click, match_point, [state, click_x, click_y], outputs, api_name=MATCH_API) \
        .then(**no_marks)
    endpoint(page, clear_btn.click, clear_points, state, outputs, api_name=CLEAR_API).then(**no_marks)
    endpoint(page, download_btn.click, correspondences_download, state, zip_out, api_name=DOWNLOAD_API)

"""Similarity inspector tab: click a point of A, see its similarity over A and B."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from vitdense import draw
from vitdense.apps.similarity import inspect_similarity_descriptors
from vitdense.errors import ParameterError
from vitdense.features.descriptors import ImageDescriptors
from vitdense.features.models import BUNDLED_MODEL
from vitdense.apps import get_app
from vitdense.web.controls import Page, endpoint, knob_components, knob_params, knob_values
from vitdense.web.errors import ui_errors
from vitdense.web.hover import clear_marks, hover_block, hover_payload, mark_heat, marks_block, marks_payload, \
    page_draws, page_pictures, picture_marks
from vitdense.web.inputs import AUTO, MAX_SIDE, InputImage, admit, descriptor_settings, pair_inputs, \
    prepare_pair
from vitdense.web.pool import POOL, extract
from vitdense.web.serving.results import compact_descriptors, expand_descriptors
from vitdense.web.serving import validate
from vitdense.web.state import keep, load, save, session_state, updated
from vitdense.web.status import Done
from vitdense.web.tabs.correspondences import point_on_a

APP = get_app("similarity")
ID, TITLE, ORDER = APP.id, APP.title, 40
RUN_API, POINT_API = APP.api_names


A_PICTURE, B_PICTURE = "sim-a-output", "sim-b-output"     # element ids


@dataclass
class SimilaritySession:
    images: list[InputImage]
    descs: list[ImageDescriptors]
    params: dict
    marked: bool = False            # the pictures last sent are the server's maps (not the images as given)


def _xy(yx: Any) -> dict:
    return {"x": round(float(yx[1]), 2), "y": round(float(yx[0]), 2)}


@ui_errors(heavy=True)
def run_similarity(image_a: Any, image_b: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO,
                   facet: Any = AUTO, stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO,
                   progress: gr.Progress = gr.Progress()) -> tuple:
    """Extract A and B for the inspector. Returns (A, B, hint markdown, session)."""
    ims = prepare_pair(image_a, image_b)
    settings = descriptor_settings(model, "similarity", layer, facet, stride, load_size, bin)
    admit(model, ims, settings, False, progress)
    progress(0.05, desc=f"Loading {model}")
    POOL.get(model)
    progress(0.2, desc="Extracting descriptors")
    descs = extract(model, [im.image for im in ims], dict(settings, saliency=False))
    params = dict(task="similarity", model=model, **settings, max_side=MAX_SIDE)
    key = keep(SimilaritySession(ims, [compact_descriptors(d) for d in descs], params), ID)
    return (ims[0].array, ims[1].array, "Descriptors ready: click a point on image A.", key,
            Done("Descriptors extracted."))


@ui_errors
@knob_params(APP)
def similarity_point(key: Any, x: float, y: float, knobs: dict | None = None) -> tuple:
    """Pixel (x, y) of A -> similarity maps over A and B with the top-n patches of each (``knobs``:
    the entry's web knobs, ``top_n``).

    Returns (map over A, map over B, markdown, JSON).
    """
    return _inspect(key, x, y, knobs, drawn=False)[:-1]


@ui_errors
def click_similarity(key: Any, top_n: Any, drawn: Any, evt: gr.SelectData) -> tuple:
    """A click on A (gr.SelectData.index = [x, y] in its pixels): :func:`similarity_point`'s
    outputs and the marks, which the page draws (with the maps) when ``drawn``
    (:func:`vitdense.web.hover.page_draws`; otherwise the server draws the maps, marks None)."""
    return _inspect(key, evt.index[0], evt.index[1], {"top_n": top_n}, validate.flag("drawn", drawn))


def _inspect(key: Any, x: Any, y: Any, knobs: dict | None, drawn: bool) -> tuple:
    """(A, B, markdown, JSON, marks): the maps drawn by the server, or with ``drawn`` the marks
    (the pictures as given, sent again only if the last ones were maps; nothing written to disk)."""
    session = load(key, "press Extract descriptors")
    if session is None:
        raise ParameterError("extract the images first (button 'Extract descriptors'), then click on A")
    x, y = point_on_a(session.images[0].image.size, x, y)
    top_n = knob_values(APP, knobs, session.params["model"])["top_n"]
    d1, d2 = (expand_descriptors(d) for d in session.descs)
    r = inspect_similarity_descriptors(d1, d2, (float(y), float(x)), top_n=top_n)
    if drawn:
        pictures = page_pictures(session.marked, lambda: [im.array for im in session.images], 2)
    else:
        pictures = draw.draw_similarity(session.images[0].array, session.images[1].array, r)
    if session.marked != (not drawn):
        save(key, updated(session, marked=not drawn))

    def top(points: np.ndarray, sims: np.ndarray) -> list[dict]:
        return [dict(_xy(p), similarity=round(float(v), 4)) for p, v in zip(points, sims)]

    info = {"query": {"x": float(x), "y": float(y)}, "query_cell": _xy(r.query_cell_point),
            "top_a": top(r.top_a_points, r.top_a_similarity), "top_b": top(r.top_b_points, r.top_b_similarity),
            "params": dict(session.params, top_n=top_n)}
    md = (f"Query (x={x:.0f}, y={y:.0f}) -> cell centre ({r.query_cell_point[1]:.0f}, "
          f"{r.query_cell_point[0]:.0f}). Best on B: " +
          ", ".join(f"#{i + 1} ({p[1]:.0f}, {p[0]:.0f}) {v:.3f}"
                    for i, (p, v) in enumerate(zip(r.top_b_points, r.top_b_similarity))))
    return (*pictures, md, info, _marks(session, r, (float(y), float(x))) if drawn else None)


def _marks(s: SimilaritySession, r: Any, query: tuple[float, float]) -> dict:
    """The click as the page draws it: both maps (computed in the page), the query on A (white,
    unlabelled) and the top-n patches numbered on each."""
    a_size, b_size = (im.array.shape[:2] for im in s.images)
    n_a, n_b = len(r.top_a_points), len(r.top_b_points)
    a = picture_marks(A_PICTURE, a_size, [*r.top_a_points, query], [*map(str, range(1, n_a + 1)), ""],
                      [*draw.point_colors(n_a), (255, 255, 255)])
    b = picture_marks(B_PICTURE, b_size, r.top_b_points, list(map(str, range(1, n_b + 1))), draw.point_colors(n_b))
    return marks_payload([a, b], heats=[mark_heat(A_PICTURE, 0, query), mark_heat(B_PICTURE, 1, query)])


@ui_errors(quiet=True)
def send_hover(key: Any) -> Any:
    """After a run: A's and B's descriptors for the page's hover preview (maps over A and B)."""
    session = load(key, "press Extract descriptors")
    if session is None:
        return None
    return hover_payload("similarity", [expand_descriptors(d) for d in session.descs],
                         run=time.monotonic_ns(), targets=[0, 1])


def build(page: Page) -> None:
    state = session_state()
    a_in, b_in = pair_inputs("sim")
    with gr.Row():
        knobs = knob_components(APP, page.default_model)
        run_btn = gr.Button("Extract descriptors", variant="primary", elem_id="sim-run")
    md = gr.Markdown()
    with gr.Row():
        a_out = gr.Image(label="A: hover to preview, click for the top-n (similarity over A)", format="png",
                         interactive=False, elem_id=A_PICTURE)
        b_out = gr.Image(label="Similarity over B (top-n numbered)", format="png", interactive=False,
                         elem_id=B_PICTURE)
    hover = hover_block("sim", A_PICTURE, [A_PICTURE, B_PICTURE],
                        "Arrow keys move a cursor cell on image A, Enter asks the server for its top patches.")
    marks = marks_block("sim", A_PICTURE)
    with gr.Row():
        x = gr.Number(None, label="x on A", precision=0, minimum=0)
        y = gr.Number(None, label="y on A", precision=0, minimum=0)
        point_btn = gr.Button("Inspect this point")
    with gr.Accordion("Top patches (JSON)", open=False):
        info = gr.JSON()
    run = endpoint(page, run_btn.click, run_similarity, [a_in, b_in, *page.descriptor_inputs], [a_out, b_out, md, state],
                   api_name=RUN_API)
    no_marks = clear_marks(marks)
    run.success(send_hover, state, hover, api_visibility="private", concurrency_limit=None, show_progress="hidden") \
        .then(**no_marks)
    page.on_select(a_out, click_similarity, [state, *knobs], [a_out, b_out, md, info, marks],
                   drawn=page_draws(A_PICTURE))
    endpoint(page, point_btn.click, similarity_point, [state, x, y, *knobs], [a_out, b_out, md, info],
             api_name=POINT_API).then(**no_marks)

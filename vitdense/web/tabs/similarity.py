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
from vitdense.web.hover import hover_block, hover_payload
from vitdense.web.inputs import AUTO, MAX_SIDE, InputImage, admit, descriptor_settings, pair_inputs, \
    prepare_pair
from vitdense.web.pool import POOL, extract
from vitdense.web.serving.results import compact_descriptors, expand_descriptors
from vitdense.web.state import keep, load, session_state
from vitdense.web.status import Done
from vitdense.web.tabs.correspondences import point_on_a

APP = get_app("similarity")
ID, TITLE, ORDER = APP.id, APP.title, 40
RUN_API, POINT_API = APP.api_names


@dataclass
class SimilaritySession:
    images: list[InputImage]
    descs: list[ImageDescriptors]
    params: dict


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
    session = load(key, "press Extract descriptors")
    if session is None:
        raise ParameterError("extract the images first (button 'Extract descriptors'), then click on A")
    x, y = point_on_a(session.images[0].image.size, x, y)
    top_n = knob_values(APP, knobs, session.params["model"])["top_n"]
    d1, d2 = (expand_descriptors(d) for d in session.descs)
    r = inspect_similarity_descriptors(d1, d2, (float(y), float(x)), top_n=top_n)
    maps = draw.draw_similarity(session.images[0].array, session.images[1].array, r)

    def top(points: np.ndarray, sims: np.ndarray) -> list[dict]:
        return [dict(_xy(p), similarity=round(float(v), 4)) for p, v in zip(points, sims)]

    info = {"query": {"x": float(x), "y": float(y)}, "query_cell": _xy(r.query_cell_point),
            "top_a": top(r.top_a_points, r.top_a_similarity), "top_b": top(r.top_b_points, r.top_b_similarity),
            "params": dict(session.params, top_n=top_n)}
    md = (f"Query (x={x:.0f}, y={y:.0f}) -> cell centre ({r.query_cell_point[1]:.0f}, "
          f"{r.query_cell_point[0]:.0f}). Best on B: " +
          ", ".join(f"#{i + 1} ({p[1]:.0f}, {p[0]:.0f}) {v:.3f}"
                    for i, (p, v) in enumerate(zip(r.top_b_points, r.top_b_similarity))))
    return maps[0], maps[1], md, info


@ui_errors(quiet=True)
def send_hover(key: Any) -> Any:
    """After a run: A's and B's descriptors for the page's hover preview (maps over A and B)."""
    session = load(key, "press Extract descriptors")
    if session is None:
        return None
    return hover_payload("similarity", [expand_descriptors(d) for d in session.descs],
                         run=time.monotonic_ns(), targets=[0, 1])


def click_similarity(session: Any, top_n: Any, evt: gr.SelectData) -> tuple:
    return similarity_point(session, evt.index[0], evt.index[1], top_n)


def build(page: Page) -> None:
    state = session_state()
    a_in, b_in = pair_inputs("sim")
    with gr.Row():
        knobs = knob_components(APP, page.default_model)
        run_btn = gr.Button("Extract descriptors", variant="primary", elem_id="sim-run")
    md = gr.Markdown()
    with gr.Row():
        a_out = gr.Image(label="A: hover to preview, click for the top-n (similarity over A)", format="png",
                         interactive=False, elem_id="sim-a-output")
        b_out = gr.Image(label="Similarity over B (top-n numbered)", format="png", interactive=False,
                         elem_id="sim-b-output")
    hover = hover_block("sim", "sim-a-output", ["sim-a-output", "sim-b-output"],
                        "Arrow keys move a cursor cell on image A, Enter asks the server for its top patches.")
    with gr.Row():
        x = gr.Number(None, label="x on A", precision=0, minimum=0)
        y = gr.Number(None, label="y on A", precision=0, minimum=0)
        point_btn = gr.Button("Inspect this point")
    with gr.Accordion("Top patches (JSON)", open=False):
        info = gr.JSON()
    run = endpoint(page, run_btn.click, run_similarity, [a_in, b_in, *page.descriptor_inputs], [a_out, b_out, md, state],
                   api_name=RUN_API)
    run.success(send_hover, state, hover, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    page.on_select(a_out, click_similarity, [state, *knobs], [a_out, b_out, md, info])
    endpoint(page, point_btn.click, similarity_point, [state, x, y, *knobs], [a_out, b_out, md, info],
             api_name=POINT_API)

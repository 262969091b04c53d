"""A tab derived from an application's registry entry, for every application without a tab module
of its own: the set upload and its examples, the entry's web knobs (``App.web_knobs``), a Run
button, the export's pictures in a gallery, the one-line summary and the download. Its id and API
name are the application's id, its title the entry's title: adding an application adds its tab."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np

from vitdense.apps.registry import App, Inputs
from vitdense.features.models import BUNDLED_MODEL
from vitdense.web.controls import Page, endpoint, knob_components, knob_params, run_inputs
from vitdense.web.errors import ui_errors
from vitdense.web.inputs import AUTO, MAX_SET_IMAGES, MAX_SIDE, numbered_stems, set_examples, set_input
from vitdense.web.pool import extract_app_set
from vitdense.web.status import Done
from vitdense.web.zips import write_zip

FIRST_ORDER = 100   # derived tabs come after the tabs with modules of their own


def run_app(app: App, images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
            stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO, knobs: dict | None = None,
            progress: gr.Progress = gr.Progress()) -> tuple:
    """Extract the set once, run the application from its descriptors, export as the CLI does.

    Returns (gallery of the export's pictures, summary markdown, zip, status)."""
    ims, settings, values, descs, _ = extract_app_set(app, images, model, (layer, facet, stride, load_size, bin),
                                                      knobs, progress, with_saliency=False)
    result = app.run_descriptors(descs, **values)
    entries = app.export(result, Inputs([im.array for im in ims], [im.name for im in ims]), numbered_stems(ims))
    entries["params.json"] = dict(task=app.task, model=model, **settings, **values, max_side=MAX_SIDE)
    gallery = [(v, name) for name, v in entries.items() if isinstance(v, np.ndarray) and v.ndim == 3]
    summary = app.describe(result)
    return gallery, summary[0].upper() + summary[1:] + ".", write_zip(app.id, entries), Done(summary)


def app_handler(app: App) -> Any:
    """:func:`run_app` for ``app``, its parameters named as the API shows them (``images``, the
    descriptor settings, then the entry's web knobs: :func:`~vitdense.web.controls.knob_params`)."""
    def handler(images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO, stride: Any = AUTO,
                load_size: float | None = None, bin: Any = AUTO, knobs: dict | None = None,
                progress: gr.Progress = gr.Progress()) -> tuple:
        return run_app(app, images, model, layer, facet, stride, load_size, bin, knobs, progress=progress)
    handler.__name__ = f"run_{app.id}"
    return knob_params(app)(handler)


def build_app_tab(app: App, page: Page) -> None:
    images = set_input(label=f"Images ({app.min_images}-{MAX_SET_IMAGES})")
    set_examples(images)
    controls = knob_components(app, page.default_model)
    run_btn = gr.Button(f"Run {app.title.lower()}", variant="primary")
    md = gr.Markdown()
    gallery = gr.Gallery(label=app.title, columns=4, height=320, format="png")
    zip_out = gr.File(height=90, label="Download (the pictures and parameters)")
    handler = ui_errors(app_handler(app), heavy=True, tab=app.id)
    endpoint(page, run_btn.click, handler, run_inputs(app, [images], page, controls), [gallery, md, zip_out],
             api_name=app.id)


def app_tab(app: App, order: int) -> SimpleNamespace:
    """A tab module's attributes (``APP``, ``ID``, ``TITLE``, ``ORDER``, ``build``) for ``app``."""
    return SimpleNamespace(APP=app, ID=app.id, TITLE=app.title, ORDER=order, __name__=f"{__name__}.{app.id}",
                           build=lambda page: build_app_tab(app, page))

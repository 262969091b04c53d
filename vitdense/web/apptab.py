"""A tab derived from an application's registry entry, for every application without a tab module
of its own: the set upload and its examples, the entry's web knobs (``Knob.web``), a Run button,
the export's pictures in a gallery, the one-line summary and the download. Its API name is the
application's id, its title the entry's title: adding an application adds its tab."""
from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np

from vitdense.apps.registry import App, Inputs
from vitdense.web.controls import Page, knob_component, knob_value
from vitdense.web.errors import ui_errors
from vitdense.web.guard import Done
from vitdense.web.inputs import MAX_SET_IMAGES, MAX_SIDE, descriptor_settings, numbered_stems, prepare_set, \
    set_examples, set_input
from vitdense.web.pool import extract_set
from vitdense.web.zips import write_zip

FIRST_ORDER = 100   # derived tabs come after the tabs with modules of their own


def web_knobs(app: App) -> list[str]:
    """The knobs the tab shows: the entry's run knobs marked ``web``."""
    return [k.name for k in app.knobs if k.web and k.stage == "run"]


def run_app(app: App, images: Any, model: str, layer: Any, facet: Any, stride: Any, load_size: Any, bin: Any,
            *knobs: Any, progress: gr.Progress = gr.Progress()) -> tuple:
    """Extract the set once, run the application from its descriptors, export as the CLI does.

    Returns (gallery of the export's pictures, summary markdown, zip, status)."""
    ims = prepare_set(images, minimum=app.min_images)
    settings = descriptor_settings(model, app.task, layer, facet, stride, load_size, bin)
    values = {name: knob_value(app, name, v, model) for name, v in zip(web_knobs(app), knobs)}
    descs, _ = extract_set(model, ims, {**settings, **app.extract_options}, progress, with_saliency=False)
    result = app.run_descriptors(descs, **values)
    entries = app.export(result, Inputs([im.array for im in ims], [im.name for im in ims]), numbered_stems(ims))
    entries["params.json"] = dict(task=app.task, model=model, **settings, **values, max_side=MAX_SIDE)
    gallery = [(v, name) for name, v in entries.items() if isinstance(v, np.ndarray) and v.ndim == 3]
    summary = app.describe(result)
    return gallery, summary[0].upper() + summary[1:] + ".", write_zip(app.id, entries), Done(summary)


def app_handler(app: App, names: list[str]) -> Any:
    """:func:`run_app` for ``app`` with a signature that names each input (the API's parameter names:
    ``images``, the descriptor settings, then the knobs)."""
    def handler(*args: Any, progress: gr.Progress = gr.Progress()) -> tuple:
        return run_app(app, *args, progress=progress)
    base = inspect.signature(run_app).parameters
    params = [p for n, p in base.items() if n not in ("app", "knobs", "progress")]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]
    handler.__signature__ = inspect.Signature([*params, base["progress"]])
    handler.__name__ = f"run_{app.id}"
    return handler


def build_app_tab(app: App, page: Page) -> None:
    images = set_input(label=f"Images ({app.min_images}-{MAX_SET_IMAGES})")
    set_examples(images)
    names = web_knobs(app)
    controls = [knob_component(app, n, page.default_model) for n in names]
    run_btn = gr.Button(f"Run {app.title.lower()}", variant="primary")
    md = gr.Markdown()
    gallery = gr.Gallery(label=app.title, columns=4, height=320, format="png")
    zip_out = gr.File(height=90, label="Download (the pictures and parameters)")
    handler = ui_errors(app_handler(app, names), heavy=True, tab=app.id)
    page.watch(run_btn.click(handler, [images, *page.descriptor_inputs, *controls], [gallery, md, zip_out],
                             api_name=app.id, concurrency_limit=None))


def app_tab(app: App, order: int) -> SimpleNamespace:
    """A tab module's attributes (``ID``, ``TITLE``, ``APP``, ``ORDER``, ``build``) for ``app``."""
    return SimpleNamespace(ID=app.id, TITLE=app.title, APP=app.id, ORDER=order, __name__=f"{__name__}.{app.id}",
                           build=lambda page: build_app_tab(app, page))

"""PCA tab: the first three principal components of a set's descriptors as RGB."""
from __future__ import annotations

from typing import Any

import gradio as gr

from vitdense import draw
from vitdense.apps import get_app
from vitdense.apps.pca import pca_descriptors
from vitdense.apps.registry import Inputs
from vitdense.features.models import BUNDLED_MODEL
from vitdense.web.controls import Page, endpoint
from vitdense.web.errors import ui_errors
from vitdense.web.inputs import AUTO, MAX_SET_IMAGES, MAX_SIDE, descriptor_settings, numbered_stems, prepare_set, \
    set_examples, set_input
from vitdense.web.pool import extract_set
from vitdense.web.status import Done
from vitdense.web.zips import write_zip

APP = get_app("pca")
ID, TITLE, ORDER = APP.id, APP.title, 50
(RUN_API,) = APP.api_names
N_COMPONENTS = 3      # the page shows components 1-3 as R, G, B


@ui_errors(heavy=True)
def run_pca(images: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO,
            stride: Any = AUTO, load_size: float | None = None, bin: Any = AUTO,
            progress: gr.Progress = gr.Progress()) -> tuple:
    """The first three principal components (computed jointly over the set) as RGB.

    Returns (gallery, explained-variance markdown, zip).
    """
    ims = prepare_set(images, minimum=1)
    settings = descriptor_settings(model, "pca", layer, facet, stride, load_size, bin)
    descs, _ = extract_set(model, ims, settings, progress, with_saliency=False)
    result = pca_descriptors(descs, n_components=N_COMPONENTS)
    rgb = draw.draw_pca(result, order="bilinear")
    ratio = ", ".join(f"{100 * v:.1f}%" for v in result.explained_variance_ratio)
    inputs = Inputs([im.array for im in ims], [im.name for im in ims])
    entries = APP.export(result, inputs, numbered_stems(ims), pictures=rgb, components=False)
    entries["params.json"] = dict(task="pca", model=model, **settings, n_components=N_COMPONENTS,
                                  max_side=MAX_SIDE)
    gallery = [(img, im.name) for img, im in zip(rgb, ims)]
    md = f"Components 1-3 as R, G, B (joint over {len(ims)} images); explained variance {ratio}."
    return gallery, md, write_zip("pca", entries), Done(f"PCA of {len(ims)} images.")


def build(page: Page) -> None:
    images = set_input(label=f"Images (1-{MAX_SET_IMAGES})")
    set_examples(images)
    run_btn = gr.Button("Compute PCA", variant="primary")
    md = gr.Markdown()
    gallery = gr.Gallery(label="First three components as RGB", columns=5, height=300, format="png")
    zip_out = gr.File(height=90, label="Download (PCA images, parameters)")
    endpoint(page, run_btn.click, run_pca, [images, *page.descriptor_inputs], [gallery, md, zip_out],
             api_name=RUN_API)

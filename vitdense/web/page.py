"""The page: the model and the descriptor settings shared by every tab, then one tab per module of
:data:`vitdense.web.tabs.TABS` (a short loop, as Gradio's ``blocks_plug`` / ``all_demos`` demos)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from ..descriptors import FACETS
from ..models import BUNDLED_MODEL
from .controls import Page
from .inputs import ASSETS, AUTO, MAX_SET_IMAGES, MAX_SIDE, MIN_SET_IMAGES
from .pool import ON_ZERO_GPU, POOL, configure, device_note, layer_choices, model_choices, stride_choices, \
    update_model_choices
from .tabs import TABS

INTRO = f"""
# Deep ViT features as dense visual descriptors
Zero-shot correspondences, co-segmentation and part co-segmentation from the descriptors of a
self-supervised Vision Transformer ([Amir, Gandelsman, Bagon, Dekel 2021](https://arxiv.org/abs/2112.05814)),
implemented by `vitdense`. Pick a tab, upload images or click an example,
then press the button. Images are downscaled to {MAX_SIDE} px; sets hold {MIN_SET_IMAGES} to
{MAX_SET_IMAGES} images. Everything you upload stays in your session.
"""


def descriptor_controls(default_model: str) -> list:
    """The Advanced settings every tab shares: layer, facet, stride, log-binning, load size."""
    with gr.Row():
        layer = gr.Dropdown(layer_choices(default_model), value=AUTO, label="Layer",
                            info="Block whose features are used. auto: the task's default (9 for "
                                 "correspondences, 11 for the rest, as the paper).")
        facet = gr.Dropdown([AUTO, *FACETS], value=AUTO, label="Facet",
                            info="auto: key for DINO v1 (paper), token for DINOv2 (its keys mostly "
                                 "encode position).")
        stride = gr.Dropdown(stride_choices(default_model), value=AUTO, label="Stride",
                             info="Patch step in pixels; smaller = denser grid, slower. auto: half the patch.")
        bin_ = gr.Dropdown([AUTO, "on", "off"], value=AUTO, label="Log-binning",
                           info="Adds context from neighbouring patches. auto: on for correspondences "
                                "with DINO v1, off otherwise.")
        load_size = gr.Slider(112, 448, value=224, step=14, label="Load size",
                              info="Smaller image side after resizing, in pixels. Time grows with its square.")
    return [layer, facet, stride, load_size, bin_]


def build_demo(online: bool | None = None) -> gr.Blocks:
    """The page, top to bottom: model and advanced settings, then one tab per application."""
    choices = model_choices(online)
    default_model = choices[0][1]
    with gr.Blocks(title="vitdense: deep ViT features as dense descriptors") as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            model = gr.Dropdown(choices, value=default_model, label="Model", scale=3,
                                info="The bundled DINOv2 ViT-S/14 works offline; DINO v1 models (the "
                                     "paper's) appear when their weights are cached or downloadable.")
            gr.Markdown(device_note())
        with gr.Accordion("Advanced settings (descriptors)", open=False):
            layer, facet, stride, load_size, bin_ = descriptor_controls(default_model)
            gr.Markdown("Each application's own settings are in its tab.")
        model.change(update_model_choices, model, [layer, stride], api_visibility="private")
        page = Page(model, [model, layer, facet, stride, load_size, bin_], default_model)
        with gr.Tabs():
            for tab in TABS:
                if getattr(tab, "available", lambda: True)():
                    with gr.Tab(tab.TITLE, id=tab.ID):
                        tab.build(page)
    return demo


def launch(server_name: str | None = None, server_port: int | None = None, share: bool = False,
           concurrency: int = 1, device: str = "auto", online: bool | None = None,
           preload: bool = True, **kwargs: Any) -> Any:
    """Build and serve the demo (blocks the caller unless ``prevent_thread_lock=True``)."""
    configure(device)
    if preload or ON_ZERO_GPU:  # ZeroGPU: the model must be loaded outside the GPU-wrapped calls
        POOL.get(BUNDLED_MODEL)
    demo = build_demo(online)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    return demo.launch(server_name=server_name, server_port=server_port, share=share,
                       show_error=True, allowed_paths=[str(ASSETS)], theme=gr.themes.Soft(),
                       footer_links=["api", "gradio"], **kwargs)

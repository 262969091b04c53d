"""The page: the model and the descriptor settings shared by every tab, then one tab per module of
:data:`vitdense.web.tabs.TABS` (a short loop, as Gradio's ``blocks_plug`` / ``all_demos`` demos)."""
from __future__ import annotations

from typing import Any

import gradio as gr
import torch

from vitdense.errors import VitdenseError
from vitdense.defaults import TASK_DEFAULTS, task_defaults
from vitdense.features.descriptors import FACETS, DescriptorSettings
from vitdense.features.models import BUNDLED_MODEL, get_spec
from vitdense.web import gate, patches
from vitdense.web.controls import Page
from vitdense.web.inputs import ASSETS, AUTO, LOAD_SIZES, MAX_SET_IMAGES, MAX_SIDE, MIN_SET_IMAGES, choice
from vitdense.web.pool import (
    ON_ZERO_GPU,
    POOL,
    configure,
    device_note,
    layer_choices,
    model_choices,
    stride_choices,
    update_model_choices,
)
from vitdense.web.serving import validate
from vitdense.web.serving.limits import Limits
from vitdense.web.serving.tempfiles import gradio_delete_cache, keep_set
from vitdense.web.state import release_session
from vitdense.web.status import check_upload_value
from vitdense.web.tabs import TABS
from vitdense.web.zips import output_root

INTRO = f"""
# Deep ViT features as dense visual descriptors
Zero-shot correspondences, co-segmentation and part co-segmentation from the descriptors of a
self-supervised Vision Transformer ([Amir, Gandelsman, Bagon, Dekel 2021](https://arxiv.org/abs/2112.05814)),
implemented by `vitdense`. Pick a tab, upload images or click an example,
then press the button. Images are downscaled to {MAX_SIDE} px; sets hold {MIN_SET_IMAGES} to
{MAX_SET_IMAGES} images. Everything you upload stays in your session.
"""


#: the page's own CSS (passed to launch): an error is one sentence in the tab's status line (and a
#: toast), so the outputs keep what they showed instead of a red "Error" badge each; pictures fill
#: their boxes once static/hover.js runs (it sets html.vd-fit and maps clicks back to pixels);
#: gallery thumbnails keep their picture's shape with the caption under it (not over it, not
#: clipped) below the gallery's label, and a gallery is as tall as its rows
PAGE_CSS = """
.wrap:has(> .error) { display: none !important; }
.vitdense-status p:not(:empty) { padding: 4px 8px; border-left: 4px solid var(--color-accent); }
html.vd-fit .image-container button > .image-frame { width: 100%; }
html.vd-fit .image-container button > .image-frame img { width: 100%; height: auto; max-height: 75vh;
  object-fit: contain !important; }
.gallery-item .caption-label { position: static !important; display: block; margin: 2px auto 0;
  max-width: 100%; background: none !important; box-shadow: none !important; text-align: center; }
.gallery-item .thumbnail-item.thumbnail-lg { aspect-ratio: auto !important; height: auto !important;
  overflow: visible !important; }
.gallery-item .thumbnail-item.thumbnail-lg > img { height: auto !important; }
.grid-wrap.fixed-height { height: auto !important; min-height: 0 !important; max-height: 85vh; }
.gallery-container .grid-container.pt-6 { padding-top: 36px !important; }
"""


def layer_defaults(model: str) -> str:
    """The default layer of each task for ``model``, as the Layer control's help says it:
    ``"correspondences 7, cosegmentation 9, ..."`` (from :mod:`vitdense.defaults`)."""
    rows = {task: task_defaults(task, model).get("layer") for task in TASK_DEFAULTS}
    return ", ".join(f"{task} {layer}" for task, layer in rows.items() if layer is not None)


def descriptor_controls(default_model: str) -> list:
    """The Advanced settings every tab shares: layer, facet, stride, log-binning, load size."""
    with gr.Row():
        layer = gr.Dropdown(layer_choices(default_model), value=AUTO, label="Layer",
                            info=f"Block whose features are used. auto: the task's default for the "
                                 f"model ({layer_defaults(default_model)}).")
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
    with gr.Blocks(title="vitdense: deep ViT features as dense descriptors",
                   delete_cache=gradio_delete_cache(gate.JOBS.limits.temp_max_age_s,
                                                    gate.JOBS.limits.temp_every_s)) as demo:
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
        stride.change(update_load_size, [model, stride, load_size], load_size, api_visibility="private")
        page = Page(model, [model, layer, facet, stride, load_size, bin_], default_model, demo=demo)
        with gr.Tabs(overflow_behavior="wrap"):     # every tab at a glance, also on a phone
            for tab in TABS:
                if getattr(tab, "available", lambda: True)():
                    with gr.Tab(tab.TITLE, id=tab.ID):
                        page.tab, page.status = tab.ID, status_line(tab.ID)
                        before = set(demo.blocks)
                        tab.build(page)
                        check_uploads([demo.blocks[i] for i in demo.blocks if i not in before], page)
        demo.unload(release_session)
    offered = tuple(name for _, name in choices)
    patches.check_api_inputs(demo, model, lambda: offered)   # only the page's models over the API
    for block in demo.blocks.values():   # every number / choice reaches our validators as sent
        if isinstance(block, (gr.Number, gr.Slider, gr.Dropdown, gr.Checkbox)):
            patches.raw(block)
    return demo


def status_line(tab: str) -> gr.Markdown:
    """The tab's status line: what went wrong (or what was done), kept until the next action."""
    return gr.Markdown("", elem_id=f"{tab}-status", elem_classes=["vitdense-status"])


def check_uploads(components: list, page: Page) -> None:
    """Each image or video upload of a tab warns at once about a file a run would refuse (not an
    image, too small, too large; a clip too long), in a toast and in the tab's status line."""
    tab = page.tab
    for c in components:
        if (isinstance(c, gr.Image) and c.interactive is not False) or \
                (isinstance(c, gr.Gallery) and c.interactive is True):
            check = validate.check_upload
        elif isinstance(c, gr.Video) and c.interactive is True:
            check = validate.check_video_upload
        else:
            continue
        page.watch(c.upload(lambda value, tab=tab, check=check: check_upload_value(value, tab, check),
                            c, None, api_visibility="private", concurrency_limit=None, show_progress="hidden"))


def update_load_size(model: Any, stride: Any, load_size: Any) -> Any:
    """Stride changed -> the load size slider ends at the largest size the work limit accepts."""
    try:
        spec = get_spec(model)
        s = DescriptorSettings(stride=None if choice(stride) is None else int(stride)).resolve(spec).stride
    except (VitdenseError, TypeError, ValueError):
        return gr.skip()
    top = gate.load_size_bound(spec.patch_size, s, spec.depth, LOAD_SIZES)
    value = load_size if isinstance(load_size, (int, float)) and load_size <= top else min(224, top)
    return patches.raw(gr.Slider(maximum=top, value=value))


def launch(server_name: str | None = None, server_port: int | None = None, share: bool = False,
           concurrency: int = 1, device: str = "auto", online: bool | None = None,
           preload: bool = True, limits: dict | None = None, **kwargs: Any) -> Any:
    """Build and serve the demo (blocks the caller unless ``prevent_thread_lock=True``).

    ``limits``: fields of :class:`vitdense.web.serving.limits.Limits` (session memory, work limits,
    fairness, queue, temporary files), resolved once against the hardware; heavy jobs run
    ``concurrency`` at a time through the job gate, clicks never wait for them."""
    on_gpu = ON_ZERO_GPU or device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    resolved = gate.JOBS.configure(Limits.resolve(cuda=on_gpu, concurrency=concurrency, **(limits or {})))
    patches.atomic_picture_cache()
    configure(device, cache_bytes=resolved.cache_bytes)
    # niced job threads keep clicks fast on a CPU; on a GPU the passes hardly load the CPU
    gate.JobThreads.enabled = not on_gpu
    from gradio.utils import get_upload_folder
    gate.JOBS.start_janitor([output_root(), get_upload_folder()], keep=keep_set(ASSETS))
    if preload or ON_ZERO_GPU:  # ZeroGPU: the model must be loaded outside the GPU-wrapped calls
        POOL.get(BUNDLED_MODEL)
    demo = build_demo(online)
    demo.queue(default_concurrency_limit=None, max_size=resolved.queue_size)
    patches.own_queue_full(demo)
    return demo.launch(server_name=server_name, server_port=server_port, share=share,
                       show_error=True, allowed_paths=[str(ASSETS)], theme=gr.themes.Soft(), css=PAGE_CSS,
                       footer_links=["api", "gradio"], **kwargs)

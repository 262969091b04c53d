"""Video tab: part co-segmentation of a short clip, parts propagated to every frame."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from vitdense.apps import get_app
from vitdense.apps.registry import Inputs
from vitdense.errors import ImageError, ParameterError
from vitdense.features.models import BUNDLED_MODEL, get_spec
from vitdense.web import gate
from vitdense.web.controls import Page, endpoint, knob_components, knob_params, knob_values, run_inputs
from vitdense.web.errors import ui_errors
from vitdense.web.inputs import AUTO, assets, descriptor_settings
from vitdense.web.pool import POOL, run_on_gpu
from vitdense.web.serving import validate
from vitdense.web.serving.workbudget import Job
from vitdense.web.status import Done
from vitdense.web.tabs.parts import legend_html
from vitdense.web.zips import output_folder, write_zip

APP = get_app("video")
ID, TITLE, ORDER = APP.id, APP.title, 60
(RUN_API,) = APP.api_names
MAX_VIDEO_FRAMES = 48      # frames read from a clip (evenly spread over it)
VIDEO_MAX_SIDE = 320       # video frames are downscaled to this longer side


def available() -> bool:
    """Whether the tab can run here (vitdense.apps.video imports: its dependencies are present)."""
    return video_available()


def video_available() -> bool:
    try:
        from vitdense.apps import video  # noqa: F401 - the import is the check
    except Exception:  # noqa: BLE001 - an optional feature: any import failure hides the tab
        return False
    return True


@ui_errors(heavy=True)
@knob_params(APP)
def run_video(clip: Any, model: str = BUNDLED_MODEL, layer: Any = AUTO, facet: Any = AUTO, stride: Any = AUTO,
              load_size: float | None = None, bin: Any = AUTO, knobs: dict | None = None,
              progress: gr.Progress = gr.Progress()) -> tuple:
    """A short clip -> the clip with its parts coloured (``knobs``: the entry's web knobs; the first two,
    ``num_parts`` and ``num_sampled_frames``, come right after the clip). Returns (video path, markdown, zip)."""
    from vitdense.apps.video import read_video, video_parts
    if clip is None:
        raise ParameterError("upload a short video or pick the example first")
    path = clip.get("path") if isinstance(clip, dict) else clip
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError("the upload is not a video file")
    probe = validate.check_video_upload(path)         # an API call skips the upload check
    progress(0.02, desc="Reading the clip")
    step = int(np.ceil(probe.frames / MAX_VIDEO_FRAMES))  # only the kept frames are held in memory
    frames, fps = read_video(path, max_frames=MAX_VIDEO_FRAMES, max_side=VIDEO_MAX_SIDE, step=step)
    if step > 1:
        gr.Warning(f"The clip was subsampled to every {step}th frame ({len(frames)} frames; "
                   f"the demo's limit is {MAX_VIDEO_FRAMES}).")
    settings = descriptor_settings(model, "video", layer, facet, stride, load_size, bin)
    knobs = knob_values(APP, knobs, model)
    progress(0.1, desc=f"Part co-segmentation of {min(knobs['num_sampled_frames'], len(frames))} frames, "
                       f"then labelling {len(frames)} frames")
    spec = get_spec(model)
    sampled = min(knobs["num_sampled_frames"], len(frames))
    gate.admit(Job(app=ID, sizes_wh=(tuple(frames[0].shape[1::-1]),) * sampled, load_size=settings["load_size"],
                   patch=spec.patch_size, stride=settings["stride"], blocks=spec.depth, embed_dim=spec.embed_dim,
                   bin=bool(settings.get("bin"))), progress)
    POOL.get(model)
    result = run_on_gpu(model, video_parts, frames, fps=fps, **settings, **knobs)
    progress(0.85, desc="Drawing and encoding the clip")
    inputs = Inputs(frames, [f"frame_{i}" for i in range(len(frames))], {"fps": fps}, source=Path(path).name)
    entries = APP.export(result, inputs, [], format="mp4")
    entries["params.json"] = dict(task="video", model=model, **settings, **knobs, frames=len(frames), fps=fps)
    out = output_folder("video-") / "parts.mp4"
    out.write_bytes(entries["parts.mp4"])
    k = int(result.num_parts)
    md = (f"<b>{k} parts</b> in {len(frames)} frames (part co-segmentation of "
          f"{len(result.sampled_indices)} sampled frames, labels propagated to every frame).<br>"
          + legend_html(k, []))
    return str(out), md, write_zip("video_parts", entries), Done(f"{k} parts in {len(frames)} frames.")


def build(page: Page) -> None:
    with gr.Row():
        clip = gr.Video(label=f"Clip (short; frames downscaled to {VIDEO_MAX_SIDE} px, at most "
                              f"{MAX_VIDEO_FRAMES} frames)", sources=["upload"], interactive=True)
        out = gr.Video(label="Parts", format="mp4")
    clips = assets("video/*.mp4")
    if clips:
        gr.Examples([[c] for c in clips], [clip], label="Example clip",
                    example_labels=[Path(c).stem.replace("_", " ") for c in clips])
    knobs = knob_components(APP, page.default_model)
    run_btn = gr.Button("Segment parts", variant="primary")
    md = gr.HTML()
    zip_out = gr.File(height=90, label="Download (label maps PNG, clip, parameters)")
    endpoint(page, run_btn.click, run_video, run_inputs(APP, [clip], page, knobs), [out, md, zip_out],
             api_name=RUN_API)

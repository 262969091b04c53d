"""The Gradio web demo: shared pieces in their own modules, one module per tab, a short page.

Layout (docs/ARCHITECTURE.md):

- :mod:`.pool` models shared by every session (``POOL``), the network passes (ZeroGPU-wrapped),
  model-dependent choices (layers, strides);
- :mod:`.errors` ``ui_errors``: one clear line for the visitor, tracebacks only in the server log;
- :mod:`.inputs` upload preparation (``prepare_image`` / ``prepare_set``, limits), the Advanced
  settings -> descriptor settings, upload components, examples;
- :mod:`.state` a tab's ``gr.State`` key into the result store (with a time to live); :mod:`.gate`,
  :mod:`.status`, :mod:`.patches` the job gate, status lines and Gradio patches (docs/ARCHITECTURE.md);
- :mod:`.zips` the files the demo hands out: pictures it shows, downloads (the application's
  export, the CLI's layout, as a zip);
- :mod:`.controls` registry knobs -> Gradio controls and handler values;
- :mod:`.tabs` one module per tab (handlers, session type, ``build``); :mod:`.page` the page.

Handlers are plain functions, unit-tested without a server; the names below are re-exported for
tests and ``app.py``.

Nothing is imported until asked for (``from vitdense.web import build_demo`` imports the page), so
that ``vitdense.web.serving`` (the Gradio-free guards) imports without Gradio.
"""
from __future__ import annotations

import importlib
from typing import Any

#: name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "weights_status": "vitdense.features.models",
    "Page": "vitdense.web.controls",
    "knob_component": "vitdense.web.controls",
    "knob_value": "vitdense.web.controls",
    "GENERIC_ERROR": "vitdense.web.errors",
    "log": "vitdense.web.errors",
    "ui_errors": "vitdense.web.errors",
    "ASSETS": "vitdense.web.inputs",
    "AUTO": "vitdense.web.inputs",
    "MAX_SET_IMAGES": "vitdense.web.inputs",
    "MAX_SIDE": "vitdense.web.inputs",
    "MIN_SET_IMAGES": "vitdense.web.inputs",
    "InputImage": "vitdense.web.inputs",
    "descriptor_settings": "vitdense.web.inputs",
    "example_pairs": "vitdense.web.inputs",
    "example_sets": "vitdense.web.inputs",
    "image_input": "vitdense.web.inputs",
    "prepare_image": "vitdense.web.inputs",
    "prepare_set": "vitdense.web.inputs",
    "INTRO": "vitdense.web.page",
    "build_demo": "vitdense.web.page",
    "launch": "vitdense.web.page",
    "POOL": "vitdense.web.pool",
    "ModelPool": "vitdense.web.pool",
    "configure": "vitdense.web.pool",
    "device_note": "vitdense.web.pool",
    "layer_choices": "vitdense.web.pool",
    "model_choices": "vitdense.web.pool",
    "stride_choices": "vitdense.web.pool",
    "update_model_choices": "vitdense.web.pool",
    "update_stride_choices": "vitdense.web.pool",
    "STATE_TTL_S": "vitdense.web.state",
    "session_state": "vitdense.web.state",
    "TABS": "vitdense.web.tabs",
    "CLICK_COLORS": "vitdense.web.tabs.correspondences",
    "MAX_CLICKS": "vitdense.web.tabs.correspondences",
    "PairSession": "vitdense.web.tabs.correspondences",
    "clear_points": "vitdense.web.tabs.correspondences",
    "correspondences_download": "vitdense.web.tabs.correspondences",
    "parts_download": "vitdense.web.tabs.parts",
    "click_correspondence": "vitdense.web.tabs.correspondences",
    "match_point": "vitdense.web.tabs.correspondences",
    "run_correspondences": "vitdense.web.tabs.correspondences",
    "CosegSession": "vitdense.web.tabs.cosegmentation",
    "coseg_maps": "vitdense.web.tabs.cosegmentation",
    "run_cosegmentation": "vitdense.web.tabs.cosegmentation",
    "PartsSession": "vitdense.web.tabs.parts",
    "click_part": "vitdense.web.tabs.parts",
    "part_display": "vitdense.web.tabs.parts",
    "part_highlight": "vitdense.web.tabs.parts",
    "part_pick_image": "vitdense.web.tabs.parts",
    "part_toggles": "vitdense.web.tabs.parts",
    "part_view": "vitdense.web.tabs.parts",
    "recluster_parts": "vitdense.web.tabs.parts",
    "run_part_cosegmentation": "vitdense.web.tabs.parts",
    "run_pca": "vitdense.web.tabs.pca",
    "SimilaritySession": "vitdense.web.tabs.similarity",
    "click_similarity": "vitdense.web.tabs.similarity",
    "run_similarity": "vitdense.web.tabs.similarity",
    "similarity_point": "vitdense.web.tabs.similarity",
    "MAX_VIDEO_FRAMES": "vitdense.web.tabs.video",
    "VIDEO_MAX_SIDE": "vitdense.web.tabs.video",
    "run_video": "vitdense.web.tabs.video",
    "video_available": "vitdense.web.tabs.video",
    "output_root": "vitdense.web.zips",
    "png_files": "vitdense.web.zips",
    "write_zip": "vitdense.web.zips",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

"""The Gradio web demo: shared pieces in their own modules, one module per tab, a short page.

Layout (docs/ARCHITECTURE.md):

- :mod:`.pool` models shared by every session (``POOL``), the network passes (ZeroGPU-wrapped),
  model-dependent choices (layers, strides);
- :mod:`.errors` ``ui_errors``: one clear line for the visitor, tracebacks only in the server log;
- :mod:`.inputs` upload preparation (``prepare_image`` / ``prepare_set``, limits), the Advanced
  settings -> descriptor settings, upload components, examples;
- :mod:`.sessions` the per-visitor session store (``gr.State`` with a time to live);
- :mod:`.zips` the files the demo hands out: pictures it shows, downloads (the application's
  export, the CLI's layout, as a zip);
- :mod:`.controls` registry knobs -> Gradio controls and handler values;
- :mod:`.tabs` one module per tab (handlers, session type, ``build``); :mod:`.page` the page.

Handlers are plain functions, unit-tested without a server; the names below are re-exported for
tests and ``app.py``.
"""
from __future__ import annotations

from vitdense.features.models import weights_status  # noqa: F401,E402  (the tests check model availability through it)
from vitdense.web.controls import Page, knob_component, knob_value  # noqa: F401
from vitdense.web.errors import GENERIC_ERROR, log, ui_errors  # noqa: F401
from vitdense.web.inputs import (  # noqa: F401
                     ASSETS,
                     AUTO,
                     MAX_SET_IMAGES,
                     MAX_SIDE,
                     MIN_SET_IMAGES,
                     InputImage,
                     descriptor_settings,
                     example_pairs,
                     example_sets,
                     image_input,
                     prepare_image,
                     prepare_set,
)
from vitdense.web.page import INTRO, build_demo, launch  # noqa: F401
from vitdense.web.pool import (  # noqa: F401
                     POOL,
                     ModelPool,
                     configure,
                     device_note,
                     layer_choices,
                     model_choices,
                     stride_choices,
                     update_model_choices,
                     update_stride_choices,
)
from vitdense.web.sessions import STATE_TTL_S, session_state  # noqa: F401
from vitdense.web.tabs import TABS  # noqa: F401
from vitdense.web.tabs.correspondences import (  # noqa: F401
                     CLICK_COLORS,
                     MAX_CLICKS,
                     PairSession,
                     clear_points,
                     click_correspondence,
                     match_point,
                     run_correspondences,
)
from vitdense.web.tabs.cosegmentation import CosegSession, coseg_maps, run_cosegmentation  # noqa: F401
from vitdense.web.tabs.parts import (  # noqa: F401
                     PartsSession,
                     click_part,
                     part_display,
                     part_highlight,
                     part_pick_image,
                     part_toggles,
                     part_view,
                     recluster_parts,
                     run_part_cosegmentation,
)
from vitdense.web.tabs.pca import run_pca  # noqa: F401
from vitdense.web.tabs.similarity import SimilaritySession, click_similarity, run_similarity, similarity_point  # noqa: F401
from vitdense.web.tabs.video import MAX_VIDEO_FRAMES, VIDEO_MAX_SIDE, run_video, video_available  # noqa: F401
from vitdense.web.zips import output_root, png_files, write_zip  # noqa: F401

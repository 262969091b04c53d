"""Default settings of every application, per model family: the one place defaults live.

Configuration as data (in the spirit of timm's ``default_cfgs``): ``TASK_DEFAULTS[task]`` holds the
paper's values (its official code); ``FAMILY_DEFAULTS[(task, family)]`` overrides them for one model
family where a measurement on that family said otherwise (each override names its evidence; the
README's tables give the numbers). ``None`` for ``facet``, ``stride`` or ``bin`` means the model's
own default (:class:`vitdense.features.models.ModelSpec`).

This module is a leaf: it imports nothing from the rest of the package, so the library, the
command line and the web demo can all read it.
"""
from __future__ import annotations

from typing import Any

#: the paper's defaults, per application (descriptor settings and the application's own knobs)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # refine: sub-cell click answers (ours; the paper answered with the best cell's centre)
    # flip: test-time mirroring of image 2 (ours, after GeoAware-SC; vitdense.ops.mirror)
    "correspondences": dict(layer=9, facet=None, stride=None, load_size=224, bin=None,
                            num_pairs=10, thresh=0.05, refine=True, flip=False),
    "cosegmentation": dict(layer=11, facet=None, stride=None, load_size=224, bin=False,
                           elbow=0.975, thresh=0.065, votes_percentage=75, sample_interval=100,
                           refine=True, thresh_mode="absolute", vote_mode="all", fallback=False),
    "parts": dict(layer=11, facet=None, stride=None, load_size=224, bin=False,
                  elbow=0.975, thresh=0.065, votes_percentage=75, sample_interval=100, num_parts=4,
                  crf=True, thresh_mode="absolute", vote_mode="all", fallback=False, balanced_parts=False),
    "similarity": dict(layer=11, facet=None, stride=None, load_size=224, bin=False),
    "pca": dict(layer=11, facet=None, stride=None, load_size=224, bin=False),
    # video: part co-segmentation of sampled frames, so the parts' values (CRF off: every frame)
    "video": dict(layer=11, facet=None, stride=None, load_size=224, bin=False,
                  elbow=0.975, thresh=0.065, votes_percentage=75, sample_interval=100, num_parts=4,
                  crf=False, thresh_mode="absolute", vote_mode="all", fallback=False, balanced_parts=False),
    # thresh: the co-segmentation's saliency threshold (a salient cell votes there)
    "saliency": dict(stride=None, load_size=224, thresh=0.065),
}

#: measured per-family overrides: (task, family) -> {knob: value}
FAMILY_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # bundled DINOv2 ViT-S/14, click answers: chosen on the STUDY half of bench/data/semantic_kp
    # (different instances, hand-placed keypoints) with warped / mirrored photos as guards, among
    # the settings that keep the demo's session memory and the in-page hover within their bounds
    # (issue 20: memory per pair within today's budget; issue 21: <= 2 MB sent per pair, >= 30
    # hovers/s), then reported on its check half (bench/study_defaults.py, 2026-12-04; README
    # "Correspondence defaults"). Layer 7, unbinned, the target also described mirrored and kept
    # mirrored when it fits better by vitdense.ops.mirror.FLIP_MARGIN, refine window of radius 2
    # (vitdense.apps.correspondences): study PCK@0.1 per point 0.365 -> 0.389, @0.05 0.198 ->
    # 0.254; warped @0.05 0.878 -> 0.895, mirrored @0.05 0.442 -> 0.896. Log-binned with mirroring
    # scored higher on the study half (0.452 @0.1, warped 0.910) but its descriptors are 17x
    # wider: 4.3 -> 37 MiB of session memory per pair and a 13 MB, ~15 hovers/s page: not a
    # default (pass bin=True). Binning alone halves mirrored PCK (0.222).
    ("correspondences", "dinov2"): dict(layer=7, flip=True),
    # co-segmentation / parts on DINOv2: bench/bench_coseg_sets.py on the real sets of
    # bench/data/coseg_sets (README "Co-segmentation and parts on real sets"); DINO v1 keeps the paper's
    # values (not measurable here)
    ("cosegmentation", "dinov2"): dict(layer=9, vote_mode="present", fallback=True),
    ("parts", "dinov2"): dict(layer=9, vote_mode="present", fallback=True),
    ("video", "dinov2"): dict(layer=9, vote_mode="present", fallback=True),   # as parts
}


def model_family(model_name: str | None) -> str:
    """``"dino"`` (v1), ``"dinov2"``, ``"dinov3"`` or ``"other"`` from a registry name."""
    name = (model_name or "").lower()
    for family in ("dinov3", "dinov2", "dino"):
        if name.startswith(family):
            return family
    return "other"


def task_defaults(task: str, model_name: str | None = None) -> dict[str, Any]:
    """Every default of ``task`` for ``model_name`` (a fresh dict: callers may change it)."""
    if task not in TASK_DEFAULTS:
        raise KeyError(f"unknown task {task!r}: expected one of {', '.join(TASK_DEFAULTS)}")
    return {**TASK_DEFAULTS[task], **FAMILY_DEFAULTS.get((task, model_family(model_name)), {})}


def family_overrides(task: str, knob: str) -> dict[str, Any]:
    """Each model family's measured value of ``knob`` for ``task`` where it overrides the paper's,
    e.g. ``{"dinov2": 9}`` for the co-segmentation's layer (what ``--help`` shows beside the default)."""
    return {fam: vals[knob] for (t, fam), vals in FAMILY_DEFAULTS.items() if t == task and knob in vals}

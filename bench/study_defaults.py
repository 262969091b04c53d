"""Correspondence defaults study: PCK of click answers for each descriptor / matching setting.

Runs the harness (:func:`vitdense.eval.runner.score_pair`, the demo's click rule) on the two
fixture sets of ``bench/eval_fixtures.py`` (warped photos with exact truth; hand-placed keypoints
on four different feline faces) with the bundled model, changing one setting at a time from the
old default (layer 9, token, stride 7, load 224, no binning, no refinement), then the combination
of the winners. A third set mirrors the warped pairs' targets (the object facing the other way).
Network passes are few and cached on disk (one pass gives layers 5/7/9/11 at
once; binning, layer subsets, upsampling and refinement reuse them), so a rerun takes seconds.

    PYTHONPATH=. python bench/study_defaults.py [--cache DIR] [--device cpu]

Score = mean of PCK@0.05 and PCK@0.1 (per point) over both sets.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_fixtures import felines, left_right_swaps, mirrored, warped  # noqa: E402

from vitdense.eval.runner import pck_summaries, score_pair  # noqa: E402
from vitdense.features.cache import DescriptorCache  # noqa: E402
from vitdense.features.extractor import Extractor, ImageDescriptors, log_bin_tokens  # noqa: E402
from vitdense.features.upsample import upsample_image_descriptors  # noqa: E402

LAYERS = [5, 7, 9, 11]
BASE = dict(layer=(9,), facet="token", stride=7, load_size=224, bin=False, upsample=None, refine=False,
            flip_check=False)
SETS = ("warped", "mirrored", "felines")


def descriptors(ex: Extractor, img: np.ndarray, cfg: dict) -> ImageDescriptors:
    """One image's descriptors for ``cfg`` from a cached 4-layer pass."""
    [d] = ex.extract(img, layer=LAYERS, facet=cfg["facet"], stride=cfg["stride"], load_size=cfg["load_size"])
    D = d.descs.shape[1] // len(LAYERS)
    cols = torch.cat([torch.arange(LAYERS.index(l) * D, (LAYERS.index(l) + 1) * D) for l in cfg["layer"]])
    descs = d.descs[:, cols]
    if cfg["bin"]:
        descs = log_bin_tokens(descs, d.grid)
    out = ImageDescriptors(descs, d.geometry, None, None, dict(d.params, model=ex.model_name))
    if cfg["upsample"]:
        out = upsample_image_descriptors(out, img, cfg["upsample"])
    return out


def flip_check(ex: Extractor, pair, cfg: dict):
    """Test-time flip check: match A against B or against mirrored B, whichever has more best
    buddies; the answers in mirrored B are mapped back (x -> W - x)."""
    from vitdense.apps.correspondences import PointMatcher
    flipped = np.ascontiguousarray(pair.image_b[:, ::-1])
    grid = {**cfg, "upsample": None}
    da = descriptors(ex, pair.image_a, grid)
    n_plain = PointMatcher(da, descriptors(ex, pair.image_b, grid), refine=False).num_best_buddies
    n_flip = PointMatcher(da, descriptors(ex, flipped, grid), refine=False).num_best_buddies
    return n_flip > n_plain, flipped


def score(ex: Extractor, data, p, cfg: dict):
    flip, image_b, points_b = False, p.image_b, p.points_b
    if cfg["flip_check"]:
        flip, flipped = flip_check(ex, p, cfg)
        if flip:
            image_b, points_b = flipped, p.points_b.copy()
            points_b[:, 1] = p.image_b.shape[1] - points_b[:, 1]
    q = dataclasses.replace(p, image_b=image_b, points_b=points_b)
    s = score_pair(q, descriptors(ex, p.image_a, cfg), descriptors(ex, image_b, cfg), data.reference,
                   (0.05, 0.1), cfg["refine"])
    if flip:   # predictions back in B's own frame (PCK is unchanged by the mirror)
        pred = np.asarray(s.predictions, float)
        pred[:, 1] = p.image_b.shape[1] - pred[:, 1]
        s.predictions = pred.tolist()
    return s


def run(ex: Extractor, sets, cfg: dict) -> dict:
    res = {}
    for data in sets:
        scores = [score(ex, data, p, cfg) for p in data.pairs]
        pp, _ = pck_summaries(scores, (0.05, 0.1))
        res[data.dataset] = (pp["0.05"], pp["0.1"])
        if data.dataset == "felines":
            res["lr"] = left_right_swaps(scores, data)
    res["score"] = float(np.mean([v for k, pair in res.items() if k in SETS for v in pair]))
    return res


def label(cfg: dict) -> str:
    diff = [f"{k}={'+'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in cfg.items() if BASE.get(k) != v]
    return ", ".join(diff) or "old default"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "vitdense-study"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ex = Extractor("dinov2_vits14_imgfocus", device=args.device, cache=DescriptorCache(directory=args.cache))
    sets = [warped(), mirrored(), felines()]
    print(", ".join(f"{d.dataset}: {len(d.pairs)} pairs, "
                    f"{sum((np.isfinite(p.points_a).all(1) & np.isfinite(p.points_b).all(1)).sum() for p in d.pairs)} points"
                    for d in sets))
    rows = [
        {}, {"refine": True}, {"layer": (5,)}, {"layer": (7,)}, {"layer": (11,)}, {"layer": (9, 11)},
        {"layer": (5, 9)}, {"facet": "key"}, {"facet": "key", "layer": (11,)}, {"bin": True}, {"stride": 14},
        {"load_size": 336}, {"upsample": "bilinear"}, {"upsample": "jbu"},
        {"flip_check": True},
        # combinations of the one-at-a-time winners
        {"layer": (7,), "refine": True}, {"layer": (7,), "bin": True, "refine": True},
        {"bin": True, "refine": True}, {"bin": True, "refine": True, "flip_check": True},
        {"layer": (7,), "bin": True, "refine": True, "flip_check": True},
        {"layer": (7,), "refine": True, "flip_check": True},
        {"layer": (7,), "refine": True, "upsample": "bilinear"},
        {"layer": (7,), "refine": True, "load_size": 336},
    ]
    print(f"{'setting (change from the old default)':40} " + " ".join(f"{n + '@.05':>12} {n + '@.1':>11}" for n in SETS)
          + f" {'L/R swaps':>9} {'score':>6} {'s':>5}")
    for change in rows:
        cfg = {**BASE, **change}
        t = time.perf_counter()
        r = run(ex, sets, cfg)
        sw, tot = r["lr"]
        print(f"{label(cfg)[:40]:40} " + " ".join(f"{r[n][0]:>12.3f} {r[n][1]:>11.3f}" for n in SETS)
              + f" {f'{sw}/{tot}':>9} {r['score']:>6.3f} {time.perf_counter() - t:>5.0f}", flush=True)


if __name__ == "__main__":
    main()

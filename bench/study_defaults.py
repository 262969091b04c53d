"""Correspondence defaults study: PCK of click answers for each descriptor / matching setting.

Runs the harness (:func:`vitdense.evaluation.score_pair`, the demo's click rule) on the two
fixture sets of ``bench/eval_fixtures.py`` (warped photos with exact truth; hand-placed keypoints
on four different feline faces) with the bundled model, changing one setting at a time from the
old default (layer 9, token, stride 7, load 224, no binning, no refinement), then the combination
of the winners. Network passes are few and cached on disk (one pass gives layers 5/7/9/11 at
once; binning, layer subsets, upsampling and refinement reuse them), so a rerun takes seconds.

    PYTHONPATH=. python bench/study_defaults.py [--cache DIR] [--device cpu]

Score = mean of PCK@0.05 and PCK@0.1 (per point) over both sets.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_fixtures import felines, left_right_swaps, warped  # noqa: E402

from vitdense.cache import DescriptorCache  # noqa: E402
from vitdense.evaluation import _summaries, score_pair  # noqa: E402
from vitdense.extractor import Extractor, ImageDescriptors, log_bin_tokens  # noqa: E402
from vitdense.upsample import upsample_image_descriptors  # noqa: E402

LAYERS = [5, 7, 9, 11]
BASE = dict(layer=(9,), facet="token", stride=7, load_size=224, bin=False, upsample=None, refine=False)


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


def run(ex: Extractor, sets, cfg: dict) -> dict:
    res = {}
    for data in sets:
        scores = []
        for p in data.pairs:
            da, db = descriptors(ex, p.image_a, cfg), descriptors(ex, p.image_b, cfg)
            s = score_pair(p, da, db, data.reference, (0.05, 0.1), cfg["refine"])
            scores.append(s)
        pp, _ = _summaries(scores, (0.05, 0.1))
        res[data.dataset] = (pp["0.05"], pp["0.1"])
        if data.dataset == "felines":
            res["lr"] = left_right_swaps(scores, data)
    res["score"] = float(np.mean([v for k, pair in res.items() if k in ("warped", "felines") for v in pair]))
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
    sets = [warped(), felines()]
    print(f"warped: {len(sets[0].pairs)} pairs, {sum(np.isfinite(p.points_a).all(1).sum() for p in sets[0].pairs)} points; "
          f"felines: {len(sets[1].pairs)} pairs, {sum((np.isfinite(p.points_a).all(1) & np.isfinite(p.points_b).all(1)).sum() for p in sets[1].pairs)} points")
    one_at_a_time = [
        {}, {"refine": True},
        {"layer": (5,)}, {"layer": (7,)}, {"layer": (11,)}, {"layer": (9, 11)}, {"layer": (7, 9, 11)}, {"layer": (5, 9)},
        {"facet": "key"}, {"facet": "key", "layer": (11,)}, {"bin": True}, {"stride": 14},
        {"load_size": 336}, {"load_size": 448},
        {"upsample": "bilinear"}, {"upsample": "jbu"},
    ]
    results = []
    print(f"{'setting':36} {'warped@.05':>10} {'warped@.1':>9} {'felines@.05':>11} {'felines@.1':>10} {'L/R swaps':>9} {'score':>6} {'s':>5}")

    def show(cfg: dict) -> dict:
        t = time.perf_counter()
        r = run(ex, sets, cfg)
        (w5, w1), (f5, f1), (sw, tot) = r["warped"], r["felines"], r["lr"]
        print(f"{label(cfg)[:36]:36} {w5:>10.3f} {w1:>9.3f} {f5:>11.3f} {f1:>10.3f} {f'{sw}/{tot}':>9} {r['score']:>6.3f} "
              f"{time.perf_counter() - t:>5.0f}", flush=True)
        return r

    for change in one_at_a_time:
        cfg = {**BASE, **change}
        results.append((cfg, show(cfg)))
    # combine: per knob, the best value of the one-at-a-time rows that beat the old default
    base_score = results[0][1]["score"]
    best: dict = {}
    for cfg, r in results[1:]:
        key = tuple(sorted(k for k in cfg if cfg[k] != BASE[k]))
        if r["score"] > base_score and (key not in best or r["score"] > best[key][1]):
            best[key] = (cfg, r["score"])
    combined = dict(BASE)
    for key, (cfg, _) in sorted(best.items(), key=lambda kv: -kv[1][1]):
        trial = {**combined, **{k: cfg[k] for k in key}}
        combined = trial
    print("combined winners:")
    final = show(combined)
    for k in ("refine",):
        show({**combined, k: not combined[k]})
    print({k: v for k, v in combined.items()}, final["score"])


if __name__ == "__main__":
    main()

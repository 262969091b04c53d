"""The web demo's click answer at the correspondence defaults: server time and session memory.

Runs the handlers in this process (``vitdense.web``: what the server runs) on assets/pairs/cat_a.jpg
and cat_b.jpg with the app's default settings, then 50 clicks on a lattice over A
(``match_point``: the query, the drawing and the session update), and prints the median and p90
time and the session's bytes in the store (``vitdense.web.serving.sessions.nbytes``). ``--old`` first runs
the previous DINOv2 default (layer 7, unbinned, no mirroring, refine radius 1) for comparison.

    PYTHONPATH=. python bench/bench_click.py [--old]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CAT_A, CAT_B = REPO / "assets/pairs/cat_a.jpg", REPO / "assets/pairs/cat_b.jpg"


def measure(label: str) -> None:
    from PIL import Image
    from vitdense import web
    from vitdense.web.serving.results import nbytes
    from vitdense.web.state import load
    out = web.run_correspondences(str(CAT_A), str(CAT_B), 10)
    key = out[-1]                      # (A, B, heat map, summary, points, zip, session key)
    w, h = Image.open(CAT_A).size
    times = []
    for y in np.linspace(0.1 * h, 0.9 * h, 5):
        for x in np.linspace(0.1 * w, 0.9 * w, 10):
            t = time.perf_counter()
            web.match_point(key, float(x), float(y))
            times.append(time.perf_counter() - t)
    session = load(key, "")
    print(f"{label:44} {1e3 * statistics.median(times):>9.1f} {1e3 * np.percentile(times, 90):>7.1f} "
          f"{nbytes(session) / 2**20:>11.1f}  descriptors {tuple(session.matcher.d2.descs.shape)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", action="store_true", help="also the previous default, first")
    args = ap.parse_args()
    import torch
    from vitdense import defaults, web
    import vitdense.apps.correspondences as corr
    torch.set_num_threads(2)
    web.configure("cpu")
    web.POOL.get("dinov2_vits14_imgfocus")
    print(f"{'setting (50 clicks, cat_a -> cat_b)':44} {'median ms':>9} {'p90 ms':>7} {'session MiB':>11}")
    if args.old:
        new, radius = dict(defaults.FAMILY_DEFAULTS[("correspondences", "dinov2")]), corr.REFINE_RADIUS
        defaults.FAMILY_DEFAULTS[("correspondences", "dinov2")] = dict(layer=7)
        corr.REFINE_RADIUS = 1
        measure("previous default (layer 7)")
        defaults.FAMILY_DEFAULTS[("correspondences", "dinov2")], corr.REFINE_RADIUS = new, radius
    measure("default (" + ", ".join(f"{k}={v}" for k, v in defaults.FAMILY_DEFAULTS[("correspondences", "dinov2")].items()) + ")")


if __name__ == "__main__":
    main()

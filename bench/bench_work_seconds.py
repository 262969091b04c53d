"""Calibration of the work limit in seconds: each application's heavy job, timed, against the
estimate the server refuses with (``vitdense.web.serving.workbudget.estimate_seconds``).

Every job runs the web handler (the path ``app.py`` serves, drawing and zip included) in one warm
process on the CPU, with the descriptor cache emptied before it (a cached image would skip the
network). The time fitted is the process's CPU time / 2 by default (``--target wall``: the wall
time): on this shared machine other processes take the cores, and the CPU time is what the job
would take on an idle 2-vCPU Space (an upper bound where a stage uses one core only, a lower one
where torch's two threads do not overlap perfectly; both columns are printed). Then the seconds
model is fitted by non-negative least squares::

    seconds = k_lin * sum(blocks * T * D^2) + k_att * sum(blocks * T^2 * D)     (the network)
              + k_bin * sum(T * D * 17) [log-binned only]
              + k_app[app] * sum(T) + c                                          (the application)

(T: patches of an image, D: embedding width) and printed as the table of
``workbudget.SECONDS_MODEL`` to paste, with each job's measured and estimated seconds.

    python bench/bench_work_seconds.py            # about 5-8 minutes on the 2-core CPU
    python bench/bench_work_seconds.py --quick    # three jobs: the table's ratio, no fit
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import time

from _common import REPO, machine_line, table

MODEL = "dinov2_vits14_imgfocus"
PAIR = [str(REPO / "assets/pairs/cat_a.jpg"), str(REPO / "assets/pairs/cat_b.jpg")]
CATS = sorted(str(p) for p in (REPO / "assets/cats").glob("*.jpg"))
TEN = CATS + sorted(str(p) for p in (REPO / "assets/cups").glob("*.jpg")) + PAIR[:1]
#: (app, images, load size, stride, log-binning)
BENCH_JOBS = [
    ("correspondences", PAIR, 224, 7, "off"),
    ("correspondences", PAIR, 448, 7, "off"),
    ("correspondences", PAIR, 448, 7, "on"),
    ("correspondences", PAIR, 168, 2, "off"),
    ("similarity", PAIR, 224, 7, "off"),
    ("similarity", PAIR, 448, 7, "on"),
    ("pca", CATS, 224, 7, "off"),
    ("pca", CATS, 448, 7, "off"),
    ("pca", TEN, 448, 7, "off"),
    ("cosegmentation", CATS, 224, 7, "off"),
    ("cosegmentation", CATS, 448, 7, "off"),
    ("parts", CATS, 224, 7, "off"),
    ("parts", CATS, 448, 7, "off"),
    ("transfer", CATS, 224, 7, "off"),
    ("transfer", CATS, 448, 7, "off"),
]
QUICK = [BENCH_JOBS[1], BENCH_JOBS[7], BENCH_JOBS[12]]


THREADS = 2          # the Space's vCPUs


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(app: str, images: list[str], load: int, stride: int, bin_: str) -> None:
    from vitdense import web
    from vitdense.web.tabs.transfer import run_transfer
    knobs = dict(model=MODEL, stride=str(stride), load_size=load, bin=bin_)
    files = [{"image": p} for p in images]
    if app == "correspondences":
        web.run_correspondences(*images, 10, **knobs)
    elif app == "similarity":
        web.run_similarity(*images, **knobs)
    elif app == "pca":
        web.run_pca(files, **knobs)
    elif app == "cosegmentation":
        web.run_cosegmentation(files, **knobs)
    elif app == "parts":
        web.run_part_cosegmentation(files, 4, **knobs)
    else:
        run_transfer(files, 0, **knobs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="three jobs, no fit")
    p.add_argument("--target", choices=["cpu", "wall"], default="cpu",
                   help="fit the wall time, or the process's CPU time / 2 (default: the time the job "
                        "would take on an idle 2-core machine, whatever else runs here)")
    args = p.parse_args()
    import numpy as np
    import torch
    from scipy.optimize import nnls

    from vitdense import web
    from vitdense.web.gate import JOBS
    from vitdense.web.serving import workbudget as wb
    torch.set_num_threads(THREADS)
    web.configure("cpu")
    JOBS.configure(JOBS.limits.replace(max_seconds=math.inf))     # time every job, also above the limit
    web.POOL.get(MODEL)
    run("correspondences", PAIR, 112, 7, "off")        # warm-up (allocator, kernels)
    apps = sorted({j[0] for j in BENCH_JOBS})
    rows, features, seconds = [], [], []
    for app, images, load, stride, bin_ in (QUICK if args.quick else BENCH_JOBS):
        web.POOL.cache.clear()
        t0, c0 = time.perf_counter(), cpu_seconds()
        run(app, images, load, stride, bin_)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        took = cpu / THREADS if args.target == "cpu" else wall
        job = JOBS.last_job                                  # what the server estimated
        est = job.seconds
        f = wb.seconds_features(job.sizes_wh, job.load_size, job.patch, job.stride, job.embed_dim, job.blocks,
                                job.bin)
        features.append([f["linear"], f["attention"], f["binned"]]
                        + [f["tokens"] * (a == app) for a in apps] + [1.0])
        seconds.append(took)
        name = f"{app}, {len(images)} images, load {load}, stride {stride}" + (", binned" if bin_ == "on" else "")
        rows.append([name, f"{wall:.1f}", f"{cpu / THREADS:.1f}", f"{est:.1f}", f"{est / took:.2f}",
                     f"{job.work.units:.2g}"])
        print(name, f"wall {wall:.1f} s, cpu/{THREADS} {cpu / THREADS:.1f} s (estimate {est:.1f} s)",
              file=sys.stderr, flush=True)
    print(f"# heavy jobs through the web handlers (s); {machine_line()}")
    print(table(["job", "wall", f"CPU / {THREADS}", "estimate", f"estimate / {args.target}", "units"], rows))
    if args.quick:
        return
    coef, _ = nnls(np.array(features), np.array(seconds))
    names = ["linear", "attention", "binned"] + [f"tokens:{a}" for a in apps] + ["constant"]
    print("\n# fitted (paste into workbudget.SECONDS_MODEL):")
    for n, c in zip(names, coef):
        print(f"    {n!r}: {c:.3g},")


if __name__ == "__main__":
    main()

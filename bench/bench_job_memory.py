"""Working memory of the demo's heavy jobs, measured, against the estimate the server reserves.

Each job runs the web handler (the path ``app.py`` serves) in a fresh Python process, after one
small warm-up job, with the peak-RSS mark reset just before it (``bench/_common.PeakMemory``).
The table lists, per job: the peak above the process at rest, what stays afterwards in the session
store and in the descriptor cache (both have their own byte budgets), the rest (the job's transient
working memory), and :func:`vitdense.web.serving.workbudget.working_bytes`, the estimate the server reserves
from the memory budget while the job runs. The estimate should cover the transient column.

    python bench/bench_job_memory.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import REPO, PeakMemory, emit, machine_line, run_worker, table

PAIR = [str(REPO / "assets/pairs/cat_a.jpg"), str(REPO / "assets/pairs/cat_b.jpg")]
CATS = sorted(str(p) for p in (REPO / "assets/cats").glob("*.jpg"))
#: name -> (tab, load size, stride ("auto" or a number), log-binning)
JOBS = {
    "correspondences, pair, load 224": ("correspondences", 224, "auto", "off"),
    "correspondences, pair, load 448": ("correspondences", 448, "auto", "off"),
    "correspondences, pair, load 448, binned": ("correspondences", 448, "auto", "on"),
    "correspondences, pair, load 168, stride 2": ("correspondences", 168, "2", "off"),
    "co-segmentation, 5 cats, load 224": ("cosegmentation", 224, "auto", "off"),
    "co-segmentation, 5 cats, load 336": ("cosegmentation", 336, "auto", "off"),
    "parts, 5 cats, load 224": ("parts", 224, "auto", "off"),
    "similarity, pair, load 448, binned": ("similarity", 448, "auto", "on"),
}


def run(tab: str, load_size: int, stride: str, bin_: str) -> object:
    from vitdense import web
    if tab == "correspondences":
        return web.run_correspondences(*PAIR, 10, stride=stride, load_size=load_size, bin=bin_)
    if tab == "similarity":
        return web.run_similarity(*PAIR, stride=stride, load_size=load_size, bin=bin_)
    files = [{"image": p} for p in CATS]
    if tab == "cosegmentation":
        return web.run_cosegmentation(files, stride=stride, load_size=load_size, bin=bin_)
    return web.run_part_cosegmentation(files, 4, stride=stride, load_size=load_size, bin=bin_)


def worker(name: str) -> None:
    import torch

    from vitdense import web
    from vitdense.defaults import task_defaults
    from vitdense.features.models import get_spec
    from vitdense.web import guard
    torch.set_num_threads(2)
    web.configure("cpu")
    web.POOL.get("dinov2_vits14_imgfocus")
    run("correspondences", 112, "auto", "off")                       # warm-up (allocator, kernels)
    tab, load, stride, bin_ = JOBS[name]
    used0, cache0 = guard.STORE.used, web.POOL.cache.num_bytes
    with PeakMemory() as mem:
        run(tab, load, stride, bin_)
    spec = get_spec("dinov2_vits14_imgfocus")
    images = PAIR if tab in ("correspondences", "similarity") else CATS
    if tab == "correspondences" and task_defaults("correspondences", spec.name)["flip"]:
        images = images + images[1:]          # image B is also described mirrored, as the tab admits it
    from PIL import Image

    from vitdense.web.serving.workbudget import working_bytes
    sizes = [Image.open(p).size for p in images]
    s = spec.default_stride if stride == "auto" else int(stride)
    est = working_bytes(sizes, load, spec.patch_size, s, spec.embed_dim, bin_ == "on")
    emit(dict(peak=mem.work_mib, stored=(guard.STORE.used - used0) / 2**20,
              cached=(web.POOL.cache.num_bytes - cache0) / 2**20, estimate=est / 2**20))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    rows = []
    for name in JOBS:
        r = run_worker(Path(__file__), ["--worker", name], timeout=900)
        if "error" in r:
            rows.append([name, r["error"][:80], "", "", "", "", ""])
            continue
        transient = r["peak"] - r["stored"] - r["cached"]
        rows.append([name, f"{r['peak']:.0f}", f"{r['stored']:.0f}", f"{r['cached']:.0f}",
                     f"{transient:.0f}", f"{r['estimate']:.0f}",
                     "yes" if r["estimate"] >= transient else "NO"])
        print(name, r, file=sys.stderr, flush=True)
    print(f"# working memory of heavy jobs (MiB); {machine_line()}")
    print(table(["job", "peak above rest", "in the store", "in the cache", "transient", "estimate",
                 "covered"], rows))


if __name__ == "__main__":
    main()

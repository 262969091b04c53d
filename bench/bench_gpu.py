"""The issue's GPU targets, measured (not tests): DINO ViT-S/8 architecture, random weights.

* one 224-px image at stride 4, log-binned layer-9 keys (extraction + binning): target < 50 ms;
* batched extraction, stride 8, load 224, layer-11 keys: target > 100 images/s;
* correspondences for one pair (what the web demo's handler computes: both images' descriptors,
  best buddies, pair selection): target < 1 s server time;
* part co-segmentation of 10 images end to end, with the dense CRF's share: target < 3 s.

Times are medians of ``--repeats`` runs after a warm-up, CUDA synchronised. ``--dry-run`` runs
each measurement once on tiny inputs (any device) to prove the script works.

Run: ``python bench/bench_gpu.py --device cuda --dtype fp32`` (see bench/README.md, gpu_check.sh).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def median_time(fn: Callable[[], Any], device: str, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        C.sync(device)
        t0 = time.perf_counter()
        fn()
        C.sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64, help="images per batch for the throughput row")
    ap.add_argument("--dry-run", action="store_true", help="tiny inputs, one run each")
    args = ap.parse_args()
    dev, dry = args.device, args.dry_run
    reps = 1 if dry else args.repeats
    load = 64 if dry else 224
    ex = C.random_weights_extractor(device=dev, dtype=args.dtype)
    image = C.bench_image()
    photos = [im for _, im in C.photo_set()]
    rows: list[list[str]] = []

    def row(name: str, value: float, unit: str, target: str, ok: bool) -> None:
        rows.append([name, f"{value:.3g} {unit}", target, "met" if ok else "NOT met"])
        print(f"  {name}: {value:.3g} {unit}", file=sys.stderr, flush=True)

    def guarded(name: str, measure: Callable[[], None]) -> None:
        """One row; a failure (e.g. the CRF library missing) is a row saying so, not a lost table."""
        try:
            measure()
        except Exception as err:  # noqa: BLE001 - reported in the table
            rows.append([name, f"failed: {type(err).__name__}: {str(err).splitlines()[0][:80]}", "-", "-"])

    def one_image() -> None:
        t = median_time(lambda: ex.extract(image, layer=9, facet="key", stride=4, load_size=load,
                                           bin=True), dev, reps)
        row(f"one {load}-px image, stride 4, layer-9 keys log-binned", 1000 * t, "ms", "< 50 ms", t < 0.05)

    n = 4 if dry else args.batch

    def batched() -> None:
        batch = [photos[i % len(photos)].resize((load, load)) for i in range(n)]
        t = median_time(lambda: ex.extract(batch, layer=11, facet="key", stride=8, load_size=load,
                                           batch_size=n), dev, reps)
        row(f"batched extraction, {n} images of {load} px, stride 8", n / t, "images/s",
            "> 100 images/s", n / t > 100)

    def pair() -> None:
        from vitdense.apps.correspondences import find_correspondences
        (_, a), (_, b) = C.image_pair()
        t = median_time(lambda: find_correspondences(ex, a, b, load_size=load), dev, reps)
        row("correspondences, one pair (extraction, best buddies, selection)", t, "s", "< 1 s", t < 1.0)

    guarded("one image, stride 4", one_image)
    guarded("batched extraction", batched)
    guarded("correspondences, one pair", pair)
    guarded("part co-segmentation", lambda: parts(ex, photos, load, dev, reps, dry, row, rows))

    print(f"\n## GPU targets, DINO ViT-S/8 (random weights), {dev}, {args.dtype}"
          f"{' (DRY RUN: tiny inputs)' if dry else ''}\n")
    print(C.machine_line(dev))
    print(f"median of {reps} run(s) after one warm-up\n")
    print(C.table(["measurement", "result", "target", ""], rows))
    if dev.startswith("cuda"):
        print(f"\nGPU peak allocated: {torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB")


def parts(ex: Any, photos: list, load: int, dev: str, reps: int, dry: bool, row: Callable,
          rows: list) -> None:
    """Part co-segmentation end to end, and the dense CRF's share of it."""
    from vitdense.apps import parts as pc
    k = 3 if dry else 10
    crf_time = [0.0]
    real_crf = pc.dense_crf

    def timed_crf(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_crf(*a, **kw)
        finally:
            crf_time[0] += time.perf_counter() - t0

    pc.dense_crf = timed_crf
    try:
        t = median_time(lambda: pc.part_cosegment(ex, photos[:k], load_size=load), dev, reps)
        crf_share = crf_time[0] / max(1, reps + 1)
    finally:
        pc.dense_crf = real_crf
    row(f"part co-segmentation, {k} images end to end", t, "s", "< 3 s", t < 3.0)
    rows.append(["  of which the dense CRF (CPU)", f"{crf_share:.3g} s ({100 * crf_share / t:.0f}%)", "-", "-"])


if __name__ == "__main__":
    main()

"""The applications end to end, per stage: correspondences, co-segmentation, part co-segmentation.

At the paper's defaults (the library's defaults: DINO ViT-S/8 architecture with random weights,
stride 4, load size 224): correspondences between one real pair (skimage's stereo motorcycle, left
and right), co-segmentation and part co-segmentation of 10 real photos (``_common.photo_set``).

Each application runs in a fresh Python process (its peak RSS is its own, libraries and model
included, like the reference's). Stages are timed by wrapping, for the duration of the run, the
functions of the application modules that do each stage (``STAGES`` below; a nested call counts
in the outermost stage only):

* extraction: the network passes (descriptors and saliency);
* best buddies / clustering: mutual nearest neighbours (correspondences), elbow k-means and
  part k-means (co-segmentation, parts);
* selection: picking the pairs (k-means of the best buddies, per-cluster winner), the saliency
  votes, the part unaries;
* refinement: GrabCut (co-segmentation) / dense CRF (parts);
* other: total minus the stages (validation, resizing, result assembly);
* total: the public call (``find_correspondences`` / ``cosegment`` / ``part_cosegment``).

The reference column is the original code's end-to-end time and peak RSS from
``../shared/reference/original-code.md`` (parsed). Targets (issue): correspondences >= 10x
faster end to end, co-segmentation of 10 images >= 5x.

Run: ``python bench/bench_apps.py`` (1.5-3 minutes on the 2-core CPU, by load). See ``bench/README.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402

STAGE_NAMES = ["extraction", "best buddies / clustering", "selection", "refinement"]
# app -> stage -> [(module, function)]: the functions whose time makes the stage
STAGES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "correspondences": {
        "extraction": [("vitdense.apps.correspondences", "extract_pair")],
        "best buddies / clustering": [("vitdense.apps.correspondences", "_mutual_nn")],
        "selection": [("vitdense.apps.correspondences", "_kmeans_labels"),
                      ("vitdense.apps.correspondences", "_pick_per_cluster")],
        "refinement": [],
    },
    "cosegmentation": {
        "extraction": [("vitdense.apps.cosegmentation", "extract_with_saliency")],
        # stage 1 (clusters and votes) lives in vitdense.ops.foreground, shared with the parts
        "best buddies / clustering": [("vitdense.ops.foreground", "elbow_kmeans")],
        "selection": [("vitdense.ops.foreground", "count_votes")],
        "refinement": [("vitdense.apps.cosegmentation", "grabcut_refine"), ("vitdense.apps.cosegmentation", "refine_masks")],
    },
    "part_cosegmentation": {
        "extraction": [("vitdense.apps.parts", "extract_with_saliency"),
                       ("vitdense.apps.parts", "crop_augmentations")],
        "best buddies / clustering": [("vitdense.ops.foreground", "elbow_kmeans"),
                                      ("vitdense.apps.parts", "elbow_kmeans"),
                                      ("vitdense.apps.parts", "kmeans")],
        "selection": [("vitdense.ops.foreground", "count_votes"),
                      ("vitdense.apps.parts", "part_unaries")],
        "refinement": [("vitdense.apps.parts", "dense_crf"),
                       ("vitdense.apps.parts", "smooth_grid_unaries")],
    },
}
APPS = {  # app -> (label, reference-row words that must / must not appear, speed-up target)
    "correspondences": ("correspondences, 1 pair, 10 points", (("correspondences",), ()), 10.0),
    "cosegmentation": ("co-segmentation, 10 images", (("co-segmentation",), ("part",)), 5.0),
    "part_cosegmentation": ("part co-segmentation, 10 images", (("part co-segmentation",), ()), None),
}


class StageTimer:
    """Wraps module functions so that the wall time spent in each stage adds up (outermost only).

    A background thread samples the process's RSS every few milliseconds and keeps the highest
    value seen during each stage (``peak_mib``; "other" for the time outside every stage).
    """

    def __init__(self, device: str, sample_s: float = 0.005) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.peak_mib: dict[str, float] = {}
        self.missing: list[str] = []
        self.called: dict[str, int] = {}  # "module.function" -> calls through that name (nested ones too)
        self._depth = 0
        self._stage = "other"
        self._sample_s = sample_s
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = C.current_rss_mib()
            stage = self._stage
            if rss > self.peak_mib.get(stage, 0.0):
                self.peak_mib[stage] = rss
            self._stop.wait(self._sample_s)

    def _wrap(self, stage: str, fn: Callable, name: str) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.called[name] = self.called.get(name, 0) + 1
            if self._depth:  # inside another timed stage: counted there
                return fn(*args, **kwargs)
            self._depth += 1
            C.sync(self.device)
            self._stage = stage
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                C.sync(self.device)
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
                self.calls[stage] = self.calls.get(stage, 0) + 1
                self._stage = "other"
                self._depth -= 1
        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    @contextlib.contextmanager
    def patch(self, stages: dict[str, list[tuple[str, str]]]) -> Iterator["StageTimer"]:
        saved = []
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            for stage, targets in stages.items():
                self.seconds.setdefault(stage, 0.0)
                for mod_name, attr in targets:
                    mod = importlib.import_module(mod_name)
                    fn = getattr(mod, attr, None)
                    if fn is None:
                        self.missing.append(f"{mod_name}.{attr}")
                        continue
                    saved.append((mod, attr, fn))
                    self.called.setdefault(f"{mod_name}.{attr}", 0)
                    setattr(mod, attr, self._wrap(stage, fn, f"{mod_name}.{attr}"))
            yield self
        finally:
            for mod, attr, fn in reversed(saved):
                setattr(mod, attr, fn)
            self._stop.set()
            sampler.join()


# =============================================================================== the runs
def run_app(app: str, ex, n_images: int) -> tuple[Callable[[], Any], Callable[[Any], str]]:
    """The public call of ``app`` at its defaults, and a one-line summary of its result."""
    if app == "correspondences":
        from vitdense.apps.correspondences import find_correspondences
        (_, im1), (_, im2) = C.image_pair()
        return (lambda: find_correspondences(ex, im1, im2),
                lambda r: f"{len(r)} pairs from {r.num_best_buddies} foreground best buddies "
                          f"({r.num_mutual} mutual); grids {r.grid1}, {r.grid2}")
    images = [im for _, im in C.photo_set()[:n_images]]
    if app == "cosegmentation":
        from vitdense.apps.cosegmentation import cosegment
        return (lambda: cosegment(ex, images),
                lambda r: f"k={getattr(r, 'num_clusters', '?')} clusters, "
                          f"{len(getattr(r, 'salient_clusters', []))} salient; "
                          f"{sum(bool(m.any()) for m in r.masks)}/{len(r.masks)} non-empty masks, "
                          f"{sum(map(bool, r.refined))} refined"
                          + (f"; reason: {r.reason}" if getattr(r, "reason", None) else ""))
    if app == "part_cosegmentation":
        from vitdense.apps.parts import part_cosegment
        return (lambda: part_cosegment(ex, images),
                lambda r: f"{getattr(r, 'num_parts', '?')} parts, "
                          f"CRF {'on' if getattr(r, 'crf_applied', False) else 'off'}; "
                          f"{sum(bool((m > 0).any()) for m in r.part_maps)}/{len(r.part_maps)} images with parts"
                          + (f"; reason: {r.reason}" if getattr(r, "reason", None) else ""))
    raise ValueError(app)


def worker(args: argparse.Namespace) -> None:
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    ex = C.random_weights_extractor(device=args.device, dtype=args.dtype)
    call, summary = run_app(args.app, ex, args.images)
    with C.PeakMemory() as mem:
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        if args.warmup:  # a small image through the same extractor: threads, allocator, kernels
            (_, im), = C.photo_set()[:1]
            ex.extract(im, layer=9, load_size=64, bin=True, saliency=True)
        runs = []
        for _ in range(args.repeats):
            timer = StageTimer(args.device)
            passes = ex.num_forward_calls
            with timer.patch(STAGES[args.app]):
                total, cpu, result = C.timed_cpu(call, args.device)
            text = f"{summary(result)}; {ex.num_forward_calls - passes} batched network pass(es)"
            del result
            runs.append(dict(total=total, cpu=cpu, stages=dict(timer.seconds), calls=dict(timer.calls),
                             stage_peak_mib=dict(timer.peak_mib)))
    best = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]  # the median run, whole
    C.emit(dict(app=args.app, total=best["total"], cpu=best["cpu"], stages=best["stages"], calls=best["calls"],
                stage_peak_mib=best["stage_peak_mib"],
                totals=[r["total"] for r in runs], missing=timer.missing, summary=text,
                not_called=[name for name, n in timer.called.items() if not n],
                threads=torch.get_num_threads(), **mem.as_dict(),
                **({"peak_cuda_mib": torch.cuda.max_memory_allocated() / 2 ** 20}
                   if args.device.startswith("cuda") else {})))


# =============================================================================== driver
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_device_args(p)
    p.add_argument("--repeats", type=int, default=None,
                   help="runs per application (the median run is shown); default 1")
    p.add_argument("--quick", action="store_true", help="1 run, no warm-up")
    p.add_argument("--apps", default=",".join(APPS), help=f"comma-separated subset of {','.join(APPS)}")
    p.add_argument("--images", type=int, default=10, help="images per set (default 10, the reference's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--app", choices=list(APPS), help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available here")
    if not 1 <= args.images <= len(C.photo_set()):
        p.error(f"--images must be in 1..{len(C.photo_set())}")
    args.repeats = args.repeats or 1
    if args.worker:
        return worker(args)

    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        p.error(f"unknown apps {unknown}: choose from {', '.join(APPS)}")
    ref_rows = C.read_reference()
    machine = C.machine_line(args.device)
    print(f"# bench_apps: {machine}", file=sys.stderr)
    t_start = time.perf_counter()
    results = {}
    for app in apps:
        cli = ["--worker", "--app", app, "--device", args.device, "--dtype", args.dtype, "--repeats", str(args.repeats),
               "--images", str(args.images), "--warmup", "0" if args.quick else "1"]
        if args.threads:
            cli += ["--threads", str(args.threads)]
        res = C.run_worker(Path(__file__), cli)
        results[app] = res
        if "error" in res:
            print(f"  ! {app}: {res['error']}", file=sys.stderr)
        else:
            print(f"  {app}: {res['total']:.1f} s, peak RSS {res['peak_rss_mib']:.0f} MiB; {res['summary']}",
                  file=sys.stderr, flush=True)

    print(f"\n## Applications at the paper's defaults, DINO ViT-S/8 (random weights), {args.device}, {args.dtype}\n")
    print(machine)
    print(f"{args.repeats} run(s) per application (median run shown), "
          f"{'no warm-up' if args.quick else 'after a small warm-up'}; a fresh process per application; "
          f"sets of {args.images} images; load size 224, stride 4.\n")
    headers = ["stage (seconds)", *(APPS[a][0] for a in apps)]
    lines = []
    for stage in STAGE_NAMES:
        row = [stage]
        for app in apps:
            res = results[app]
            targets = STAGES[app][stage]
            ok = "stages" in res and targets and res["stages"].get(stage) is not None and \
                not all(f"{m}.{f}" in res.get("missing", []) for m, f in targets)
            row.append(C.fmt(res["stages"][stage], 2) if ok else "-")
        lines.append(row)

    def ref_of(app: str) -> dict:
        must, exclude = APPS[app][1]
        return C.find_reference(ref_rows, *must, exclude=exclude) or {}

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    other = ["other"]
    total = ["**total**"]
    cpu = ["total CPU time (all threads)"]
    ref_t, speed, rss, ref_m, mem_ratio, work = (["reference total"], ["speed-up vs reference"],
                                                 ["peak RSS (MiB)"], ["reference peak RSS (MiB)"],
                                                 ["memory vs reference"], ["peak above setup (MiB)"])
    for app in apps:
        res, ref = results[app], ref_of(app)
        if "total" not in res:
            for r in (other, total, cpu, speed, rss, mem_ratio, work):
                r.append("-")
            ref_t.append(C.fmt(ref.get("seconds"), 0))
            ref_m.append(C.fmt(ref.get("rss_mib"), 0))
            continue
        other.append(C.fmt(res["total"] - sum(res["stages"].values()), 2))
        total.append(f"**{res['total']:.2f}**")
        cpu.append(C.fmt(res.get("cpu"), 1))
        ref_t.append(C.fmt(ref.get("seconds"), 0))
        speed.append(C.fmt(ratio(ref.get("seconds"), res["total"]), 1, "x"))
        rss.append(C.fmt(res["peak_rss_mib"], 0))
        work.append(C.fmt(res["work_mib"], 0))
        ref_m.append(C.fmt(ref.get("rss_mib"), 0))
        mem_ratio.append(C.fmt(ratio(res["peak_rss_mib"], ref.get("rss_mib")), 2))
    extra = []
    if args.device.startswith("cuda"):
        extra = [["GPU peak allocated (MiB)", *(C.fmt(results[a].get("peak_cuda_mib"), 0) for a in apps)]]
    print(C.table(headers, [*lines, other, total, cpu, ref_t, speed, rss, work, ref_m, mem_ratio, *extra]))

    lines = []
    for stage in [*STAGE_NAMES, "other"]:
        lines.append([stage, *(C.fmt(results[a].get("stage_peak_mib", {}).get(stage), 0) for a in apps)])
    print("\nPeak RSS during each stage (MiB, sampled every 5 ms; '-': the stage did not run)\n")
    print(C.table(["stage (MiB)", *(APPS[a][0] for a in apps)], lines))

    print("\nResults: " + "; ".join(f"{APPS[a][0]}: {results[a].get('summary', results[a].get('error'))}"
                                    for a in apps))
    missing = sorted({m for a in apps for m in results[a].get("missing", [])})
    if missing:
        print(f"Stage functions not found (their stage shows '-', their time is in 'other'): "
              f"{', '.join(missing)}")
    idle = sorted({m for a in apps for m in results[a].get("not_called", [])})
    if idle:  # the other device's refinement, a knob that is off, or a name no caller uses any more
        print(f"Stage functions not called in this run: {', '.join(idle)}")
    print("\nTargets (issue), end to end:")
    for app in apps:
        target = APPS[app][2]
        if target is None:
            continue
        sp = ratio(ref_of(app).get("seconds"), results[app].get("total"))
        if sp is None:
            print(f"- {APPS[app][0]} >= {target:.0f}x: not measured")
        else:
            print(f"- {APPS[app][0]} >= {target:.0f}x: {sp:.1f}x -> {'MET' if sp >= target else 'NOT met'}")
    print(f"\n(total bench time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()

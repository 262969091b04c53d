"""The issue's GPU targets, measured (not tests): DINO ViT-S/8 architecture, random weights.

* one 224-px image at stride 4, log-binned layer-9 keys (extraction + binning): target < 50 ms;
* batched extraction, stride 8, load 224, layer-11 keys: target > 100 images/s;
* correspondences for one pair (what the web demo's handler computes: both images' descriptors,
  best buddies, pair selection): target < 1 s server time;
* issue 19: the raw-forward ceiling (timm's ``forward_features`` on a ready device tensor, same model,
  batch and dtype) against ``Extractor.extract`` from PIL images, their ratio (target >= 0.7) and
  the model FLOP utilisation (FLOPs of the forward counted from the architecture, over the GPU's
  dense peak for the dtype); extract-dataset's worker (read + hash, threaded JPEG decode,
  extract, write shards; in-process, no Ray) in images/s; co-segmentation and part co-segmentation
  of 10 images end to end with the refinement ``refiner="auto"`` picks (torch CRF on CUDA), with
  the refinement's and the network's shares: target < 0.6 s each.

Times are medians of ``--repeats`` runs after a warm-up, CUDA synchronised. ``--dry-run`` runs
each measurement once on tiny inputs (any device) to prove the script works.

Run: ``python bench/bench_gpu.py --device cuda --dtype fp32`` (see bench/README.md, gpu_check.sh).
"""
from __future__ import annotations

import argparse
import inspect
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vitdense.features.extractor import Extractor  # noqa: E402


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
    ap.add_argument("--ceiling-batch", type=int, default=256, help="images per batch for the ceiling rows")
    ap.add_argument("--dataset-images", type=int, default=512, help="JPEGs for the extract-dataset row")
    ap.add_argument("--refiner", default="auto", choices=["auto", "cpu", "torch"],
                    help="refinement of the application rows (auto: torch on CUDA, GrabCut / pydensecrf on the CPU)")
    ap.add_argument("--only", default="", help="comma-separated subset: one,batched,pair,ceiling,"
                                              "dataset,apps (default: all)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the table, the top N functions (own time) of one run of each application")
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

    # a step killed by gpu_check.sh's time budget (SIGTERM) still prints the rows it has
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        measure_all(args, guarded, one_image, batched, pair, ex, photos, load, dev, reps, dry, row, rows)
    except KeyboardInterrupt:
        rows.append(["(stopped by the time budget: rows below are missing)", "-", "-", "-"])
    print(f"\n## GPU targets, DINO ViT-S/8 (random weights), {dev}, {args.dtype}"
          f"{' (DRY RUN: tiny inputs)' if dry else ''}\n")
    print(C.machine_line(dev))
    print(f"median of {reps} run(s) after one warm-up\n")
    print(C.table(["measurement", "result", "target", ""], rows))
    if dev.startswith("cuda"):
        print(f"\nGPU peak allocated: {torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB")
    if args.profile:
        for app in ("cosegmentation", "part_cosegmentation"):
            print(profile_application(app, ex, photos[:3 if dry else 10], load, args.refiner, args.profile))


def profile_application(app: str, ex: Any, photos: list, load: int, refiner: str, top: int) -> str:
    """The top ``top`` functions by own time of one run of ``app`` under cProfile (a markdown code
    block): where the "other" time goes. A function's own time includes waiting for the device
    when it synchronises (``.cpu()``, ``.item()``), so host syncs show up too."""
    import cProfile
    import io
    import pstats
    from vitdense.apps import cosegmentation as cs
    from vitdense.apps import parts as pc
    fn = cs.cosegment if app == "cosegmentation" else pc.part_cosegment
    fn(ex, photos, load_size=load, refiner=refiner)  # warm
    prof = cProfile.Profile()
    prof.enable()
    fn(ex, photos, load_size=load, refiner=refiner)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    body = text.getvalue().strip().split("\n")
    start = next((i for i, ln in enumerate(body) if ln.lstrip().startswith("ncalls")), 0)
    return (f"\n### Profile: {app}, {len(photos)} images, one run (cProfile, own time)\n\n```\n"
            + "\n".join(ln.replace(str(C.REPO) + "/", "") for ln in body[start:]) + "\n```")


def measure_all(args: argparse.Namespace, guarded: Callable, one_image: Callable, batched: Callable,
                pair: Callable, ex: Any, photos: list, load: int, dev: str, reps: int, dry: bool,
                row: Callable, rows: list) -> None:
    """The rows ``--only`` asks for, in order."""
    only = set(filter(None, args.only.split(",")))
    want = lambda name: not only or name in only  # noqa: E731
    if want("one"):
        guarded("one image, stride 4", one_image)
    if want("batched"):
        guarded("batched extraction", batched)
    if want("pair"):
        guarded("correspondences, one pair", pair)
    if want("ceiling"):
        guarded("ceiling", lambda: ceiling(ex, photos, 4 if dry else args.ceiling_batch, 224, dev,
                                           args.dtype, reps, row, rows))
    if want("dataset"):
        guarded("extract-dataset", lambda: dataset(photos, 8 if dry else args.dataset_images, load, dev,
                                                   args.dtype, row, rows))
    if want("apps"):
        for app in ("cosegmentation", "part_cosegmentation"):
            guarded(app, lambda app=app: application(app, ex, photos, load, dev, reps, dry, row, rows,
                                                     args.refiner))


#: dense peaks of the GPUs we may be lent (TFLOP/s, no sparsity; fp32 without TF32, torch's
#: default for matmuls), from NVIDIA's data sheets (H100 / H200 SXM)
PEAK_TFLOPS = {"H200": {"fp32": 66.9, "bf16": 989.5, "fp16": 989.5},
               "H100": {"fp32": 66.9, "bf16": 989.5, "fp16": 989.5}}


def peak_tflops(dev: str, dtype: str) -> float | None:
    if not dev.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(dev))
    return next((p[dtype] for gpu, p in PEAK_TFLOPS.items() if gpu in name), None)


def forward_flops(model: Any, x: torch.Tensor) -> int:
    """FLOPs (2 per multiply-add) of one ``forward_features`` over the batch ``x`` (B x 3 x H x W),
    counted from the architecture: patch embedding, and per block the qkv / proj / MLP matmuls and
    attention's two N x N x D products (norms, softmax and GELU left out: under 1%). Counted by
    hand because torch's FlopCounterMode misses attention on some backends (the CPU's)."""
    B, _, H, W = x.shape
    pe = model.patch_embed.proj
    p, D = pe.kernel_size[0], pe.out_channels
    patches = (H // p) * (W // p)
    N = patches + model.num_prefix_tokens
    hidden = model.blocks[0].mlp.fc1.out_features
    per_block = N * D * 3 * D + N * D * D + 2 * N * D * hidden + 2 * N * N * D
    return int(2 * B * (patches * 3 * p * p * D + len(model.blocks) * per_block))


#: ``Extractor.extract``'s default ``batch_size``
DEFAULT_BATCH = inspect.signature(Extractor.extract).parameters["batch_size"].default


def ceiling(ex: Any, photos: list, n: int, load: int, dev: str, dtype: str, reps: int, row: Callable,
            rows: list) -> None:
    """Raw forward on a ready device tensor vs ``Extractor.extract`` from PIL images, side by side
    (``load`` must be the model's own 224: timm's forward_features checks the input size)."""
    x = torch.randn(n, 3, load, load, device=ex.device, dtype=ex.dtype)
    pils = [photos[i % len(photos)].resize((load, load)) for i in range(n)]
    with torch.inference_mode():
        t_raw = median_time(lambda: ex.model.forward_features(x), dev, reps)
    t_ext = median_time(lambda: ex.extract(pils, layer=11, facet="key", stride=8, load_size=load,
                                           batch_size=n), dev, reps)
    flops = forward_flops(ex.model, x)
    rows.append([f"raw forward ceiling: timm forward_features, {n} x {load} px on the device",
                 f"{n / t_raw:.4g} images/s", "-", "-"])
    row(f"Extractor.extract, {n} PIL images of {load} px, layer-11 keys, stride 8", n / t_ext, "images/s",
        ">= 0.7x raw", t_raw / t_ext >= 0.7)
    rows.append(["  ratio extract / raw forward", f"{t_raw / t_ext:.2f}x", ">= 0.7x",
                 "met" if t_raw / t_ext >= 0.7 else "NOT met"])
    # what a caller gets without choosing a batch: the library's default batch_size (8) against the raw
    # forward at 8 and at n (the evidence an automatic batch on CUDA would be sized from)
    d = min(DEFAULT_BATCH, n)
    with torch.inference_mode():
        t_raw_d = median_time(lambda: ex.model.forward_features(x[:d]), dev, reps)
    t_ext_d = median_time(lambda: ex.extract(pils, layer=11, facet="key", stride=8, load_size=load), dev, reps)
    rows.append([f"  Extractor.extract, the same {n} images, batch_size left at its default ({DEFAULT_BATCH})",
                 f"{n / t_ext_d:.4g} images/s ({t_raw / t_ext_d:.2f}x raw at {n}; raw forward at "
                 f"{d}: {d / t_raw_d:.4g} images/s)", "-", "-"])
    big = [photos[i % len(photos)].resize((448, 448)) for i in range(n)]  # resized to 224 x 224 in the path
    for resize, how in (("lanczos", "LANCZOS in worker threads"), ("device", "antialiased bicubic on the device")):
        t_big = median_time(lambda: ex.extract(big, layer=11, facet="key", stride=8, load_size=load,
                                               batch_size=n, resize=resize), dev, reps)
        rows.append([f"  Extractor.extract from 448 x 448 PIL images, resize={resize} ({how})",
                     f"{n / t_big:.4g} images/s ({t_raw / t_big:.2f}x raw)", "-", "-"])
    peak = peak_tflops(dev, dtype)
    achieved = flops / t_raw / 1e12
    util = f", {100 * achieved / peak:.0f}% of the {peak:g} TFLOP/s dense {dtype} peak" if peak else \
        " (peak of this device unknown)"
    rows.append([f"  model FLOP utilisation ({flops / n / 1e9:.2f} GFLOP per image)",
                 f"raw {achieved:.3g} TFLOP/s{util}; extract {flops / t_ext / 1e12:.3g} TFLOP/s", "-", "-"])


def timed_into(spent: dict, name: str, fn: Callable, dev: str, sync_before: bool = True) -> Callable:
    """``fn`` that adds its wall time (the device synchronised at its end, and at its start when
    ``sync_before``) to ``spent[name]``."""
    def timed_fn(*a: Any, **kw: Any) -> Any:
        if sync_before:
            C.sync(dev)
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            C.sync(dev)
            spent[name] += time.perf_counter() - t0
    return timed_fn


def dataset(photos: list, n: int, load: int, dev: str, dtype: str, row: Callable, rows: list) -> None:
    """extract-dataset's worker on a folder of JPEGs: what each Ray actor runs, in this process."""
    import shutil
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from vitdense.scale import jobs as scale
    from vitdense.version import __version__
    folder = Path(tempfile.mkdtemp(prefix="vitdense-bench-ds-"))
    try:
        for i in range(n):
            photos[i % len(photos)].resize((320, 240)).save(folder / f"img_{i:04d}.jpg", quality=92)
        kwargs = dict(layer=11, facet="key", stride=8, load_size=load, bin=False, hierarchy=2,
                      include_cls=False, saliency=True, batch_size=64)
        job = {"params_key": "bench", "params": kwargs, "store": {"store_dtype": "fp16"}, "version": __version__}
        # the actor as Ray makes it, given a random-weights extractor like every row (not pretrained weights)
        worker = scale._ExtractWorker(str(folder / "out"), "bench", {}, kwargs, 0, "fp16", None, job,
                                      extractor=C.random_weights_extractor(device=dev, dtype=dtype))
        rows_in = scale.list_source(folder)
        shard = 128
        stages = {"read + hash": 0.0, "decode": 0.0, "extract": 0.0, "write": 0.0}

        def timed_stage(name: str, fn: Callable) -> Callable:
            return timed_into(stages, name, fn, dev, sync_before=False)  # calls overlap: no sync before

        def run(split: bool) -> None:  # the shards through the actor's concurrent calls, as Ray runs them
            read = timed_stage("read + hash", scale._read_and_hash) if split else scale._read_and_hash
            parts = [{k: np.array([r.get(k) for r in rows_in[s:s + shard]], dtype=object) for k in rows_in[0]}
                     for s in range(0, len(rows_in), shard)]
            with ThreadPoolExecutor(scale.CALLS_PER_WORKER) as calls:
                list(calls.map(lambda part: worker(read(part, frozenset())), parts))
        run(False)  # warm-up
        C.sync(dev)
        t0 = time.perf_counter()
        run(False)
        C.sync(dev)
        t = time.perf_counter() - t0
        # the same once more, each stage timed (synchronised at its end): where the time goes
        plain = scale._decode, scale.write_shard, worker._extract
        scale._decode, scale.write_shard = timed_stage("decode", plain[0]), timed_stage("write", plain[1])
        worker._extract = timed_stage("extract", plain[2])
        try:
            run(True)
        finally:
            scale._decode, scale.write_shard = plain[:2]
            del worker._extract
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # the ceiling for these shapes: the network pass alone on ready device pixels, batch 64
    ex = worker.ex
    H, W, _ = ex._pixel_shape(ex._geometry((320, 240), load, 8), "lanczos")
    x = torch.randint(0, 256, (kwargs["batch_size"], H, W, 3), dtype=torch.uint8, device=ex.device)
    t_net = median_time(lambda: ex.forward(x, [11], "key", 8, saliency=True), dev, 3) * n / kwargs["batch_size"]
    rows.append([f"  network pass alone: Extractor.forward, {n} images of {W} x {H} px on the device",
                 f"{n / t_net:.4g} images/s", "-", "-"])
    row(f"extract-dataset worker: {n} JPEGs of 320 x 240 -> fp16 shards (read, hash, decode, extract, write; "
        f"no Ray: {scale.CALLS_PER_WORKER} calls at once in threads, as Ray runs an actor)", n / t, "images/s",
        ">= 0.7x network", t_net / t >= 0.7)
    rows.append(["  ratio worker / network pass", f"{t_net / t:.2f}x", ">= 0.7x",
                 "met" if t_net / t >= 0.7 else "NOT met"])
    total = sum(stages.values())
    rows.append(["  time in each stage (summed over the calls): " + " / ".join(stages),
                 " / ".join(f"{v / total:.0%}" for v in stages.values()),
                 "-", "-"])


def application(app: str, ex: Any, photos: list, load: int, dev: str, reps: int, dry: bool, row: Callable,
                rows: list, refiner: str = "auto") -> None:
    """Co-segmentation / parts of 10 images end to end (refiner "auto"), network and refinement shares."""
    from vitdense.apps import cosegmentation as cs
    from vitdense.apps import parts as pc
    k = 3 if dry else 10
    targets = {"refinement": [(cs, "grabcut_refine"), (cs, "refine_masks"), (pc, "dense_crf"),
                              (pc, "smooth_grid_unaries")],
               "network": [(cs, "extract_with_saliency"), (pc, "extract_with_saliency")]}
    spent = {name: 0.0 for name in targets}
    saved = []

    def wrap(name: str, fn: Callable) -> Callable:
        return timed_into(spent, name, fn, dev)

    for name, fns in targets.items():
        for mod, attr in fns:
            saved.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, wrap(name, getattr(mod, attr)))
    fn = cs.cosegment if app == "cosegmentation" else pc.part_cosegment
    run = lambda: fn(ex, photos[:k], load_size=load, refiner=refiner)  # noqa: E731
    try:
        t = median_time(run, dev, reps)
    finally:
        for mod, attr, fn in reversed(saved):
            setattr(mod, attr, fn)
    from vitdense.ops.refine import resolve_refiner
    label = "co-segmentation" if app == "cosegmentation" else "part co-segmentation"
    row(f"{label}, {k} images end to end (refiner: {resolve_refiner(refiner, ex.device)})", t, "s", "< 0.6 s",
        t < 0.6)
    share = {name: v / (reps + 1) for name, v in spent.items()}
    rows.append([f"  of which network / refinement / other",
                 " / ".join(f"{v:.3g} s" for v in (share["network"], share["refinement"],
                                                    t - share["network"] - share["refinement"])), "-", "-"])


if __name__ == "__main__":
    main()

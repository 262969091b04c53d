"""Data-set extraction at scale: one process against Ray Data with 1 and 2 workers, the overheads of
Ray start-up and of writing shards, bytes per image per output setting, and the expected throughput
on N GPUs (on paper).

Images: ``--images`` real photographs (skimage's and ``assets/``, cropped to 4:3 and resized to one
size, 320 x 240, so every batch is full), the bundled model (real weights), load size 224, the model's
stride (7: a 31 x 41 grid), layer 11, saliency on, fp32. Rows:

* ``1 process``: ``Extractor.extract`` over all images (model loaded before the clock starts);
* ``write shards``: ``vitdense.scale.store.write_shard`` of those descriptors, ``--shard-size`` per shard;
* ``Ray start-up``: ``ray.init`` (local, no dashboard) to ready, and shutdown;
* ``Ray, k workers``: ``extract_dataset`` end to end (actor start-up and model load included; Ray
  itself already started). No "steady state" figure: Ray Data hands finished shards to the driver
  in bursts, so arrival times in the driver do not time the workers.

Run: ``python bench/bench_scale.py`` (3-6 minutes on the 2-core CPU, by load; ``--images 8`` for a
quick look). Tables go to stdout (markdown), progress to stderr.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

MODEL = "dinov2_vits14_imgfocus"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_images(folder: Path, n: int, size=(320, 240)) -> list[Path]:
    """``n`` distinct real photos of one size: crops at shifting offsets of the source photos."""
    from skimage import data
    sources = [getattr(data, k)() for k in ("chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry")]
    sources += [np.asarray(Image.open(p).convert("RGB")) for p in sorted((C.REPO / "assets").glob("*/*.jpg"))]
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        if src.ndim == 2:
            src = np.stack([src] * 3, -1)
        h, w = src.shape[:2]
        ch, cw = int(min(h, w * 3 / 4) * 0.9), int(min(h, w * 3 / 4) * 0.9 * 4 / 3)
        k = i // len(sources)
        y, x = (k * 7) % max(1, h - ch), (k * 11) % max(1, w - cw)
        img = Image.fromarray(src[y:y + ch, x:x + cw]).resize(size, Image.Resampling.LANCZOS)
        paths.append(folder / f"img_{i:03d}.jpg")
        img.save(paths[-1], quality=92)
    return paths


def single_process(paths: list[Path], kw: dict, threads: int) -> tuple[float, list]:
    from vitdense.features.extractor import Extractor
    torch.set_num_threads(threads)
    ex = Extractor(MODEL, device="cpu")
    ex.extract(paths[:1], **kw)                                   # warm-up
    t = time.perf_counter()
    descs = ex.extract(paths, **kw)
    return time.perf_counter() - t, descs


def decode_time(paths: list[Path], load_size: int) -> float:
    """Seconds per image to read, decode and resize (the CPU side of a GPU worker)."""
    from vitdense.features.extractor import Extractor
    ex = Extractor(MODEL, device="cpu")
    t = time.perf_counter()
    for p in paths:
        ex.preprocess(p, load_size)
    return (time.perf_counter() - t) / len(paths)


def write_bytes(out: Path, descs: list, shard_size: int, store_dtype: str) -> tuple[float, float]:
    """(seconds, bytes per image) of writing ``descs`` as shards + manifest."""
    from vitdense.scale.store import write_shard
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    for s in range(0, len(descs), shard_size):
        chunk = descs[s:s + shard_size]
        write_shard(out, f"bench-{s:05d}", chunk, [{"path": f"img_{s + i}", "hash": str(s + i)}
                                                   for i in range(len(chunk))], [], store_dtype)
    seconds = time.perf_counter() - t
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return seconds, size / len(descs)


def ray_run(folder: Path, out: Path, workers: int, kw: dict, shard_size: int) -> float:
    from vitdense.scale.jobs import extract_dataset
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    s = extract_dataset(folder, out, model=MODEL, device="cpu", **kw, shard_size=shard_size,
                        num_workers=workers, progress=False)
    total = time.perf_counter() - t
    assert s.num_extracted == len(list(folder.iterdir())) and not s.failed
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--shard-size", type=int, default=4)
    ap.add_argument("--load-size", type=int, default=224)
    ap.add_argument("--gpu-seconds-per-image", type=float, default=None,
                    help="measured single-GPU extraction time per image for the on-paper table "
                         "(default: a FLOP estimate, labelled as such)")
    args = ap.parse_args()
    import os
    cores = os.cpu_count() or 1
    kw = dict(layer=11, load_size=args.load_size, saliency=True, batch_size=args.shard_size)
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        folder = tmp / "images"
        folder.mkdir()
        paths = make_images(folder, args.images)
        log(f"{len(paths)} images in {folder}; 1 process ...")
        t1, descs = single_process(paths, kw, threads=cores)
        T, D = descs[0].descs.shape
        rows = [["1 process (Extractor.extract, %d threads)" % cores, C.fmt(t1, 1, " s"),
                 C.fmt(len(paths) / t1, 2), "-"]]
        wt, _ = write_bytes(tmp / "w", descs, args.shard_size, "fp32")
        rows.append([f"write shards ({args.shard_size} images each), fp32", C.fmt(wt, 2, " s"),
                     C.fmt(len(paths) / wt, 0), f"{wt / t1:.1%} of extraction"])

        import ray

        from vitdense.scale.jobs import default_threads
        log("Ray start-up ...")
        t = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        up = time.perf_counter() - t
        results = {}
        try:
            for workers in (1, 2):
                log(f"Ray, {workers} worker(s) ...")
                results[workers] = ray_run(folder, tmp / f"ray{workers}", workers, kw, args.shard_size)
        finally:
            t = time.perf_counter()
            ray.shutdown()
            down = time.perf_counter() - t
        rows.append(["Ray start-up + shutdown (local)", f"{up:.1f} + {down:.1f} s", "-", "once per job"])
        for workers, total in results.items():
            rows.append([f"Ray Data, {workers} worker(s), end to end", C.fmt(total, 1, " s"),
                         C.fmt(len(paths) / total, 2), f"{workers} x {default_threads(workers)} threads"])
        print(f"\n### Data-set extraction, {MODEL}, cpu, {len(paths)} images 320 x 240, load size "
              f"{args.load_size}, grid {descs[0].grid[0]} x {descs[0].grid[1]}, T x D = {T} x {D}\n")
        print(C.machine_line("cpu") + "\n")
        print(C.table(["run", "time", "images/s", "notes"], rows))

        from vitdense.features.extractor import log_bin_tokens
        settings = []
        for name, make, dtype in [
                ("fp32", lambda d: d, "fp32"), ("fp16", lambda d: d, "fp16"),
                ("PCA 64, fp32", lambda d: d[:, :64].contiguous(), "fp32"),
                ("PCA 64, fp16", lambda d: d[:, :64].contiguous(), "fp16"),
                ("log-binned (17 D), fp16", lambda d: log_bin_tokens(d, descs[0].grid), "fp16")]:
            import copy
            variant = []
            for d in descs[:4]:
                v = copy.copy(d)
                v.descs = make(d.descs)
                variant.append(v)
            _, per_image = write_bytes(tmp / "b", variant, 4, dtype)
            settings.append([name, f"{variant[0].descs.shape[1]}", f"{per_image / 1024:.0f} KiB",
                             f"{per_image * 1e6 / 1e12:.2f} TB"])
        print(f"\n### Bytes per image (T = {T} patches, saliency included, manifest included)\n")
        print(C.table(["setting", "D stored", "per image", "per million images"], settings))

        dec = decode_time(paths, args.load_size)
        gflop = 12 * (24 * T * D * D + 4 * T * T * D) / 1e9
        if args.gpu_seconds_per_image:
            tg, source = args.gpu_seconds_per_image, "measured (given)"
        else:
            tg, source = gflop / 20e3, f"estimate: {gflop:.0f} GFLOP per image at 20 TFLOP/s sustained"
        paper = []
        for n in (1, 2, 4, 8, 16):
            gpu = n / tg
            cpu = n * 1 / dec                                      # decode runs in each worker's process
            paper.append([str(n), f"{gpu:.0f}", f"{cpu:.0f}", f"{min(gpu, cpu):.0f}",
                          "GPU" if gpu < cpu else "decode (1 CPU per worker)"])
        print(f"\n### On paper: N GPUs, one worker each (GPU time per image {tg * 1e3:.1f} ms, {source}; "
              f"decode + resize {dec * 1e3:.1f} ms per image on one core of this machine)\n")
        print(C.table(["GPUs", "GPU-bound img/s", "decode-bound img/s", "expected img/s", "limit"], paper))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

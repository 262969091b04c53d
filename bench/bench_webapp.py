"""The web demo's response times on the CPU, from "Run" to the result.

* part co-segmentation of a 10-image set (the 5 photos of assets/cats/ and their mirror images),
  first run (network pass + clustering + CRF + drawing + zip) and "Re-cluster" with another
  number of parts (cached descriptors: no network pass);
* correspondences of assets/pairs/cat_a.jpg and cat_b.jpg, then one click-to-correspond query
  (median of repeated clicks on different points).

Each is measured twice: through the handlers in this process (vitdense.web, what the server
runs), and through ``python app.py`` served on a free loopback port and called with
gradio_client (queue, uploads, image encoding and downloads included). Bundled model
(DINOv2 ViT-S/14, the app's default), CPU, the app's default settings unless --load-size.

Run: ``python bench/bench_web.py`` (about 3-5 minutes on an idle 2-core CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from vitdense.web.local_server import serve_app  # noqa: E402

CATS = sorted((REPO / "assets" / "cats").glob("*.jpg"))
CAT_A, CAT_B = REPO / "assets/pairs/cat_a.jpg", REPO / "assets/pairs/cat_b.jpg"
CLICKS = [(200, 200), (100, 240), (300, 60), (60, 60), (350, 200), (150, 150), (250, 100),
          (320, 240), (30, 200), (380, 20)]


def ten_images(folder: Path) -> list[str]:
    """The 5 cat photos and their mirror images (10 real photographs)."""
    out = []
    for p in CATS:
        out.append(str(p))
        mirrored = folder / f"{p.stem}_mirrored.jpg"
        Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, quality=90)
        out.append(str(mirrored))
    return out


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def bench_handlers(images: list[str], load_size: int) -> list[tuple[str, float, int]]:
    import torch

    from vitdense import web
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    web.configure("cpu")
    t_load, _ = timed(web.POOL.get, "dinov2_vits14_imgfocus")
    rows = [("model load (once per server)", t_load, 1)]
    t, out = timed(web.run_part_cosegmentation, images, 4, load_size=load_size)
    rows.append((f"part co-segmentation, {len(images)} images, first run", t, 1))
    t, _ = timed(web.recluster_parts, out[-1], 5)
    rows.append(("re-cluster into 5 parts (cached descriptors)", t, 1))
    t, out = timed(web.run_correspondences, str(CAT_A), str(CAT_B), 10, load_size=load_size)
    rows.append(("correspondences, 1 pair", t, 1))
    session, times = out[-1], []
    for x, y in CLICKS:
        t, res = timed(web.match_point, session, x, y)
        session = res[-1]
        times.append(t)
    rows.append(("click-to-correspond (median)", statistics.median(times), len(times)))
    return rows


@contextlib.contextmanager
def served_app() -> Iterator[tuple[str, float]]:
    """``python app.py`` on a free port; yields (url, seconds until it answered)."""
    log = Path(tempfile.mkdtemp(prefix="vitdense-bench-")) / "server.log"
    with serve_app(log, "--device", "cpu") as server:
        yield server.url, server.startup_s


def bench_client(images: list[str], load_size: int) -> list[tuple[str, float, int]]:
    from gradio_client import Client, handle_file
    with served_app() as (url, startup):
        rows = [("server start until it answers (model preloaded)", startup, 1)]
        client = Client(url, verbose=False)
        files = [{"image": handle_file(p)} for p in images]
        t, _ = timed(client.predict, files, 4, load_size=load_size, api_name="/parts")
        rows.append((f"part co-segmentation, {len(images)} images, first run", t, 1))
        t, _ = timed(client.predict, 5, api_name="/recluster_parts")
        rows.append(("re-cluster into 5 parts (cached descriptors)", t, 1))
        t, _ = timed(client.predict, handle_file(str(CAT_A)), handle_file(str(CAT_B)), 10,
                     load_size=load_size, api_name="/correspondences")
        rows.append(("correspondences, 1 pair", t, 1))
        times = [timed(client.predict, x, y, api_name="/match_point")[0] for x, y in CLICKS]
        rows.append(("click-to-correspond (median)", statistics.median(times), len(times)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load-size", type=int, default=224, help="the app's Advanced 'Load size'")
    ap.add_argument("--skip-client", action="store_true", help="only the in-process handlers")
    args = ap.parse_args()
    import torch
    print(f"# bench_webapp: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, load size {args.load_size}, bundled model on CPU")
    with tempfile.TemporaryDirectory() as tmp:
        images = ten_images(Path(tmp))
        sections = [("handlers (in process)", bench_handlers(images, args.load_size))]
        if not args.skip_client:
            sections.append(("gradio_client -> python app.py", bench_client(images, args.load_size)))
    print()
    print("| path | measurement | seconds | runs |")
    print("|---|---|---:|---:|")
    for path, rows in sections:
        for name, seconds, runs in rows:
            print(f"| {path} | {name} | {seconds:.3f} | {runs} |")


if __name__ == "__main__":
    main()

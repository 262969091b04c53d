"""Click latency, upsampling time / memory, evaluation throughput (bundled model, CPU by default).

    PYTHONPATH=. python bench/bench_eval.py [--device cpu] [--clicks 60]

Tables:
1. click latency: the library's point query (``PointMatcher.query``: one 1 x D by D x T product
   and the answer), median / p90 over clicks on a 224 load size pair, with and without the
   sub-cell refinement, and on JBU-upsampled descriptors (``match_points`` on per-pixel grids);
2. upsampling one image (bilinear / JBU) at load sizes 224 and 448: time and peak extra memory
   (the process's peak RSS above its level after extraction, each in a fresh process);
3. evaluation throughput: pairs per second of ``evaluate_correspondences`` on the warped fixture
   pairs, network included and from the descriptor cache.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_fixtures import load_photo, warped  # noqa: E402

from vitdense.apps.correspondences import PointMatcher, match_points  # noqa: E402
from vitdense.eval.runner import evaluate_correspondences  # noqa: E402
from vitdense.features.cache import DescriptorCache  # noqa: E402
from vitdense.features.extractor import Extractor  # noqa: E402

MEMORY_CHILD = r"""
import json, sys, time, torch
from vitdense.features.extractor import Extractor
from vitdense.features.upsample import upsample_descriptors
sys.path.insert(0, "bench")
from eval_fixtures import load_photo
torch.set_num_threads(int(sys.argv[4]))
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
img = load_photo("skimage:chelsea")
ex = Extractor("dinov2_vits14_imgfocus", device=sys.argv[3])
[d] = ex.extract(img, layer=9, load_size=int(sys.argv[1]))
base = hwm()
t = time.perf_counter()
up, g = upsample_descriptors(d.descs, d.geometry, img, sys.argv[2])
if up.is_cuda: torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - t, "extra_mib": hwm() - base, "grid": list(d.grid),
                  "pixels": list(g.grid), "out_mib": up.numel() * 4 / 2**20}))
"""


def click_latency(ex: Extractor, clicks: int) -> None:
    a, b = load_photo("skimage:chelsea"), warped().pairs[0].image_b
    d1, d2 = ex.extract([a, b], layer=9, load_size=224)
    m = PointMatcher(d1, d2)
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [a.shape[0] - 1, a.shape[1] - 1], (clicks, 2))
    print(f"1. click latency, load size 224 (grid {d1.grid[0]} x {d1.grid[1]}, D {d1.descs.shape[1]}), {clicks} clicks")
    print(f"{'query':44} {'median ms':>10} {'p90 ms':>8}")
    for name, refine in (("PointMatcher.query, cell centre", False), ("PointMatcher.query, refined (default)", True)):
        m.query(*pts[0], refine=refine)
        times = []
        for y, x in pts:
            t = time.perf_counter()
            m.query(float(y), float(x), refine=refine)
            times.append(time.perf_counter() - t)
        print(f"{name:44} {1e3 * np.median(times):>10.2f} {1e3 * np.percentile(times, 90):>8.2f}")
    u1, u2 = ex.extract([a, b], layer=9, load_size=224, upsample="jbu")
    ua = torch.nn.functional.normalize(u1.descs, dim=1)
    ub = torch.nn.functional.normalize(u2.descs, dim=1)
    times = []
    for y, x in pts:
        t = time.perf_counter()
        match_points(ua, u1.geometry, ub, u2.geometry, [(y, x)], refine=True)
        times.append(time.perf_counter() - t)
    print(f"{f'JBU per-pixel descriptors ({u2.grid[0]} x {u2.grid[1]})':44} {1e3 * np.median(times):>10.2f} "
          f"{1e3 * np.percentile(times, 90):>8.2f}")


def upsampling(device: str) -> None:
    print("\n2. upsampling one image (chelsea 451 x 300), layer 9 token descriptors, D 384")
    print(f"{'load size':>9} {'method':>8} {'grid':>9} {'pixels':>9} {'seconds':>8} {'output MiB':>10} {'peak extra MiB':>14}")
    for load in (224, 448):
        for method in ("bilinear", "jbu"):
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(load), method, device,
                                  str(torch.get_num_threads())], capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": os.getcwd()})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{load:>9} {method:>8} {'x'.join(map(str, r['grid'])):>9} {'x'.join(map(str, r['pixels'])):>9} "
                  f"{r['seconds']:>8.2f} {r['out_mib']:>10.0f} {r['extra_mib']:>14.0f}")


def throughput(device: str) -> None:
    ex = Extractor("dinov2_vits14_imgfocus", device=device, cache=DescriptorCache())
    data = warped()
    print(f"\n3. evaluation throughput ({len(data.pairs)} warped pairs, {sum(len(p.points_a) for p in data.pairs)} keypoints, "
          "load size 224, defaults)")
    print(f"{'run':34} {'seconds':>8} {'pairs/s':>8}")
    for name in ("network + matching", "from the descriptor cache"):
        r = evaluate_correspondences(ex, data)
        print(f"{name:34} {r.seconds:>8.2f} {r.pairs_per_second:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clicks", type=int, default=60)
    args = ap.parse_args()
    ex = Extractor("dinov2_vits14_imgfocus", device=args.device)
    print(f"torch threads {torch.get_num_threads()}, device {args.device}\n")
    click_latency(ex, args.clicks)
    upsampling(args.device)
    throughput(args.device)


if __name__ == "__main__":
    main()

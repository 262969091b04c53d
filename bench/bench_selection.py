"""Correspondence pair selection: scikit-learn k-means (before) against the project's torch k-means
on the descriptors' device (after), on real photo pairs with ground truth.

The selection step clusters the foreground best buddies (the L2-normalised concatenation of the two
descriptors of each pair) into ``num_pairs`` clusters and keeps the most salient pair of each. Both
variants are seeded and run on the same descriptors (the bundled DINOv2 ViT-S/14, real weights).

Pairs (ground truth by construction or measured):

* ``stereo``: scikit-image's Middlebury ``stereo_motorcycle``; left ``(y, x)`` -> right
  ``(y, x - disp)`` (NaN: no ground truth, skipped);
* ``mirror``: chelsea and its mirror image; ``(y, x)`` -> ``(y, W - x)``;
* ``shift``: astronaut and a crop of it shifted by (40, 60) px; ``(y, x)`` -> ``(y - 40, x - 60)``.

Columns: PCK of the chosen pairs at 0.05 and 0.10 of the image's longer side; spread = mean pairwise
distance of the chosen points in image 1 over the image diagonal (higher: better spread) and the
smallest pairwise distance in px, each the mean over 5 seeds; time: the median k-means call.

Run: ``python bench/bench_selection.py [--device cuda]`` (about a minute on the 2-core CPU).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def sklearn_labels(x: torch.Tensor, k: int, n_init, seed: int = 0) -> np.ndarray:
    """The previous selection: scikit-learn KMeans(random_state=seed) on the CPU, one thread."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(x.float().cpu().numpy()).labels_


def torch_labels(x: torch.Tensor, k: int, n_init, seed: int = 0) -> np.ndarray:
    """The selection now (``correspondences._kmeans_labels``) with another seed."""
    from vitdense.apps import correspondences
    real = correspondences.kmeans
    correspondences.kmeans = lambda *a, **kw: real(*a, **{**kw, "seed": seed})
    try:
        return correspondences._kmeans_labels.__wrapped__(x, k, n_init) \
            if hasattr(correspondences._kmeans_labels, "__wrapped__") else AFTER(x, k, n_init)
    finally:
        correspondences.kmeans = real


def pairs():
    from skimage import data
    left, right, disp = data.stereo_motorcycle()
    disp = disp.astype(np.float64)

    def gt_stereo(p):
        y, x = np.clip(p[:, 0].astype(int), 0, disp.shape[0] - 1), np.clip(p[:, 1].astype(int), 0, disp.shape[1] - 1)
        return np.stack([p[:, 0], p[:, 1] - disp[y, x]], axis=1)

    cat = data.chelsea()
    W = cat.shape[1]
    astro = data.astronaut()
    shifted = astro[40:, 60:]
    return [("stereo", left, right, gt_stereo),
            ("mirror", cat, cat[:, ::-1].copy(), lambda p: np.stack([p[:, 0], W - p[:, 1]], axis=1)),
            ("shift", astro, shifted, lambda p: p - np.array([40.0, 60.0]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", default=None, help="bundled weights as a state-dict file (GPU machine)")
    ap.add_argument("--seeds", type=int, default=5, help="k-means seeds per variant (default 5)")
    args = ap.parse_args()
    from vitdense.apps import correspondences as corr
    from vitdense.eval.metrics import pck
    from vitdense.features.extractor import Extractor
    ex = Extractor("dinov2_vits14_imgfocus", device=args.device, checkpoint=args.checkpoint)
    after = corr._kmeans_labels
    global AFTER
    AFTER = after
    print(f"## Pair selection, before (scikit-learn) and after (torch k-means on {args.device})\n")
    print(C.machine_line(args.device))
    print("bundled DINOv2 ViT-S/14, layer 9, stride 7, load 224, 10 pairs, thresh 0.05\n")
    rows = []
    for name, a, b, gt in pairs():
        for binned in (False, True):
            d1, d2 = corr.extract_pair(ex, a, b, bin=binned, facet="key" if binned else None)
            matcher = corr.PointMatcher(d1, d2)
            for label, fn in (("sklearn (CPU)", sklearn_labels), (f"torch ({args.device})", torch_labels)):
                stats, times = [], []
                for seed in range(args.seeds):
                    def timed_fn(x, k, n_init, _fn=fn, _seed=seed):
                        C.sync(args.device)
                        t0 = time.perf_counter()
                        out = _fn(x, k, n_init, _seed)
                        times.append(time.perf_counter() - t0)
                        return out
                    corr._kmeans_labels = timed_fn
                    try:
                        r = corr.find_correspondences_descriptors(d1, d2, matcher=matcher)
                    finally:
                        corr._kmeans_labels = after
                    truth = gt(r.points1)
                    dist = np.linalg.norm(r.points1[:, None] - r.points1[None], axis=-1)
                    iu = np.triu_indices(len(r), 1)
                    stats.append([pck(r.points2, truth, 0.05, reference="image", image_size=b.shape[:2]),
                                  pck(r.points2, truth, 0.10, reference="image", image_size=b.shape[:2]),
                                  dist[iu].mean() / float(np.hypot(*a.shape[:2])), dist[iu].min()])
                m = np.mean(stats, axis=0)
                rows.append([name, "token" if not binned else f"key, binned ({d1.descs.shape[1] * 2}-d)",
                             label, str(r.num_best_buddies), f"{m[0]:.2f}", f"{m[1]:.2f}", f"{m[2]:.3f}",
                             f"{m[3]:.0f}", f"{1000 * float(np.median(times)):.0f}"])
                print("  " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(f"means over seeds 0..{args.seeds - 1} of each k-means; time: median k-means call\n")
    print(C.table(["pair", "descriptors", "k-means", "candidates", "PCK@0.05", "PCK@0.10",
                   "spread (mean dist / diag)", "closest pair (px)", "k-means (ms)"], rows))


if __name__ == "__main__":
    main()

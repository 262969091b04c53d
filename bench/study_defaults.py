"""Correspondence defaults study: click answers (and best-buddy pairs) per setting, chosen on a
STUDY half and reported on a CHECK half.

Sets: the semantic keypoint benchmark ``bench/data/semantic_kp`` (different instances of six
categories, hand-placed named keypoints; ``val`` = study half, ``test`` = check half, split by
image), and two guards from ``bench/eval_fixtures.py`` with exact truth: ``warped`` photos and
``mirrored`` (the warped target also mirrored). Every keypoint is answered as the demo answers a
click: :class:`vitdense.apps.correspondences.PointMatcher` ``.query`` on the pair's descriptors (after
:func:`vitdense.ops.mirror.choose_orientation` when the setting mirrors). Reported: PCK@0.05 / @0.1
per point and per image (pair), per category, left/right swaps (an answer within 0.1 L of the
opposite side's keypoint and nearer to it than to its own; of all keypoints, and of those whose
opposite keypoint is visible in the target), and the CLI's best-buddy pairs: on the semantic
set, the fraction of all best buddies (mutual nearest neighbours) whose source cell lies within
0.05 L of a labelled keypoint that land within 0.1 L of that keypoint's truth; on the warped and
mirrored sets, PCK@0.1 of the 10 pairs ``vitdense correspondences`` prints (exact truth from the
homography).

One 4-layer network pass per image (and its mirror), cached on disk; layer subsets, fusion,
binning, mirroring and refinement reuse it.

    PYTHONPATH=. python bench/study_defaults.py [--half study|check] [--rows default,new] [--cache DIR]

The settings are chosen on ``--half study`` only; ``--half check`` reports the named rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_fixtures import WARPED_SOURCES, load_photo  # noqa: E402

import vitdense.apps.correspondences as corr  # noqa: E402
from vitdense.eval.datasets import KeypointPair, read_spair, warped_pair  # noqa: E402
from vitdense.features.cache import DescriptorCache  # noqa: E402
from vitdense.features.extractor import Extractor, ImageDescriptors, log_bin_tokens  # noqa: E402
from vitdense.features.images import load_image  # noqa: E402
from vitdense.ops.clustering import l2_normalize  # noqa: E402
from vitdense.ops.mirror import FLIP_MARGIN, choose_orientation, mirrored_field  # noqa: E402

ROOT = Path(__file__).resolve().parent / "data" / "semantic_kp"
LAYERS = [5, 7, 9, 11]
OLD = dict(layer=(7,), bin=False, radius=1, flip=False, margin=FLIP_MARGIN, chiral=None, refine=True)
#: the settings compared (changes from today's default, layer 7, refine radius 1)
ROWS = {
    "default": {},
    "layer 9": dict(layer=(9,)), "layer 5": dict(layer=(5,)), "layer 11": dict(layer=(11,)),
    "layers 7+9": dict(layer=(7, 9)), "layers 9+11": dict(layer=(9, 11)), "layers 7+9+11": dict(layer=(7, 9, 11)),
    "binned": dict(bin=True), "layer 9 binned": dict(layer=(9,), bin=True),
    "radius 2": dict(radius=2), "no refine": dict(refine=False),
    "chiral 0.5": dict(chiral=0.5), "chiral 1": dict(chiral=1.0),
    "flip, margin 0": dict(flip=True, margin=0.0), "flip": dict(flip=True),
    "layer 9, flip, radius 2": dict(layer=(9,), flip=True, radius=2),
    "flip, radius 2": dict(flip=True, radius=2),
    "binned, flip, margin 0, radius 2": dict(bin=True, flip=True, margin=0.0, radius=2),
    "binned, flip, margin 0.025, radius 2": dict(bin=True, flip=True, margin=0.025, radius=2),
    "new: binned, flip, radius 2": dict(bin=True, flip=True, radius=2),
}


class Descriptors:
    """Per-image descriptors of a setting from one cached 4-layer pass (and one of the mirror)."""

    def __init__(self, ex: Extractor):
        self.ex = ex

    def base(self, img: np.ndarray, mirrored: bool = False) -> ImageDescriptors:
        x = np.ascontiguousarray(img[:, ::-1]) if mirrored else img
        [d] = self.ex.extract(x, layer=LAYERS, facet="token", stride=7, load_size=224, saliency=True)
        return d

    def get(self, img: np.ndarray, cfg: dict, mirrored: bool = False) -> ImageDescriptors:
        """One layer as the extractor gives it; several normalised and concatenated (fusion);
        log-binned when ``cfg["bin"]`` (as ``Extractor.extract(bin=True)``); with
        ``cfg["chiral"]`` = lam: ``[d + m, lam (d - m)]``, m the mirrored image's descriptor at
        the mirrored position (its antisymmetric half tells left from right)."""
        d = self.base(img, mirrored)
        dim = d.descs.shape[1] // len(LAYERS)
        parts = [d.descs[:, LAYERS.index(la) * dim:(LAYERS.index(la) + 1) * dim] for la in cfg["layer"]]
        x = torch.cat([l2_normalize(p) for p in parts], 1) if len(parts) > 1 else parts[0]  # one layer: as extracted
        x = log_bin_tokens(x, d.grid) if cfg["bin"] else x
        out = dataclasses.replace(d, descs=x, params=dict(d.params, model=self.ex.model_name))
        if cfg["chiral"] is not None and not mirrored:
            m = mirrored_field(self.get(img, {**cfg, "chiral": None}, True), d.geometry).descs
            out = dataclasses.replace(out, descs=torch.cat([l2_normalize(x) + m, cfg["chiral"] * (l2_normalize(x) - m)], 1))
        return out

    def pair(self, a: np.ndarray, b: np.ndarray, cfg: dict) -> tuple[ImageDescriptors, ImageDescriptors]:
        da, db = self.get(a, cfg), self.get(b, cfg)
        if cfg["flip"]:
            db, _ = choose_orientation(da, db, self.get(b, cfg, True), cfg["margin"])
        return da, db


def opposite(name: str) -> str:
    """``left_eye`` <-> ``right_eye``; other names map to themselves."""
    return name.replace("left_", "\0").replace("right_", "left_").replace("\0", "right_")


def semantic_names() -> dict[str, dict[str, tuple[float, float]]]:
    """image file name -> {keypoint name: (y, x)} of every visible keypoint."""
    out = {}
    for f in (ROOT / "ImageAnnotation").glob("*/*.json"):
        a = json.loads(f.read_text())
        out[a["filename"]] = {a["kps_names"][int(k)]: (v[1], v[0]) for k, v in a["kps"].items() if v is not None}
    return out


def score_set(desc: Descriptors, pairs: list[KeypointPair], cfg: dict, reference: str,
              names: dict | None, split: str | None, truth_h: dict | None) -> dict:
    """Click answers and best-buddy pairs of every pair of one set under ``cfg``."""
    corr.REFINE_RADIUS = cfg["radius"]
    rows, bb_ok, bb_n = [], 0, 0
    for p in pairs:
        a, b = np.asarray(load_image(p.image_a)), np.asarray(load_image(p.image_b))
        da, db = desc.pair(a, b, cfg)
        m = corr.PointMatcher(da, db, refine=cfg["refine"])
        L = max(p.bbox_b[2] - p.bbox_b[0], p.bbox_b[3] - p.bbox_b[1]) if reference == "bbox" else max(b.shape[:2])
        if names is not None:
            ann = json.loads((ROOT / "PairAnnotation" / split / f"{p.name}.json").read_text())
            kp_names, target = ann["kps_names"], names[Path(p.image_b).name]
        for k, ((y, x), truth) in enumerate(zip(p.points_a, p.points_b)):
            ans = np.array(m.query(float(y), float(x)).point)
            err = np.linalg.norm(ans - truth)
            counted = swapped = 0
            if names is not None and opposite(kp_names[k]) in target and opposite(kp_names[k]) != kp_names[k]:
                other = np.linalg.norm(ans - np.array(target[opposite(kp_names[k])]))
                counted, swapped = 1, int(other < err and other <= 0.1 * L)
            rows.append((p.name, p.category, err <= 0.05 * L, err <= 0.1 * L, counted, swapped))
        # the CLI's best-buddy pairs
        if names is not None:
            la = max(p.bbox_a[2] - p.bbox_a[0], p.bbox_a[3] - p.bbox_a[1])
            i1, i2 = m.best_buddy_pairs()
            p1 = np.asarray(da.geometry.cell_centers()).reshape(-1, 2)[i1]
            p2 = np.asarray(db.geometry.cell_centers()).reshape(-1, 2)[i2]
            near = np.linalg.norm(p1[:, None] - p.points_a[None], axis=2)                # B x K
            k = near.argmin(1)
            use = near[np.arange(len(k)), k] <= 0.05 * la
            bb_n += int(use.sum())
            bb_ok += int((np.linalg.norm(p2[use] - p.points_b[k[use]], axis=1) <= 0.1 * L).sum())
        else:
            c = corr.find_correspondences_descriptors(da, db, num_pairs=10, thresh=0.05, matcher=m)
            h, mirrored = truth_h[p.name]
            pts = np.concatenate([c.points1[:, ::-1], np.ones((len(c), 1))], 1) @ h.T
            true2 = (pts[:, :2] / pts[:, 2:])[:, ::-1]
            if mirrored:
                true2[:, 1] = b.shape[1] - true2[:, 1]
            err = np.linalg.norm(c.points2 - true2, axis=1)
            bb_ok += int((err <= 0.1 * L).sum())
            bb_n += len(c)
    r = np.array([row[2:] for row in rows], float)
    per_pair = {}
    for row in rows:
        per_pair.setdefault(row[0], []).append(row[2:4])
    cats = {}
    for row in rows:
        cats.setdefault(row[1], []).append(row[3])
    return dict(pp=(r[:, 0].mean(), r[:, 1].mean()), pi=tuple(np.mean([np.mean(v, 0) for v in per_pair.values()], 0)),
                swaps=int(r[:, 3].sum()), swap_of=int(r[:, 2].sum()), n=len(r), pairs=len(per_pair),
                cats={c: float(np.mean(v)) for c, v in sorted(cats.items())}, bb=bb_ok / max(bb_n, 1), bb_n=bb_n)


def guard_sets() -> dict[str, tuple[list[KeypointPair], dict]]:
    """The warped and mirrored pairs with their homographies (exact truth for best buddies)."""
    warped, mirrored, hs = [], [], {}
    for i, src in enumerate(WARPED_SOURCES):
        img = load_photo(src)
        out, h, pa, pb = warped_pair(img, seed=i, grid=12)
        name = src.split(":")[1].split("/")[-1].split(".")[0]
        warped.append(KeypointPair(name, "warped", img, out, pa, pb))
        pbm = pb.copy()
        pbm[:, 1] = out.shape[1] - pbm[:, 1]
        mirrored.append(KeypointPair(name + "-m", "mirrored", img, np.ascontiguousarray(out[:, ::-1]), pa, pbm))
        hs[name], hs[name + "-m"] = (h, False), (h, True)
    return {"warped": (warped, hs), "mirrored": (mirrored, hs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--half", choices=["study", "check"], default="study")
    ap.add_argument("--rows", default=None, help="';'-separated row names (default: all on study, "
                    "'default' and the new default on check)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "vitdense-study"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    split = {"study": "val", "check": "test"}[args.half]
    rows = args.rows.split(";") if args.rows else (list(ROWS) if args.half == "study" else
                                                   ["default", "new: binned, flip, radius 2"])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    desc = Descriptors(Extractor("dinov2_vits14_imgfocus", device=args.device,
                                 cache=DescriptorCache(1 << 30, directory=args.cache)))
    sem = read_spair(ROOT, split)
    names = semantic_names()
    guards = guard_sets()
    print(f"{args.half} half (split {split}): {len(sem.pairs)} pairs, "
          f"{sum(len(p.points_a) for p in sem.pairs)} keypoints; guards: warped / mirrored, "
          f"{len(guards['warped'][0])} pairs each, {sum(len(p.points_a) for p in guards['warped'][0])} points")
    head = (f"{'setting':38} {'pt@.05':>6} {'pt@.1':>6} {'im@.05':>6} {'im@.1':>6} {'L/R swaps':>10} {'BB':>5} | "
            f"{'warp@.05':>8} {'@.1':>5} {'BB@.1':>5} | {'mirr@.05':>8} {'@.1':>5} {'BB@.1':>5} | per category @.1 | s")
    print(head)
    for name in rows:
        cfg = {**OLD, **ROWS[name]}
        t = time.perf_counter()
        s = score_set(desc, sem.pairs, cfg, "bbox", names, split, None)
        g = {k: score_set(desc, pairs, cfg, "image", None, None, hs) for k, (pairs, hs) in guards.items()}
        cats = " ".join(f"{c}={v:.2f}" for c, v in s["cats"].items())
        print(f"{name[:38]:38} {s['pp'][0]:>6.3f} {s['pp'][1]:>6.3f} {s['pi'][0]:>6.3f} {s['pi'][1]:>6.3f} "
              f"{s['swaps']:>3}/{s['swap_of']:<2}={s['swaps'] / s['n']:.2f} {s['bb']:>5.2f} | "
              + " | ".join(f"{g[k]['pp'][0]:>8.3f} {g[k]['pp'][1]:>5.3f} {g[k]['bb']:>5.2f}" for k in g)
              + f" | {cats} | {time.perf_counter() - t:.0f}", flush=True)


if __name__ == "__main__":
    main()

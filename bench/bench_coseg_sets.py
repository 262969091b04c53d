"""Co-segmentation and part co-segmentation on the real evaluation sets of ``bench/data/coseg_sets``.

Prints, per set and configuration, the Jaccard of every image against its hand-drawn mask, the
mean, the number of empty masks where an object is present (and non-empty masks on outlier
images), and for part co-segmentation NMI / ARI against the hand-drawn head / body labels (over the
ground-truth object pixels). Descriptors are cached on disk (``--cache-dir``), so a sweep over
clustering knobs runs the network once per image and descriptor setting.

    python bench/bench_coseg_sets.py                       # before/after table (the defaults)
    python bench/bench_coseg_sets.py --config thresh=0.1   # a row per --config (key=value,...) beside the defaults
    python bench/bench_coseg_sets.py --per-image           # every image's Jaccard
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

DATA = REPO / "bench" / "data" / "coseg_sets"
DESC_KEYS = ("layer", "facet", "bin", "load_size", "stride")
PARTS_ONLY = ("num_parts", "balanced_parts", "crf", "three_stages")
#: the defaults before this benchmark existed (the paper's knobs; the model's default facet, token)
BEFORE = dict(layer=11, facet="token", elbow=0.975, thresh=0.065, votes_percentage=75, sample_interval=100,
              refine=True, thresh_mode="absolute", vote_mode="all", fallback=False)


def read_set(d: Path) -> tuple[list[str], list[Image.Image], list[np.ndarray], list[np.ndarray | None]]:
    """(stems, RGB images, H x W bool masks, part label maps or None) of one set folder."""
    stems, imgs, masks, parts = [], [], [], []
    for p in sorted((d / "images").iterdir()):
        m = d / "masks" / f"{p.stem}.png"
        if not m.exists():
            print(f"  {d.name}/{p.name}: no mask, not scored")
            continue
        stems.append(p.stem)
        imgs.append(Image.open(p).convert("RGB"))
        masks.append(np.asarray(Image.open(m)) > 0)
        pp = d / "parts" / f"{p.stem}.png"
        parts.append(np.asarray(Image.open(pp)) if pp.exists() else None)
    return stems, imgs, masks, parts


def descriptors(ex, imgs, cfg: dict, task: str = "cosegmentation"):
    """Descriptors (with saliency) of ``imgs`` for the descriptor keys of ``cfg`` (cached by ``ex``); keys
    not in ``cfg`` take the task's defaults for the model."""
    from vitdense.defaults import task_defaults
    table = task_defaults(task, ex.model_name)
    kw = {k: cfg.get(k, table.get(k)) for k in DESC_KEYS}
    return ex.extract(imgs, saliency=True, **kw)


def score_coseg(masks_pred, masks_gt) -> dict:
    from vitdense.eval.metrics import jaccard
    jac = [jaccard(p, g) for p, g in zip(masks_pred, masks_gt)]
    obj = [bool(g.any()) for g in masks_gt]
    return dict(jac=jac, mean=float(np.mean([j for j, o in zip(jac, obj) if o])),
                empty=sum(1 for p, o in zip(masks_pred, obj) if o and not p.any()),
                outlier_fg=sum(1 for p, o in zip(masks_pred, obj) if not o and p.any()))


def score_parts(maps, parts_gt) -> dict:
    from vitdense.eval.metrics import ari, nmi
    ns, as_ = [], []
    for m, g in zip(maps, parts_gt):
        if g is None or not (g > 0).any() or len(np.unique(g[g > 0])) < 2:
            continue
        ns.append(nmi(m, g, mask=g > 0))
        as_.append(ari(m, g, mask=g > 0))
    return dict(nmi=float(np.mean(ns)) if ns else float("nan"), ari=float(np.mean(as_)) if as_ else float("nan"))


def run_coseg(ex, imgs, cfg: dict):
    from vitdense.apps.cosegmentation import cosegment_descriptors
    descs = descriptors(ex, imgs, cfg)
    knobs = {k: v for k, v in cfg.items() if k not in DESC_KEYS and k not in PARTS_ONLY}
    return cosegment_descriptors(descs, None, imgs, **knobs)


def run_parts(ex, imgs, cfg: dict):
    from vitdense.apps.parts import part_cosegment_descriptors
    descs = descriptors(ex, imgs, cfg, "parts")
    knobs = {k: v for k, v in cfg.items() if k not in DESC_KEYS and k not in ("refine",)}
    return part_cosegment_descriptors(descs, None, imgs, **knobs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sets", nargs="*", default=None, help="set names (default: all)")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/vitdense_coseg_cache"))
    ap.add_argument("--model", default="dinov2_vits14_imgfocus")
    ap.add_argument("--per-image", action="store_true")
    ap.add_argument("--parts", action="store_true", help="also part co-segmentation (NMI / ARI)")
    ap.add_argument("--config", action="append", default=[],
                    help="extra configuration as key=value,key=value (python literals), named by itself")
    args = ap.parse_args(argv)

    from vitdense.features.cache import DescriptorCache
    from vitdense.features.extractor import Extractor
    ex = Extractor(args.model, device="cpu", cache=DescriptorCache(directory=args.cache_dir))
    configs = {"before (paper)": dict(BEFORE), "defaults": {}, **{c: _parse(c) for c in args.config}}
    sets = [d for d in sorted(args.data.iterdir()) if d.is_dir() and (args.sets is None or d.name in args.sets)]
    rows = []
    for d in sets:
        stems, imgs, masks, parts = read_set(d)
        for name, cfg in configs.items():
            t = time.perf_counter()
            res = run_coseg(ex, imgs, cfg)
            s = score_coseg(res.masks, masks)
            row = [d.name, name, f"{s['mean']:.3f}", str(s["empty"]), str(s["outlier_fg"])]
            if args.parts:
                pres = run_parts(ex, imgs, cfg)
                ps = score_parts(pres.part_maps, parts)
                row += [f"{ps['nmi']:.3f}", f"{ps['ari']:.3f}"]
            row.append(f"{time.perf_counter() - t:.1f}")
            rows.append(row)
            print("  " + " | ".join(row), file=sys.stderr, flush=True)
            if args.per_image:
                print(f"{d.name} [{name}] " + "  ".join(f"{st}={j:.2f}" for st, j in zip(stems, s["jac"])), flush=True)
    head = ["set", "config", "mean J", "empty", "outlier fg"] + (["NMI", "ARI"] if args.parts else []) + ["s"]
    print(table(head, rows))
    return 0


def _parse(spec: str) -> dict:
    import ast
    import re
    out = {}
    for part in re.split(r",(?![^\[]*\])", spec):  # commas inside [..] belong to a list
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def table(head, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


if __name__ == "__main__":
    raise SystemExit(main())

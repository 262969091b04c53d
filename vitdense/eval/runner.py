"""Running evaluations: PCK of keypoint transfer, Jaccard / precision / NMI / ARI on sets.

Correspondences are scored the way the demo answers a click (:func:`vitdense.apps.correspondences.
match_points`: nearest descriptor, refined to sub-cell precision by default), in original-image
pixels. PCK@alpha counts a transferred keypoint correct when it lies within ``alpha * L`` of the
truth, with ``L`` the longer side of the target's bounding box (SPair-71k) or of the target image
(PF-PASCAL). Papers average it two ways, and both are reported:

* **per point**: correct keypoints / all keypoints of the data set (each keypoint weighs the same);
* **per image**: the mean over pairs of each pair's PCK (each pair weighs the same).

``swapped`` counts wrong answers that land within ``alpha * L`` of *another* keypoint of the
target (left/right eye, front/back wheel): the confusion of symmetric parts.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vitdense.errors import ParameterError, VitdenseError
from vitdense.eval.datasets import EvalSet, KeypointPair, PairSet, read_label_map

__all__ = [
    "ALPHAS", "PairScore", "CorrespondenceReport", "SetScore", "SegmentationReport",
    "score_pair", "pck_summaries", "evaluate_correspondences", "evaluate_segmentation", "format_table",
    "write_report", "run_evaluate",
]

ALPHAS = (0.05, 0.1, 0.15)


@dataclass
class PairScore:
    """One pair's result: ``correct[a]`` keypoints within ``alphas[a] * L`` of ``n`` counted."""

    name: str
    category: str
    n: int
    correct: list[int]
    swapped: int                       # wrong at alpha 0.1, but within 0.1 L of another keypoint
    threshold_px: float                # L
    predictions: list[list[float]]     # n x 2 (y, x) target pixels (NaN where not counted)


@dataclass
class CorrespondenceReport:
    """PCK of a data set, per point and per image, overall and per category."""

    dataset: str
    reference: str
    alphas: list[float]
    per_point: dict[str, float]
    per_image: dict[str, float]
    per_category: dict[str, dict[str, Any]]
    num_pairs: int
    num_points: int
    swapped: float                     # fraction of keypoints swapped (see PairScore)
    pairs: list[PairScore]
    problems: list[str]
    params: dict[str, Any]
    seconds: float

    @property
    def pairs_per_second(self) -> float:
        return self.num_pairs / self.seconds if self.seconds > 0 else float("nan")


def _unit(descs: torch.Tensor) -> torch.Tensor:
    return descs.float() / descs.float().norm(dim=1, keepdim=True).clamp_min(1e-12)


def score_pair(pair: KeypointPair, d_a: Any, d_b: Any, reference: str, alphas: Sequence[float] = ALPHAS,
               refine: bool = True, problems: list[str] | None = None) -> PairScore | None:
    """Transfer ``pair``'s keypoints from A to B with descriptors ``d_a``, ``d_b`` and score them.

    Keypoints unlabelled in either image are not counted; one outside its image is reported in
    ``problems`` and not counted. Returns None when no keypoint is left.
    """
    from vitdense.apps.correspondences import match_points
    problems = problems if problems is not None else []
    pa = np.asarray(pair.points_a, dtype=np.float64)
    pb = np.asarray(pair.points_b, dtype=np.float64)
    ha, wa = d_a.geometry.orig_size
    hb, wb = d_b.geometry.orig_size
    labelled = np.isfinite(pa).all(1) & np.isfinite(pb).all(1)
    inside = labelled & (pa[:, 0] >= 0) & (pa[:, 0] < ha) & (pa[:, 1] >= 0) & (pa[:, 1] < wa) \
        & (pb[:, 0] >= 0) & (pb[:, 0] < hb) & (pb[:, 1] >= 0) & (pb[:, 1] < wb)
    for k in np.nonzero(labelled & ~inside)[0]:
        problems.append(f"{pair.name}: keypoint {k} at A (y, x) = {tuple(np.round(pa[k], 1))} / "
                        f"B {tuple(np.round(pb[k], 1))} lies outside its image ({ha} x {wa} / {hb} x {wb}), not counted")
    if not inside.any():
        problems.append(f"{pair.name}: no labelled keypoint inside both images, pair skipped")
        return None
    if reference == "bbox":
        y0, x0, y1, x1 = pair.bbox_b
        L = float(max(y1 - y0, x1 - x0))
    else:
        L = float(max(hb, wb))
    if not L > 0:
        problems.append(f"{pair.name}: empty target box {pair.bbox_b}, pair skipped")
        return None
    with torch.no_grad():
        pred, _, _ = match_points(_unit(d_a.descs), d_a.geometry, _unit(d_b.descs), d_b.geometry,
                                  pa[inside], refine)
    truth = pb[inside]
    dist = np.linalg.norm(pred - truth, axis=1)
    correct = [int(np.count_nonzero(dist <= a * L * (1 + 1e-12))) for a in alphas]
    # distance of each prediction to every other keypoint's truth (K x K, K keypoints)
    cross = np.linalg.norm(pred[:, None] - truth[None], axis=2)
    np.fill_diagonal(cross, np.inf)
    swapped = int(np.count_nonzero((dist > 0.1 * L) & (cross.min(axis=1) <= 0.1 * L)))
    full = np.full(pa.shape, np.nan)
    full[inside] = pred
    return PairScore(pair.name, pair.category, int(inside.sum()), correct, swapped, L, full.tolist())


def pck_summaries(scores: Sequence[PairScore], alphas: Sequence[float]) -> tuple[dict, dict]:
    n = np.array([s.n for s in scores], dtype=np.float64)
    c = np.array([s.correct for s in scores], dtype=np.float64).reshape(len(scores), len(alphas))
    per_point = {str(a): float(c[:, i].sum() / n.sum()) if n.sum() else float("nan") for i, a in enumerate(alphas)}
    per_image = {str(a): float(np.mean(c[:, i] / n)) if len(n) else float("nan") for i, a in enumerate(alphas)}
    return per_point, per_image


def evaluate_correspondences(extractor: Any, data: PairSet, *, layer: int | Sequence[int] | None = None,
                             facet: str | None = None, stride: int | None = None,
                             load_size: int | None | str = "default", bin: bool | None = None,
                             hierarchy: int = 2, upsample: str | None = None,
                             upsample_size: int | None = None, refine: bool | None = None,
                             flip: bool | None = None, alphas: Sequence[float] = ALPHAS,
                             progress: Callable[[int, int, str], None] | None = None) -> CorrespondenceReport:
    """PCK of keypoint transfer on ``data`` with the descriptor knobs given.

    Knobs left None (``load_size`` "default") take the correspondence defaults of the extractor's
    model (:func:`vitdense.defaults.task_defaults`). Images go through ``extractor.extract``, so an
    extractor with a :class:`~vitdense.features.cache.DescriptorCache` on disk makes a rerun (or a sweep of
    ``refine`` / ``upsample``) skip the network. ``progress(i, n, name)`` is called per pair.
    ``flip`` (None: the default): B is also described mirrored, the better-fitting orientation
    kept (:func:`vitdense.ops.mirror.extract_oriented`), as :func:`~vitdense.apps.correspondences.extract_pair`.
    """
    from vitdense.defaults import task_defaults
    from vitdense.features.images import load_image
    if not alphas or any(not 0 < a <= 1 for a in alphas):
        raise ParameterError(f"alphas={alphas!r}: give thresholds in (0, 1]")
    dflt = task_defaults("correspondences", extractor.model_name)
    from vitdense.apps.correspondences import pair_defaults, pair_flip
    from vitdense.ops.mirror import extract_oriented
    layer, bin = pair_defaults(extractor, layer, bin)
    flip = pair_flip(extractor, flip)
    facet = dflt["facet"] if facet is None else facet
    stride = dflt["stride"] if stride is None else stride
    load_size = dflt["load_size"] if load_size == "default" else load_size
    refine = dflt["refine"] if refine is None else refine
    params = dict(model=extractor.model_name, layer=layer, facet=facet or extractor.spec.default_facet,
                  stride=extractor.resolve_stride(stride), load_size=load_size, bin=bin, hierarchy=hierarchy,
                  upsample=upsample, upsample_size=upsample_size, refine=bool(refine), flip=flip, alphas=list(alphas),
                  reference=data.reference, dataset=data.dataset)
    problems = list(data.problems)
    scores: list[PairScore] = []
    start = time.perf_counter()
    for i, pair in enumerate(data.pairs):
        if progress is not None:
            progress(i, len(data.pairs), pair.name)
        try:
            img_a, img_b = load_image(pair.image_a), load_image(pair.image_b)
            knobs = dict(layer=layer, facet=facet, stride=stride, load_size=load_size, bin=bin,
                         hierarchy=hierarchy, upsample=upsample, upsample_size=upsample_size)
            d_a, d_b = extract_oriented(extractor, img_a, img_b, **knobs)[:2] if flip else \
                extractor.extract([img_a, img_b], **knobs)
        except (VitdenseError, OSError) as err:
            problems.append(f"{pair.name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}, pair skipped")
            continue
        s = score_pair(pair, d_a, d_b, data.reference, alphas, bool(refine), problems)
        if s is not None:
            scores.append(s)
    seconds = time.perf_counter() - start
    if not scores:
        raise VitdenseError(f"no pair of {data.dataset} could be evaluated"
                            + (f" (first problem: {problems[0]})" if problems else ""))
    per_point, per_image = pck_summaries(scores, alphas)
    per_category = {}
    for cat in sorted({s.category for s in scores}):
        sub = [s for s in scores if s.category == cat]
        pp, pi = pck_summaries(sub, alphas)
        per_category[cat] = {"pairs": len(sub), "points": int(sum(s.n for s in sub)), "per_point": pp, "per_image": pi}
    num_points = int(sum(s.n for s in scores))
    swapped = sum(s.swapped for s in scores) / num_points
    return CorrespondenceReport(data.dataset, data.reference, list(alphas), per_point, per_image, per_category,
                                len(scores), num_points, float(swapped), scores, problems, params, seconds)


# --------------------------------------------------------------------------- co-segmentation / parts
@dataclass
class SetScore:
    """Scores of one set: per image (None where the image has no ground truth) and the means."""

    name: str
    images: list[str]
    jaccard: list[float | None]
    precision: list[float | None]
    nmi: list[float | None] = field(default_factory=list)
    ari: list[float | None] = field(default_factory=list)


@dataclass
class SegmentationReport:
    """Co-segmentation (Jaccard, precision) or parts (also NMI, ARI) over every set."""

    task: str
    sets: list[SetScore]
    mean: dict[str, float]              # over every scored image of every set
    num_images: int
    problems: list[str]
    params: dict[str, Any]
    seconds: float


def evaluate_segmentation(extractor: Any, sets: Sequence[EvalSet], task: str = "cosegmentation",
                          problems: Sequence[str] = (), progress: Callable[[int, int, str], None] | None = None,
                          **knobs: Any) -> SegmentationReport:
    """Run co-segmentation (``task="cosegmentation"``) or part co-segmentation (``"parts"``) on
    each set and score it against the masks (Jaccard, precision) and part maps (NMI, ARI on the
    object's pixels, background left out). ``knobs`` go to the application function."""
    from vitdense.eval.metrics import ari, jaccard, nmi, precision
    from vitdense.features.images import load_image
    if task not in ("cosegmentation", "parts"):
        raise ParameterError(f"task={task!r}: expected 'cosegmentation' or 'parts'")
    problems = list(problems)
    out: list[SetScore] = []
    start = time.perf_counter()
    for i, s in enumerate(sets):
        if progress is not None:
            progress(i, len(sets), s.name)
        try:
            images = [np.asarray(load_image(p)) for p in s.images]
            if task == "cosegmentation":
                from vitdense.apps.cosegmentation import cosegment
                res = cosegment(extractor, images, **knobs)
                preds, labels = [np.asarray(m, bool) for m in res.masks], None
            else:
                from vitdense.apps.parts import part_cosegment
                res = part_cosegment(extractor, images, **knobs)
                labels = [np.asarray(lm) for lm in res.part_maps]
                preds = [lm > 0 for lm in labels]
        except (VitdenseError, OSError) as err:
            problems.append(f"set {s.name}: {str(err).splitlines()[0]}, skipped")
            continue
        score = SetScore(s.name, [p.name for p in s.images], [], [], [], [])
        for k, (img, pred) in enumerate(zip(images, preds)):
            j = pr = n_ = a_ = None
            if s.masks[k] is not None:
                try:
                    gt = read_label_map(s.masks[k], img.shape[:2]) > 0
                    j, pr = jaccard(pred, gt), precision(pred, gt)
                    if labels is not None and s.parts[k] is not None and gt.any():
                        parts = read_label_map(s.parts[k], img.shape[:2])
                        keep = parts > 0
                        if keep.any():
                            n_, a_ = nmi(labels[k], parts, mask=keep), ari(labels[k], parts, mask=keep)
                except (VitdenseError, OSError) as err:
                    problems.append(f"set {s.name}: {s.images[k].name}: {err}, not scored")
            score.jaccard.append(j)
            score.precision.append(pr)
            score.nmi.append(n_)
            score.ari.append(a_)
        out.append(score)
    seconds = time.perf_counter() - start
    mean = {}
    for key in ("jaccard", "precision") + (("nmi", "ari") if task == "parts" else ()):
        vals = [v for s in out for v in getattr(s, key) if v is not None]
        mean[key] = float(np.mean(vals)) if vals else float("nan")
    num = sum(1 for s in out for v in s.jaccard if v is not None)
    if num == 0:
        raise VitdenseError("no image could be scored" + (f" (first problem: {problems[0]})" if problems else ""))
    return SegmentationReport(task, out, mean, num, problems, dict(knobs), seconds)


# --------------------------------------------------------------------------- output
def format_table(report: CorrespondenceReport | SegmentationReport) -> str:
    """The report as a plain-text table (what ``vitdense evaluate`` prints)."""
    if isinstance(report, SegmentationReport):
        keys = list(report.mean)
        lines = [f"{report.task}: {report.num_images} scored image(s) in {len(report.sets)} set(s)",
                 f"{'set':24} {'images':>6} " + " ".join(f"{k:>9}" for k in keys)]
        for s in report.sets:
            vals = [np.mean([v for v in getattr(s, k) if v is not None]) if any(v is not None for v in getattr(s, k))
                    else float("nan") for k in keys]
            scored = sum(v is not None for v in s.jaccard)
            lines.append(f"{s.name[:24]:24} {scored:>6} " + " ".join(f"{v:>9.3f}" for v in vals))
        lines.append(f"{'mean (per image)':24} {report.num_images:>6} " + " ".join(f"{report.mean[k]:>9.3f}" for k in keys))
        return "\n".join(lines)
    a = report.alphas
    ref = "target box's longer side" if report.reference == "bbox" else "target image's longer side"
    head = " ".join(f"{'@' + format(x, 'g'):>7}" for x in a)
    lines = [f"{report.dataset}: PCK relative to the {ref}; {report.num_pairs} pairs, {report.num_points} keypoints; "
             f"{report.pairs_per_second:.2f} pairs/s",
             f"{'category':16} {'pairs':>5} {'points':>6} | per image {head} | per point {head}"]

    def row(name: str, pairs: int, points: int, pi: dict, pp: dict) -> str:
        return (f"{name[:16]:16} {pairs:>5} {points:>6} | {'':9} " + " ".join(f"{pi[str(x)]:>7.3f}" for x in a)
                + f" | {'':9} " + " ".join(f"{pp[str(x)]:>7.3f}" for x in a))
    for cat, c in report.per_category.items():
        lines.append(row(cat or "-", c["pairs"], c["points"], c["per_image"], c["per_point"]))
    lines.append(row("all", report.num_pairs, report.num_points, report.per_image, report.per_point))
    lines.append(f"swapped (wrong at 0.1, within 0.1 of another keypoint): {report.swapped:.3f} of the keypoints")
    return "\n".join(lines)


def write_report(report: CorrespondenceReport | SegmentationReport, path: str | Path) -> Path:
    """Every number and the parameters as strict JSON."""
    from vitdense.export import write_json
    doc = asdict(report)
    if isinstance(report, CorrespondenceReport):
        doc["pairs_per_second"] = report.pairs_per_second
        doc["averages"] = {"per_point": "correct keypoints / all keypoints",
                           "per_image": "mean over pairs of each pair's PCK"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(doc, path)
    return path


# --------------------------------------------------------------------------- the CLI's logic
def run_evaluate(args: Any) -> int:
    """``vitdense evaluate correspondences|cosegmentation|parts`` from parsed options."""
    import sys

    from tqdm import tqdm

    from vitdense.eval.datasets import read_pairs, read_sets
    from vitdense.features.cache import DescriptorCache
    from vitdense.features.extractor import Extractor
    bar = None

    def progress(i: int, n: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=n, desc=f"evaluate {args.task}", unit="pair" if args.task == "correspondences" else "set",
                       disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
        bar.n = i
        bar.set_postfix_str(name[:30])

    if args.task == "correspondences":   # read (and check) the data before loading a model
        data = read_pairs(args.dataset, args.root, args.split, args.categories, args.limit)
    else:
        sets, problems = read_sets(args.root, need_parts=args.task == "parts")
        sets = sets if args.limit is None else sets[:args.limit]
    cache = DescriptorCache(directory=args.cache) if getattr(args, "cache", None) else DescriptorCache()
    ex = Extractor(args.model, device=args.device, dtype=args.dtype, checkpoint=args.checkpoint, cache=cache)
    if ex.notice:
        print(f"notice: {ex.notice}", file=sys.stderr)
    if args.task == "correspondences":
        layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
        report = evaluate_correspondences(
            ex, data, layer=layer, facet=args.facet, stride=args.stride, load_size=args.load_size,
            bin=args.bin, hierarchy=args.hierarchy, upsample=args.upsample, upsample_size=args.upsample_size,
            refine=args.refine, flip=args.flip, alphas=args.alphas, progress=progress)
    else:
        knobs = {k: v for k, v in (("layer", args.layer[0] if args.layer and len(args.layer) == 1 else args.layer),
                                   ("facet", args.facet), ("stride", args.stride), ("bin", args.bin))
                 if v is not None}
        if args.load_size != "default":
            knobs["load_size"] = args.load_size
        if args.task == "parts":
            knobs["num_parts"] = args.num_parts
        report = evaluate_segmentation(ex, sets, args.task, problems, progress, **knobs)
    if bar is not None:
        bar.n = bar.total
        bar.close()
    for line in report.problems:
        print(f"skipped: {line}", file=sys.stderr)
    print(format_table(report))
    if args.out:
        print(f"wrote {write_report(report, args.out)}")
    return 0


def _load_size_option(text: str) -> int | None | str:
    import argparse
    if text.lower() in ("none", "default"):
        return None if text.lower() == "none" else "default"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in pixels, 'none' or 'default'") from None


def add_evaluate_parser(sub: Any) -> None:
    """Register ``vitdense evaluate`` on an argparse sub-parser collection (kept here so the CLI
    stays a thin registration)."""
    import argparse

    from vitdense.eval.datasets import DATASETS
    from vitdense.features.extractor import FACETS
    from vitdense.features.upsample import UPSAMPLE_METHODS
    p = sub.add_parser("evaluate", help="measure: PCK on correspondence benchmarks, Jaccard/NMI/ARI on sets",
                       description="Evaluate on a data set in its published layout (see vitdense.eval.datasets): "
                       "correspondences on SPair-71k / PF-PASCAL / a pairs file (PCK per image and per point), "
                       "cosegmentation / parts on ROOT/<set>/{images,masks,parts}. Prints a table; --out writes "
                       "every number as JSON. Items that cannot be read are listed and skipped.")
    p.add_argument("task", choices=["correspondences", "cosegmentation", "parts"])
    p.add_argument("--root", required=True, help="the data set folder (or a pairs .json/.csv file)")
    p.add_argument("--dataset", choices=DATASETS, default="spair", help="correspondence data set layout (default spair)")
    p.add_argument("--split", default="test", help="split of SPair-71k / PF-PASCAL (default test)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N pairs (sets)")
    p.add_argument("--categories", nargs="+", default=None, help="only these categories")
    p.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS), help="PCK thresholds (default 0.05 0.1 0.15)")
    p.add_argument("--out", default=None, help="write the report as JSON to this file")
    p.add_argument("--cache", default=None, help="descriptor cache folder: a rerun skips the network")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--model", default="auto", help="model name (see `vitdense models`)")
    p.add_argument("--checkpoint", default=None, help="local weights file")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    p.add_argument("--layer", type=int, nargs="+", default=None, help="block(s) (default: the task's for the model)")
    p.add_argument("--facet", default=None, choices=FACETS)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--load-size", type=_load_size_option, default="default",
                   help="smaller image side in pixels, or 'none' (default: the task's)")
    p.add_argument("--bin", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--hierarchy", type=int, default=2)
    p.add_argument("--upsample", choices=UPSAMPLE_METHODS, default=None, help="per-pixel descriptors (default off)")
    p.add_argument("--upsample-size", type=int, default=None)
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="sub-cell answers (default: the library's, on)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="also match B mirrored, keep the better orientation (default: the model's)")
    p.add_argument("--num-parts", type=int, default=4, help="parts: number of parts (default 4)")
    p.set_defaults(func=run_evaluate)

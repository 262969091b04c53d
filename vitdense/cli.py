"""The ``vitdense`` command line: a thin layer over the library.

Every user error (:class:`~vitdense.errors.VitdenseError`) is printed as one line on stderr and
the command exits with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import VitdenseError
from .version import __version__
from .extractor import FACETS


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model --checkpoint --device --dtype (every subcommand that runs a network)."""
    p.add_argument("--model", default="auto",
                   help="model name (see `vitdense models`); 'auto' = dino_vits8 when its weights are "
                        "available, else the bundled dinov2_vits14_imgfocus")
    p.add_argument("--checkpoint", default=None, help="local weights file (.pth / .safetensors)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"],
                   help="compute precision (default fp32; fp16/bf16 on a GPU)")


def add_descriptor_options(p: argparse.ArgumentParser, layer: int = 11, bin: bool | None = False) -> None:
    """The paper's descriptor options: --layer --facet --stride --load-size --bin."""
    p.add_argument("--layer", type=int, nargs="+", default=[layer], help=f"block index/indices (default {layer})")
    p.add_argument("--facet", default=None, choices=FACETS,
                   help="descriptor facet (default: the model's, key for DINO v1, token for DINOv2)")
    p.add_argument("--stride", type=int, default=None,
                   help="patch-embedding stride; must divide the patch size (default: half the patch)")
    p.add_argument("--load-size", type=_load_size, default=224,
                   help="smaller image side after resize in pixels, or 'none' to keep the size (default 224)")
    default = "the model's: on for DINO v1, off for DINOv2" if bin is None else ("on" if bin else "off")
    p.add_argument("--bin", action=argparse.BooleanOptionalAction, default=bin,
                   help=f"log-binning (default {default})")
    p.add_argument("--hierarchy", type=int, default=2, help="log-binning levels (default 2)")


def _load_size(text: str) -> int | None:
    if text.lower() in ("none", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in pixels or 'none'") from None


def make_extractor(args: argparse.Namespace):
    """Build the Extractor the options describe; print the fallback notice if any."""
    from .extractor import Extractor
    ex = Extractor(args.model, device=args.device, dtype=args.dtype, checkpoint=args.checkpoint)
    if ex.notice:
        print(f"notice: {ex.notice}", file=sys.stderr)
    return ex


# -- vitdense extract -------------------------------------------------------------------------------
def cmd_extract(args: argparse.Namespace) -> int:
    from safetensors.torch import save

    from .cache import write_atomic
    ex = make_extractor(args)
    results = ex.extract(args.images, layer=args.layer, facet=args.facet, stride=args.stride,
                         load_size=args.load_size, bin=args.bin, hierarchy=args.hierarchy,
                         include_cls=args.include_cls, saliency=args.saliency,
                         batch_size=args.batch_size)
    tensors, meta = {}, {"params": json.dumps(results[0].params), "images": json.dumps(args.images)}
    for i, r in enumerate(results):
        tensors[f"descs_{i}"] = r.descs.cpu().contiguous()
        if r.saliency is not None:
            tensors[f"saliency_{i}"] = r.saliency.cpu().contiguous()
        if r.cls is not None:
            tensors[f"cls_{i}"] = r.cls.cpu().contiguous()
        meta[f"grid_{i}"] = json.dumps(list(r.grid))
        meta[f"geometry_{i}"] = json.dumps(r.geometry.__dict__)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, save(tensors, metadata=meta))  # safetensors' save_file leaves mode 0600
    for path, r in zip(args.images, results):
        print(f"{path}: grid {r.grid[0]} x {r.grid[1]}, descriptors {tuple(r.descs.shape)}")
    print(f"wrote {out}")
    return 0


# -- vitdense models --------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS, default_model_name, weights_status
    default, _ = default_model_name()
    print(f"{'name':24} {'patch':>5} {'offline':>7}  description")
    for name, spec in MODELS.items():
        status = weights_status(name)
        mark = "yes" if status.available else "no"
        star = " (default)" if name == default else ""
        print(f"{name:24} {spec.patch_size:>5} {mark:>7}  {spec.description}{star}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitdense", description="Dense descriptors from self-supervised ViTs and zero-shot "
        "applications (co-segmentation, parts, correspondences, PCA, similarity, video).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", help="extract descriptors of images into a safetensors file")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, help="output .safetensors file")
    add_model_options(p)
    add_descriptor_options(p)
    p.add_argument("--include-cls", action="store_true", help="also store the CLS descriptor")
    p.add_argument("--saliency", action="store_true", help="also store CLS-attention saliency maps")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("models", help="list the models and whether their weights are available offline")
    p.set_defaults(func=cmd_models)

    for register in APP_COMMANDS:
        register(sub)
    return parser


# Application subcommands register themselves here: each is a function (subparsers) -> None.
APP_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


# =================================================================================================
# Application subcommands: cosegment, parts, correspond, pca, similarity, video.
# Shared handling lives in the helpers right below (knobs read from the library's signatures, set
# discovery, the per-set loop with its failure report, JSON); each command only maps a set to files.
# =================================================================================================
from .errors import ParameterError, check_range  # noqa: E402
from .export import save_png, to_jsonable, unique_stems, write_json  # noqa: E402

SETS_FAILED_EXIT = 1
APP_EPILOG = ("Exit status: 0 when every set succeeded; 1 when some set failed (each failure is one "
              "line on stderr, the other sets still complete; OUT/summary.json lists them); 2 for an "
              "error that stops the whole command (bad option value, missing weights, ROOT not found).")
SETS_HELP = ("ROOT holds one folder per set (as the official scripts), or is itself one set folder with "
             "the images directly inside")


def _signature_default(funcs: Sequence[Callable], name: str):
    """Default of parameter ``name`` in the first of ``funcs`` that has it (the library's default)."""
    import inspect
    for f in funcs:
        params = inspect.signature(f).parameters
        if name in params and params[name].default is not inspect.Parameter.empty:
            return params[name].default
    raise KeyError(name)


def add_knob(p: argparse.ArgumentParser, funcs: Callable | Sequence[Callable], name: str, kind: type,
             help: str, **kw) -> None:
    """Option ``--name`` for the library keyword ``name``; its default is read from ``funcs``."""
    funcs = [funcs] if callable(funcs) else list(funcs)
    default = _signature_default(funcs, name)
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                       help=f"{help} (default {'on' if default else 'off'})")
    else:
        p.add_argument(flag, dest=name, type=kind, default=default, help=f"{help} (default {default})", **kw)


def add_app_io(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """--out and --quiet, shared by the application subcommands."""
    p.add_argument("--out", required=out_required, help="output folder (created if needed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _knobs(args: argparse.Namespace, func: Callable, skip: Sequence[str] = ()) -> dict:
    """The keyword arguments of ``func`` that the parsed options hold (layer lists -> int when single)."""
    import inspect
    params = inspect.signature(func).parameters
    out = {k: v for k, v in vars(args).items() if k in params and k not in skip}
    if isinstance(out.get("layer"), list) and len(out["layer"]) == 1:
        out["layer"] = out["layer"][0]
    if "hierarchy" not in params and getattr(args, "hierarchy", 2) != 2:
        raise ParameterError(f"--hierarchy is not used by `vitdense {args.command}` (it has no log-binning levels)")
    return out


def add_crf_options(p: argparse.ArgumentParser) -> None:
    """--crf-<param> for each dense-CRF parameter (default: the library's CRF_DEFAULTS)."""
    from .crf import CRF_DEFAULTS
    for name, value in CRF_DEFAULTS.items():
        p.add_argument("--crf-" + name.replace("_", "-"), dest="crf_" + name,
                       type=int if name == "iterations" else float, default=None,
                       help=f"dense CRF {name.replace('_', ' ')} (default {value})")


def _crf_params(args: argparse.Namespace) -> dict | None:
    from .crf import CRF_DEFAULTS
    given = {k: getattr(args, "crf_" + k) for k in CRF_DEFAULTS if getattr(args, "crf_" + k, None) is not None}
    return given or None


def find_sets(root: str | Path, out: str | Path | None = None) -> list[tuple[str, Path]]:
    """ROOT -> [(set name, folder)]: ROOT itself when it holds images, else its sub-folders (sorted;
    hidden ones and the output folder skipped)."""
    from .errors import ImageError
    from .images import list_images
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder (ROOT must hold one folder per set, or the images of one set)")
    if list_images(root):
        return [(root.resolve().name or "set", root)]
    out_dir = Path(out).resolve() if out is not None else None
    subs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and (out_dir is None or d.resolve() != out_dir))
    if not subs:
        raise ImageError(f"{root}: no images and no set folders inside")
    return [(d.name, d) for d in subs]


def run_sets(args: argparse.Namespace, sets: Sequence[tuple[str, Path]],
             process: Callable[[str, Path, Path], str]) -> int:
    """Run ``process(name, folder, out_dir) -> one-line summary`` on every set with a progress bar.

    A set raising a :class:`VitdenseError` (or an OSError) is reported on stderr and skipped.
    Writes OUT/summary.json; returns 0, or :data:`SETS_FAILED_EXIT` when some set failed.
    """
    from tqdm import tqdm
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    bar = tqdm(sets, desc=f"vitdense {args.command}", unit="set", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True)
    for name, folder in bar:
        bar.set_postfix_str(name, refresh=True)
        try:
            line = process(name, folder, out / name)
        except (VitdenseError, OSError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            tqdm.write(f"error: set {name!r} skipped: {msg}", file=sys.stderr)
            status[name] = f"failed: {msg}"
            continue
        status[name] = "ok"
        tqdm.write(f"{name}: {line}", file=sys.stdout)
    bar.close()
    failed = [n for n, s in status.items() if s != "ok"]
    write_json({"command": args.command, "sets": status, "failed": failed}, out / "summary.json")
    print(f"{len(status) - len(failed)} of {len(status)} set(s) done, output in {out}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return SETS_FAILED_EXIT if failed else 0


def _set_images(folder: Path, exactly: int | None = None) -> list[Path]:
    from .errors import ImageError
    from .images import list_images
    paths = list_images(folder)
    if not paths:
        raise ImageError(f"{folder}: no images in this set folder")
    if exactly is not None and len(paths) != exactly:
        raise ParameterError(f"{folder.name}: a pair folder must hold exactly {exactly} images, found {len(paths)}")
    return paths


def _load_all(paths: Sequence[Path]):
    from .images import load_image
    return [load_image(p) for p in paths]


def _model_info(ex) -> dict:
    return {"model": ex.model_name, "patch_size": ex.spec.patch_size}


# -- vitdense cosegment ----------------------------------------------------------------------------
def _register_cosegment(sub: argparse._SubParsersAction) -> None:
    from .cosegmentation import cosegment
    p = sub.add_parser("cosegment", help="co-segmentation: a foreground mask per image of each set",
                       description=f"Co-segment every set of images (paper Sec. 4.1). {SETS_HELP}. Writes "
                       "OUT/<set>/<image>_mask.png (0/255), <image>_overlay.png, <image>_cutout.png and "
                       "result.json.", epilog=APP_EPILOG)
    p.add_argument("root", metavar="ROOT")
    add_app_io(p)
    add_model_options(p)
    add_descriptor_options(p, layer=_signature_default([cosegment], "layer"),
                           bin=_signature_default([cosegment], "bin"))
    add_knob(p, cosegment, "elbow", float, "elbow coefficient that sets the number of clusters")
    add_knob(p, cosegment, "thresh", float, "saliency threshold of a foreground vote")
    add_knob(p, cosegment, "votes_percentage", float, "percentage of images that must vote for a salient cluster")
    add_knob(p, cosegment, "sample_interval", int, "cluster every n-th descriptor")
    add_knob(p, cosegment, "remove_outliers", bool, "drop images whose CLS descriptor is far from the set's mean")
    add_knob(p, cosegment, "outliers_thresh", float, "CLS cosine similarity below which an image is an outlier")
    add_knob(p, cosegment, "low_res_saliency_maps", bool, "saliency from a half-size, stride-patch pass")
    add_knob(p, cosegment, "refine", bool, "GrabCut refinement of the masks")
    add_knob(p, cosegment, "max_clusters", int, "largest k tried by the elbow rule")
    add_knob(p, cosegment, "n_init", int, "k-means restarts")
    add_knob(p, cosegment, "max_iter", int, "k-means iterations")
    add_knob(p, cosegment, "seed", int, "k-means seed")
    add_knob(p, cosegment, "batch_size", int, "images per network batch")
    p.set_defaults(func=cmd_cosegment)


def cmd_cosegment(args: argparse.Namespace) -> int:
    from . import draw
    from .cosegmentation import cosegment
    import numpy as np
    sets = find_sets(args.root, args.out)
    knobs = _knobs(args, cosegment)
    ex = make_extractor(args)

    def process(name: str, folder: Path, out: Path) -> str:
        paths = _set_images(folder)
        images = _load_all(paths)
        res = cosegment(ex, images, **knobs)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for path, stem, img, mask, refined, inlier in zip(paths, unique_stems(paths), images, res.masks,
                                                            res.refined, res.inliers):
            rgb = np.asarray(img)
            rows.append({"file": path.name, "mask": save_png((mask * 255).astype(np.uint8), out / f"{stem}_mask.png"),
                         "overlay": save_png(draw.overlay_mask(rgb, mask), out / f"{stem}_overlay.png"),
                         "cutout": save_png(draw.cutout(rgb, mask), out / f"{stem}_cutout.png"),
                         "foreground_fraction": float(mask.mean()), "refined": bool(refined),
                         "inlier": bool(inlier)})
        write_json({"set": name, "images": rows, "num_clusters": res.num_clusters,
                    "salient_clusters": res.salient_clusters, "votes": res.votes,
                    "votes_needed": res.votes_needed, "reason": res.reason, **_model_info(ex),
                    "params": res.params}, out / "result.json")
        fg = np.mean([r["foreground_fraction"] for r in rows])
        return (f"{len(paths)} image(s), {res.num_clusters} clusters, mean foreground {fg:.1%}"
                + (f" ({res.reason})" if res.reason else ""))

    return run_sets(args, sets, process)


# -- vitdense parts --------------------------------------------------------------------------------
def _add_part_knobs(p: argparse.ArgumentParser, funcs: Sequence[Callable]) -> None:
    for name, kind, text in [
            ("num_parts", int, "number of parts"),
            ("elbow", float, "elbow coefficient of the foreground clustering"),
            ("thresh", float, "saliency threshold of a foreground vote"),
            ("votes_percentage", float, "percentage of images that must vote for a salient cluster"),
            ("sample_interval", int, "cluster every n-th descriptor"),
            ("low_res_saliency_maps", bool, "saliency from a half-size, stride-patch pass"),
            ("num_crop_augmentations", int, "random crop augmentations per image (and per mirror image)"),
            ("three_stages", bool, "third clustering stage that drops parts absent from some image"),
            ("elbow_second_stage", float, "elbow coefficient of the second stage (three stages)"),
            ("crf", bool, "dense CRF smoothing of the part maps"),
            ("max_clusters", int, "largest k tried by the elbow rule"),
            ("n_init", int, "k-means restarts"), ("max_iter", int, "k-means iterations"),
            ("seed", int, "k-means and augmentation seed"), ("batch_size", int, "images per network batch")]:
        add_knob(p, funcs, name, kind, text)
    add_crf_options(p)


def _register_parts(sub: argparse._SubParsersAction) -> None:
    from .part_cosegmentation import part_cosegment
    p = sub.add_parser("parts", help="part co-segmentation: common parts across each set",
                       description=f"Part co-segment every set of images (paper Sec. 4.2). {SETS_HELP}. "
                       "Writes OUT/<set>/<image>_parts.png (label map: 0 = background, p = part p, the same "
                       "part in every image), <image>_parts_color.png (palette colours, transparent "
                       "background), <image>_overlay.png and result.json.", epilog=APP_EPILOG)
    p.add_argument("root", metavar="ROOT")
    add_app_io(p)
    add_model_options(p)
    add_descriptor_options(p, layer=_signature_default([part_cosegment], "layer"),
                           bin=_signature_default([part_cosegment], "bin"))
    _add_part_knobs(p, [part_cosegment])
    p.set_defaults(func=cmd_parts)


def cmd_parts(args: argparse.Namespace) -> int:
    from . import draw
    from .part_cosegmentation import part_cosegment
    import numpy as np
    sets = find_sets(args.root, args.out)
    knobs = _knobs(args, part_cosegment)
    knobs["crf_params"] = _crf_params(args)
    ex = make_extractor(args)

    def process(name: str, folder: Path, out: Path) -> str:
        paths = _set_images(folder)
        images = _load_all(paths)
        res = part_cosegment(ex, images, **knobs)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for path, stem, img, pm in zip(paths, unique_stems(paths), images, res.part_maps):
            counts = np.bincount(pm.ravel(), minlength=res.num_parts + 1)
            rows.append({"file": path.name,
                         "parts": save_png(pm.astype(np.uint8), out / f"{stem}_parts.png"),
                         "parts_color": save_png(draw.parts_rgba(pm, res.num_parts), out / f"{stem}_parts_color.png"),
                         "overlay": save_png(draw.overlay_parts(np.asarray(img), pm, num_parts=res.num_parts),
                                              out / f"{stem}_overlay.png"),
                         "part_fractions": (counts[1:] / pm.size).round(5)})
        write_json({"set": name, "images": rows, "num_parts": res.num_parts,
                    "part_fractions": res.part_fractions, "part_colors": draw.part_colors(res.num_parts),
                    "label_values": "0 = background, p = part p (1..num_parts)", "crf_applied": res.crf_applied,
                    "notes": res.notes, "reason": res.reason, **_model_info(ex), "params": res.params},
                   out / "result.json")
        return f"{len(paths)} image(s), {res.num_parts} part(s)" + (f" ({res.reason})" if res.reason else "")

    return run_sets(args, sets, process)


# -- vitdense correspond ---------------------------------------------------------------------------
def _register_correspond(sub: argparse._SubParsersAction) -> None:
    from .correspondences import find_correspondences
    p = sub.add_parser("correspond", help="point correspondences between the two images of each pair",
                       description=f"Best-buddy correspondences (paper Sec. 4.3). {SETS_HELP.replace('set', 'pair')}; "
                       "a pair folder holds exactly 2 images. Writes OUT/<pair>/correspondences.png, "
                       "<image>_points.png for both images and points.json (points are (y, x) in original "
                       "pixels; row k of points1 matches row k of points2).", epilog=APP_EPILOG)
    p.add_argument("root", metavar="ROOT")
    add_app_io(p)
    add_model_options(p)
    add_descriptor_options(p, layer=_signature_default([find_correspondences], "layer"),
                           bin=_signature_default([find_correspondences], "bin"))
    add_knob(p, find_correspondences, "num_pairs", int, "number of correspondences")
    p.add_argument("--thresh", type=_thresh_or_none, default=_signature_default([find_correspondences], "thresh"),
                   help="saliency threshold of both patches, or 'none' for no foreground filter "
                        f"(default {_signature_default([find_correspondences], 'thresh')})")
    p.add_argument("--n-init", dest="n_init", type=_n_init, default=_signature_default([find_correspondences], "n_init"),
                   help=f"k-means restarts or 'auto' (default {_signature_default([find_correspondences], 'n_init')})")
    p.add_argument("--chunk", type=int, default=None, help="rows per similarity block (default automatic)")
    p.add_argument("--lines", action=argparse.BooleanOptionalAction, default=True,
                   help="draw a line per pair in correspondences.png (default on)")
    p.set_defaults(func=cmd_correspond)


def _thresh_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from None


def _n_init(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'auto'") from None


def cmd_correspond(args: argparse.Namespace) -> int:
    from . import draw
    from .correspondences import find_correspondences
    import numpy as np
    sets = find_sets(args.root, args.out)
    knobs = _knobs(args, find_correspondences)
    ex = make_extractor(args)

    def process(name: str, folder: Path, out: Path) -> str:
        paths = _set_images(folder, exactly=2)
        im1, im2 = (np.asarray(im) for im in _load_all(paths))
        res = find_correspondences(ex, im1, im2, **knobs)
        out.mkdir(parents=True, exist_ok=True)
        s1, s2 = unique_stems(paths)
        a, b = draw.draw_correspondence_result(im1, im2, res, separate=True)
        files = {"correspondences": save_png(draw.draw_correspondence_result(im1, im2, res, lines=args.lines),
                                              out / "correspondences.png"),
                 "points1": save_png(a, out / f"{s1}_points.png"),
                 "points2": save_png(b, out / f"{s2}_points.png")}
        pairs = [{"point1": p1, "point2": p2, "similarity": s, "saliency": sal}
                 for p1, p2, s, sal in zip(res.points1, res.points2, res.similarity, res.saliency)]
        write_json({"set": name, "image1": paths[0].name, "image2": paths[1].name, "coordinates": "(y, x) original pixels",
                    "points1": res.points1, "points2": res.points2, "pairs": pairs,
                    "num_best_buddies": res.num_best_buddies, "num_mutual": res.num_mutual,
                    "reason": res.reason, "files": files, **_model_info(ex), "params": res.params},
                   out / "points.json")
        return f"{len(res)} correspondence(s) from {res.num_best_buddies} best buddies" + \
            (f" ({res.reason})" if res.reason else "")

    return run_sets(args, sets, process)


# -- vitdense pca ----------------------------------------------------------------------------------
def _register_pca(sub: argparse._SubParsersAction) -> None:
    from .pca import pca
    p = sub.add_parser("pca", help="PCA of the descriptors of each set, as RGB images",
                       description=f"Joint PCA of the descriptors of the images of each set. {SETS_HELP}. "
                       "Writes OUT/<set>/<image>_pca.png (components --channels as RGB, at the image size), "
                       "<image>_comp<k>.png (each component, viridis, one scale per component over the set) "
                       "and pca.json.", epilog=APP_EPILOG)
    p.add_argument("root", metavar="DIR")
    add_app_io(p)
    add_model_options(p)
    add_descriptor_options(p, layer=_signature_default([pca], "layer"), bin=_signature_default([pca], "bin"))
    add_knob(p, pca, "n_components", int, "number of principal components")
    p.add_argument("--channels", type=int, nargs=3, default=[0, 1, 2], metavar=("R", "G", "B"),
                   help="components shown as R, G, B (negative indices count from the last; default 0 1 2)")
    p.add_argument("--components", action=argparse.BooleanOptionalAction, default=True,
                   help="also save every component as its own image (default on)")
    p.add_argument("--upsample", choices=["nearest", "bilinear"], default="nearest",
                   help="how the patch maps are brought to the image size (default nearest)")
    p.set_defaults(func=cmd_pca)


def cmd_pca(args: argparse.Namespace) -> int:
    from . import draw
    from .pca import pca
    import numpy as np
    sets = find_sets(args.root, args.out)
    knobs = _knobs(args, pca)
    ex = make_extractor(args)

    def process(name: str, folder: Path, out: Path) -> str:
        paths = _set_images(folder)
        res = pca(ex, _load_all(paths), **knobs)
        rgbs = draw.draw_pca(res, args.channels, order=args.upsample)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        lo = np.min([c.reshape(-1, c.shape[-1]).min(0) for c in res.components], axis=0)
        hi = np.max([c.reshape(-1, c.shape[-1]).max(0) for c in res.components], axis=0)
        for path, stem, rgb, comp, geo in zip(paths, unique_stems(paths), rgbs, res.components, res.geometries):
            row = {"file": path.name, "pca": save_png(rgb, out / f"{stem}_pca.png")}
            if args.components:
                up = np.asarray(geo.upsample(comp, mode=args.upsample))  # H0 x W0 x n
                row["components"] = [save_png(draw.apply_colormap(up[..., k], "viridis", lo[k], hi[k]),
                                               out / f"{stem}_comp{k}.png") for k in range(comp.shape[-1])]
            rows.append(row)
        write_json({"set": name, "images": rows, "channels": args.channels,
                    "explained_variance_ratio": res.explained_variance_ratio,
                    "explained_variance": res.explained_variance, **_model_info(ex), "params": res.params},
                   out / "pca.json")
        return (f"{len(paths)} image(s), explained variance of components "
                + ", ".join(f"{v:.1%}" for v in res.explained_variance_ratio))

    return run_sets(args, sets, process)


# -- vitdense similarity ---------------------------------------------------------------------------
def _register_similarity(sub: argparse._SubParsersAction) -> None:
    from .similarity import inspect_similarity
    p = sub.add_parser("similarity", help="similarity of one point's descriptor to every patch of A and B",
                       description="Cosine similarity of the descriptor at --point Y X of image A (or of A's "
                       "CLS token with --cls) to every patch of A and of B (official inspect_similarity.py). "
                       "Prints the most similar points as JSON; with --out also writes similarity_a.png, "
                       "similarity_b.png and similarity.json.",
                       epilog="Exit status: 0 on success, 2 for a user error (bad point, unreadable image).")
    p.add_argument("image_a", metavar="A")
    p.add_argument("image_b", metavar="B", nargs="?", default=None, help="second image (default: A itself)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--point", type=float, nargs=2, metavar=("Y", "X"), help="query pixel in A (original pixels)")
    q.add_argument("--cls", action="store_true", help="query A's CLS descriptor instead of a point")
    add_app_io(p, out_required=False)
    add_model_options(p)
    add_descriptor_options(p, layer=_signature_default([inspect_similarity], "layer"),
                           bin=_signature_default([inspect_similarity], "bin"))
    add_knob(p, inspect_similarity, "top_n", int, "most similar patches reported per image")
    p.add_argument("--cmap", choices=["inferno", "viridis", "magma", "turbo", "gray"], default="inferno",
                   help="colormap of the similarity images (default inferno)")
    p.set_defaults(func=cmd_similarity)


def cmd_similarity(args: argparse.Namespace) -> int:
    from . import draw
    from .images import load_image
    from .similarity import inspect_similarity
    import numpy as np
    knobs = _knobs(args, inspect_similarity, skip=("point", "image_a", "image_b"))
    a = np.asarray(load_image(args.image_a))
    b = np.asarray(load_image(args.image_b)) if args.image_b is not None else None
    ex = make_extractor(args)
    res = inspect_similarity(ex, a, b, None if args.cls else tuple(args.point), **knobs)
    summary = {"image_a": args.image_a, "image_b": args.image_b or args.image_a,
               "coordinates": "(y, x) original pixels", "query_point": res.query_point,
               "query_cell_point": res.query_cell_point, "query_is_cls": res.is_cls,
               "top_a": [{"point": p, "similarity": s} for p, s in zip(res.top_a_points, res.top_a_similarity)],
               "top_b": [{"point": p, "similarity": s} for p, s in zip(res.top_b_points, res.top_b_similarity)],
               **_model_info(ex), "params": res.params}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        va, vb = draw.draw_similarity(a, a if b is None else b, res, cmap=args.cmap)
        summary["files"] = {"a": save_png(va, out / "similarity_a.png"), "b": save_png(vb, out / "similarity_b.png")}
        write_json(summary, out / "similarity.json")
    print(json.dumps(to_jsonable({k: summary[k] for k in ("query_cell_point", "top_a", "top_b")})))
    return 0


# -- vitdense video --------------------------------------------------------------------------------
def _register_video(sub: argparse._SubParsersAction) -> None:
    from .part_cosegmentation import part_cosegment
    from .video import read_video, video_parts, write_video
    p = sub.add_parser("video", help="part co-segmentation of a video, parts propagated to every frame",
                       description="Video part co-segmentation: evenly sampled frames are part-co-segmented, "
                       "every frame is labelled by nearest part centroid with temporal smoothing. FILE: a "
                       "video (mp4, mov, avi, mkv, webm, gif, ...) or a folder of frame images; several FILEs "
                       "are processed in turn. Writes OUT/<name>/parts.<format> (annotated video), "
                       "labels/frame_NNNN.png (0 = background, p = part p) and result.json.",
                       epilog=APP_EPILOG)
    p.add_argument("files", nargs="+", metavar="FILE")
    add_app_io(p)
    add_model_options(p)
    add_descriptor_options(p, layer=_signature_default([video_parts], "layer"),
                           bin=_signature_default([video_parts], "bin"))
    add_knob(p, read_video, "max_frames", int, "read at most this many frames")
    add_knob(p, read_video, "max_side", int, "downscale frames whose longer side exceeds this")
    add_knob(p, read_video, "step", int, "keep every n-th frame")
    add_knob(p, read_video, "fps", float, "frame rate (default: the video's; 10 for a folder)")
    add_knob(p, video_parts, "num_sampled_frames", int, "frames that are part-co-segmented")
    add_knob(p, video_parts, "temporal_smoothing", float, "weight of the past in the moving average of the "
             "part similarity maps, in [0, 1); 0 = off")
    add_knob(p, video_parts, "bidirectional", bool, "smooth forwards and backwards (no lag)")
    _add_part_knobs(p, [video_parts, part_cosegment])
    p.add_argument("--format", choices=["mp4", "gif"], default="mp4", help="annotated video format (default mp4)")
    p.add_argument("--alpha", type=float, default=0.55, help="opacity of the part colours (default 0.55)")
    p.add_argument("--save-labels", action=argparse.BooleanOptionalAction, default=True,
                   help="save every frame's label map as PNG (default on)")
    add_knob(p, write_video, "quality", int, "mp4 quality 0..10")
    p.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from . import draw
    from .video import read_video, video_parts, write_video
    import numpy as np
    from .part_cosegmentation import part_cosegment
    knobs = _knobs(args, video_parts, skip=("fps",))
    knobs.update(_knobs(args, part_cosegment, skip=tuple(knobs)))  # the part knobs video passes on
    knobs["crf_params"] = _crf_params(args)
    check_range("alpha", args.alpha, 0.0, 1.0)
    names = unique_stems([Path(f) for f in args.files])
    sets = list(zip(names, [Path(f) for f in args.files]))
    ex = make_extractor(args)

    def process(name: str, path: Path, out: Path) -> str:
        frames, fps = read_video(path, max_frames=args.max_frames, max_side=args.max_side, step=args.step,
                                 fps=args.fps)
        res = video_parts(ex, frames, fps=fps, **knobs)
        out.mkdir(parents=True, exist_ok=True)
        maps = [res.label_map(i) for i in range(res.num_frames)]   # once: drawn and saved
        vis = draw.draw_video_parts(frames, res, alpha=args.alpha, label_maps=maps)
        video_file = write_video(vis, out / f"parts.{args.format}", fps, quality=args.quality)
        labels = []
        if args.save_labels:
            (out / "labels").mkdir(exist_ok=True)
            digits = max(4, len(str(len(frames))))
            labels = [save_png(m.astype(np.uint8), out / "labels" / f"frame_{i:0{digits}d}.png")
                      for i, m in enumerate(maps)]
        write_json({"source": str(path), "num_frames": res.num_frames, "fps": fps,
                    "frame_size": list(frames[0].shape[:2]), "sampled_indices": res.sampled_indices,
                    "num_parts": res.num_parts, "part_colors": draw.part_colors(res.num_parts),
                    "label_values": "0 = background, p = part p (1..num_parts)",
                    "flicker": {"smoothed": res.flicker(), "unsmoothed": res.flicker(smoothed=False)},
                    "video": video_file.name, "labels": labels, "reason": res.reason, **_model_info(ex),
                    "params": res.params}, out / "result.json")
        return (f"{res.num_frames} frame(s), {res.num_parts} part(s), flicker {res.flicker():.3f} "
                f"(unsmoothed {res.flicker(smoothed=False):.3f})" + (f" ({res.reason})" if res.reason else ""))

    return run_sets(args, sets, process)


APP_COMMANDS.extend([_register_cosegment, _register_parts, _register_correspond, _register_pca,
                     _register_similarity, _register_video])



def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VitdenseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

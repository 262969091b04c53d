"""The ``vitdense`` command line: a thin layer over the library.

Application subcommands are derived from the registry (:mod:`vitdense.apps.entries`): one generic command
per input kind (sets, pairs, clips, two images), whose options are the application's knobs and whose
output folder is the application's export. Other commands (``extract``, ``models``, ...) are plain
functions registered in :data:`COMMANDS`.

Every user error (:class:`~vitdense.errors.VitdenseError`) is printed as one line on stderr and
the command exits with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from vitdense.apps import APPS
from vitdense.apps.registry import APP_ALIASES, App, Knob
from vitdense.apps.sets import find_sets, guarded, resolve_options, run_app_set, write_summary
from vitdense.defaults import family_overrides
from vitdense.errors import VitdenseError
from vitdense.export import unique_stems, write_atomic
from vitdense.features.descriptors import FACETS
from vitdense.version import __version__


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
    from vitdense.features.extractor import Extractor
    ex = Extractor(args.model, device=args.device, dtype=args.dtype, checkpoint=args.checkpoint)
    if ex.notice:
        print(f"notice: {ex.notice}", file=sys.stderr)
    return ex


DESCRIPTOR_LAYOUT = (
    "descs_i: T x D float32, T = grid_i[0] * grid_i[1] rows in row-major grid order (with --upsample "
    "one row per pixel: grid_i is H x W pixels). For key/query/value, D = heads x head_dim per layer: "
    "channel = head * head_dim + j ('head' order, heads concatenated) unless params.channel_order is "
    "'dim' (the official code's order: channel = j * heads + head). Several layers concatenate; "
    "log-binning repeats D per bin, bins level by level.")


# -- vitdense extract -------------------------------------------------------------------------------
def cmd_extract(args: argparse.Namespace) -> int:
    from safetensors.torch import save
    ex = make_extractor(args)
    results = ex.extract(args.images, layer=args.layer, facet=args.facet, stride=args.stride,
                         load_size=args.load_size, bin=args.bin, hierarchy=args.hierarchy,
                         include_cls=args.include_cls, saliency=args.saliency,
                         batch_size=args.batch_size, upsample=args.upsample,
                         upsample_size=args.upsample_size, channel_order=args.channel_order)
    tensors, meta = {}, {"params": json.dumps(results[0].params), "images": json.dumps(args.images),
                         "layout": DESCRIPTOR_LAYOUT}
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
    from vitdense.features.models import MODELS, default_model_name, weights_status
    default, _ = default_model_name()
    print(f"{'name':24} {'patch':>5} {'offline':>7}  description")
    for name, spec in MODELS.items():
        status = weights_status(name)
        mark = "yes" if status.available else "no"
        star = " (default)" if name == default else ""
        print(f"{name:24} {spec.patch_size:>5} {mark:>7}  {spec.description}{star}")
    return 0


def _register_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract descriptors of images into a safetensors file")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, help="output .safetensors file")
    add_model_options(p)
    add_descriptor_options(p)
    p.add_argument("--include-cls", action="store_true", help="also store the CLS descriptor")
    p.add_argument("--saliency", action="store_true", help="also store CLS-attention saliency maps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--upsample", choices=["jbu", "bilinear"], default=None,
                   help="one descriptor per pixel: 'jbu' (joint bilateral, guided by the image) or 'bilinear' "
                        "(default off: one per patch cell)")
    p.add_argument("--upsample-size", type=int, default=None,
                   help="smaller side of the upsampled grid in pixels (default: the load size)")
    p.add_argument("--channel-order", choices=["head", "dim"], default="head",
                   help="key/query/value channel layout: 'head' (heads concatenated, default) or 'dim' "
                        "(the official dino-vit-features order, d x heads)")
    p.set_defaults(func=cmd_extract)


def _register_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models and whether their weights are available offline")
    p.set_defaults(func=cmd_models)


def _register_extract_dataset(sub: argparse._SubParsersAction) -> None:
    from vitdense.scale.jobs import add_extract_dataset_options, extract_dataset_command
    p = sub.add_parser("extract-dataset", help="extract a whole data set on Ray workers into shards + manifest",
                       description="Extract descriptors of every image under ROOT (recursive) or matching a "
                       "glob, on Ray workers, into DIR/shards/*.safetensors and DIR/manifest/*.jsonl (read "
                       "them with vitdense.scale.store.open_descriptors). A rerun skips images already stored with "
                       "the same content and parameters; unreadable images are listed as failed.",
                       epilog="Exit status: 0; 1 when some image failed (listed in the manifest); 2 for an "
                       "error that stops the job.")
    p.add_argument("root", metavar="ROOT", help="folder (searched recursively) or glob of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    add_model_options(p)
    add_descriptor_options(p)
    add_extract_dataset_options(p)
    add_worker_options(p, default="1 worker")
    p.set_defaults(func=extract_dataset_command)


#: every subcommand: a function (subparsers) -> None that adds its parser (``set_defaults(func=...)``);
#: the applications' commands are appended from the registry below
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_register_extract, _register_models,
                                                                _register_extract_dataset]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitdense", description="Dense descriptors from self-supervised ViTs and zero-shot "
        "applications (" + ", ".join(app.title.lower() for app in APPS.values()) + ").")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


# =================================================================================================
# Application subcommands, derived from the registry: options from the knobs, files from the exporter
# =================================================================================================
SETS_FAILED_EXIT = 1
APP_EPILOG = ("Exit status: 0 when every set succeeded; 1 when some set failed (each failure is one "
              "line on stderr, the other sets still complete; OUT/summary.json lists them); 2 for an "
              "error that stops the whole command (bad option value, missing weights, ROOT not found).")
SETS_HELP = ("ROOT holds one folder per set (as the official scripts), or is itself one set folder with "
             "the images directly inside")
#: per input kind: (positional argument, metavar, nargs, help)
POSITIONALS = {
    "set": [("root", "ROOT", None, SETS_HELP)],
    "pair": [("root", "ROOT", None, SETS_HELP.replace("set", "pair") + "; a pair folder holds exactly 2 images")],
    "clip": [("files", "FILE", "+", "a video file or a folder of frames (several are processed in turn)")],
    "images": [("image_a", "A", None, "image A"), ("image_b", "B", "?", "second image (default: A itself)")],
}


def _thresh_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from None


def _int_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'auto'") from None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "automatic" if value is None else str(value)


def _default_text(app: App, name: str, value: Any) -> str:
    """A knob's default as help text: the paper's ``value`` and each model family's measured
    override, e.g. ``11; dinov2 models: 9``."""
    overrides = family_overrides(app.task, name)
    return _shown(value) + "".join(f"; {family} models: {_shown(v)}" for family, v in overrides.items())


def add_app_descriptor_options(p: argparse.ArgumentParser, app: App) -> None:
    """--layer --facet --stride --load-size --bin --hierarchy of an application; left unset, each is
    the defaults table's value for the model in use (so the command follows vitdense/defaults.py)."""
    d = app.defaults(None)
    S = argparse.SUPPRESS
    takes = app.descriptor_knobs   # an application that does not take a setting has no option for it
    if "layer" in takes:
        p.add_argument("--layer", type=int, nargs="+", default=S,
                       help=f"block index/indices (default {_default_text(app, 'layer', d['layer'])})")
    if "facet" in takes:
        p.add_argument("--facet", default=S, choices=FACETS,
                       help="descriptor facet (default: the model's, key for DINO v1, token for DINOv2)")
    p.add_argument("--stride", type=int, default=S,
                   help="patch-embedding stride; must divide the patch size (default: half the patch)")
    p.add_argument("--load-size", type=_load_size, default=S,
                   help=f"smaller image side after resize in pixels, or 'none' to keep the size "
                        f"(default {d['load_size']})")
    if "bin" in takes:
        bin_default = "the model's: on for DINO v1, off for DINOv2" if d["bin"] is None else _shown(d["bin"])
        p.add_argument("--bin", action=argparse.BooleanOptionalAction, default=S,
                       help=f"log-binning (default {bin_default})")
    p.add_argument("--hierarchy", type=int, default=S, help="log-binning levels (default 2)")


def add_knob_option(p: argparse.ArgumentParser, app: App, knob: Knob) -> None:
    """The option of one knob (unset = the application's default for the model, see App.default)."""
    S = argparse.SUPPRESS
    if knob.kind == "crf":
        from vitdense.ops.crf import CRF_DEFAULTS
        for name, value in CRF_DEFAULTS.items():
            p.add_argument("--crf-" + name.replace("_", "-"), dest="crf_" + name, default=S,
                           type=int if name == "iterations" else float,
                           help=f"dense CRF {name.replace('_', ' ')} (default {value})")
        return
    default = app.default(knob.name)
    text = f"{knob.help} (default {_default_text(app, knob.name, default)})"
    if knob.kind is bool:
        p.add_argument(knob.flag, dest=knob.name, action=argparse.BooleanOptionalAction, default=S, help=text)
        return
    kind = {"float_or_none": _thresh_or_none, "int_or_auto": _int_or_auto, "ints3": int, "choice": str}.get(
        knob.kind, knob.kind)
    extra: dict[str, Any] = {}
    if knob.kind == "ints3":
        extra = dict(nargs=3, metavar=("R", "G", "B"))
    if knob.choices:
        extra["choices"] = list(knob.choices)
    p.add_argument(knob.flag, dest=knob.name, type=kind, default=S, help=text, **extra)


def add_worker_options(p: argparse.ArgumentParser, default: str = "this process only") -> None:
    """--workers --gpus-per-worker --address: run on Ray (:mod:`vitdense.scale.jobs`)."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run on N Ray workers, one model each (needs Ray: pip install \"vitdense[scale]\"); "
                        f"default: {default}")
    p.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                   help="GPUs each Ray worker asks for (default 0: CPU)")
    p.add_argument("--address", default=None,
                   help="Ray cluster: 'auto' (started with `ray start --head`), 'ray://HOST:10001', "
                        "or none for a local Ray on this machine (default)")


def add_app_io(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """--out and --quiet, shared by the application subcommands."""
    p.add_argument("--out", required=out_required, help="output folder (created if needed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _register_app(app: App) -> Callable[[argparse._SubParsersAction], None]:
    def register(sub: argparse._SubParsersAction) -> None:
        one_shot = app.input == "images"
        writes = (app.export.__doc__ or "").strip().splitlines()[0] if app.export.__doc__ else ""
        where = "OUT/<name>/" if app.input == "clip" else "OUT/<set>/" if not one_shot else "OUT/ (with --out)"
        old = [alias for alias, app_id in APP_ALIASES.items() if app_id == app.id]   # deprecated names
        p = sub.add_parser(app.id, aliases=old, help=app.summary,
                           description=f"{app.description} Writes into {where}: {writes} params.json holds "
                                       "the options used.",
                           epilog="Exit status: 0 on success, 2 for a user error (bad point, unreadable "
                                  "image)." if one_shot else APP_EPILOG)
        for dest, metavar, nargs, text in POSITIONALS[app.input]:
            kw = {"nargs": nargs} if nargs else {}
            if nargs == "?":
                kw["default"] = None
            p.add_argument(dest, metavar=metavar, help=text, **kw)
        if app.cli_options is not None:
            app.cli_options(p)
        add_app_io(p, out_required=not one_shot)
        add_model_options(p)
        add_app_descriptor_options(p, app)
        for knob in app.knobs:
            add_knob_option(p, app, knob)
        if not one_shot:
            add_worker_options(p)
        p.set_defaults(func=lambda args: run_app(app, args))
    return register


def app_options(app: App, args: argparse.Namespace, model: str | None, stage: str) -> dict:
    """The options of ``stage`` the command line gives, each unset one the application's default for
    ``model`` (see :func:`vitdense.apps.sets.resolve_options`)."""
    return resolve_options(app, vars(args), model)[stage]


def run_sets(args: argparse.Namespace, sets: Sequence[tuple[str, Any]],
             process: Callable[[str, Any, Path], str]) -> int:
    """Run ``process(name, source, out_dir) -> one-line summary`` on every set with a progress bar.

    A set raising a :class:`VitdenseError` (or an OSError) is reported on stderr and skipped.
    Writes OUT/summary.json; returns 0, or :data:`SETS_FAILED_EXIT` when some set failed.
    """
    out = Path(args.out)
    return report_sets(args, sets, ((name, *guarded(process, name, source, out / name)) for name, source in sets))


def report_sets(args: argparse.Namespace, sets: Sequence[tuple[str, Any]], results) -> int:
    """Show ``(name, ok, text)`` results as they come (progress bar, one line per set), then write
    OUT/summary.json (sets in ``sets`` order) and the closing line; returns the exit status."""
    from tqdm import tqdm
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    bar = tqdm(total=len(sets), desc=f"vitdense {args.command}", unit="set", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)
    for name, ok, text in results:
        bar.update(1)
        bar.set_postfix_str(name, refresh=True)
        if ok:
            status[name] = "ok"
            tqdm.write(f"{name}: {text}", file=sys.stdout)
        else:
            tqdm.write(f"error: set {name!r} skipped: {text}", file=sys.stderr)
            status[name] = f"failed: {text}"
    bar.close()
    status = {name: status[name] for name, _ in sets if name in status}
    failed = write_summary(out, args.command, status)
    print(f"{len(status) - len(failed)} of {len(status)} set(s) done, output in {out}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return SETS_FAILED_EXIT if failed else 0


def run_app(app: App, args: argparse.Namespace) -> int:
    """The generic application command: every set (pair, clip) -> ``app.run`` -> ``app.export``
    written into OUT/<set>/ (the same files as the web demo's zip); with ``--workers N`` the sets run
    on N Ray workers (:func:`vitdense.scale.jobs.map_sets`), each through the same :func:`run_app_set`."""
    if app.input in ("set", "pair"):
        sets = find_sets(args.root, args.out)
    elif app.input == "clip":
        sets = list(zip(unique_stems([Path(f) for f in args.files]), [Path(f) for f in args.files]))
    else:
        sets = [("", None)]
    if getattr(args, "workers", None):
        from vitdense.scale.jobs import app_sets
        results, notice = app_sets(app.id, sets, args.out, vars(args), num_workers=args.workers, model=args.model,
                                   checkpoint=args.checkpoint, device=args.device, dtype=args.dtype,
                                   gpus_per_worker=args.gpus_per_worker, address=args.address)
        if notice:
            print(f"notice: {notice}", file=sys.stderr)
        return report_sets(args, sets, results)
    ex = make_extractor(args)
    options = resolve_options(app, vars(args), ex.model_name)
    process = functools.partial(run_app_set, app, ex, options)
    if app.input == "images":    # one run, its summary printed (files only with --out)
        print(process("", (args.image_a, args.image_b), Path(args.out) if args.out else None))
        return 0
    return run_sets(args, sets, process)


def sets_job(command: str, root: str | Path, out: str | Path, *, num_workers: int = 2, model: str = "auto",
             checkpoint: str | None = None, device: str = "auto", dtype: str | None = None,
             gpus_per_worker: float = 0, address: str | None = None, **options: Any) -> dict[str, str]:
    """``vitdense COMMAND ROOT --out OUT --workers N`` from Python (quiet): each set of ROOT one task
    on ``num_workers`` Ray workers (:func:`vitdense.scale.jobs.app_sets`), reported and written as the
    command does. ``options``: the application's knobs by keyword (``load_size=112``,
    ``refine=False``). Returns OUT/summary.json's ``{set: "ok" | "failed: ..."}``; a job-level error
    raises its :class:`VitdenseError`."""
    from vitdense.scale.jobs import app_sets
    sets = find_sets(root, out)
    results, _ = app_sets(command, sets, out, options, num_workers=num_workers, model=model, checkpoint=checkpoint,
                          device=device, dtype=dtype, gpus_per_worker=gpus_per_worker, address=address)
    report_sets(argparse.Namespace(out=out, command=command, quiet=True), sets, results)
    return json.loads((Path(out) / "summary.json").read_text())["sets"]


def cosegment_sets(root: str | Path, out: str | Path, *, num_workers: int = 2, **options: Any) -> dict[str, str]:
    """Co-segmentation of every set of ROOT on Ray workers (see :func:`sets_job`)."""
    return sets_job("cosegmentation", root, out, num_workers=num_workers, **options)


def part_cosegment_sets(root: str | Path, out: str | Path, *, num_workers: int = 2, **options: Any) -> dict[str, str]:
    """Part co-segmentation of every set of ROOT on Ray workers (see :func:`sets_job`)."""
    return sets_job("parts", root, out, num_workers=num_workers, **options)


COMMANDS.extend(_register_app(app) for app in APPS.values())


def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    from vitdense.eval.runner import add_evaluate_parser  # the command's options and logic live there
    add_evaluate_parser(sub)


COMMANDS.append(_register_evaluate)

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # a deprecated command name runs, and is recorded (summary.json, progress), as its application's id
    args.command = APP_ALIASES.get(args.command, args.command)
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

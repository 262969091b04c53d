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


def add_descriptor_options(p: argparse.ArgumentParser, layer: int = 11, bin: bool = False) -> None:
    """The paper's descriptor options: --layer --facet --stride --load-size --bin."""
    p.add_argument("--layer", type=int, nargs="+", default=[layer], help=f"block index/indices (default {layer})")
    p.add_argument("--facet", default="key", choices=FACETS, help="descriptor facet (default key)")
    p.add_argument("--stride", type=int, default=None,
                   help="patch-embedding stride; must divide the patch size (default: half the patch)")
    p.add_argument("--load-size", type=_load_size, default=224,
                   help="smaller image side after resize in pixels, or 'none' to keep the size (default 224)")
    p.add_argument("--bin", action=argparse.BooleanOptionalAction, default=bin,
                   help=f"log-binning (default {'on' if bin else 'off'})")
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
    from safetensors.torch import save_file
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
    save_file(tensors, str(out), metadata=meta)
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

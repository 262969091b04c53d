"""Descriptor extraction: vitdense against the original research code, times and peak memory.

One 224-px image (skimage's chelsea cropped to the 4:3 aspect of the official ``cat.jpg``: a
55 x 73 grid, 4015 patches, at stride 4), the paper's DINO ViT-S/8 architecture with random
weights (timing does not depend on them; see ``_common.random_weights_extractor``), stride 4.

Every row runs in a fresh Python process (peak RSS = that measurement alone, model and libraries
included, like the reference's one-process-per-measurement figures). Each process runs a warm-up,
then ``--repeats`` timed runs; the table shows the median.

Columns:
* ``vitdense``: the library (``Extractor.forward`` / ``Extractor.extract``).
* ``orig-style``: an "original-style" baseline built in this file from the SAME timm model, doing
  what the official ``extractor.py`` does: unfused attention (``fused_attn = False``: every block
  materialises the B x H x T x T attention), all 12 blocks (+ final norm) with forward hooks
  whatever the layer asked for, the key facet re-computed by a hook on the attention module,
  saliency from a second full pass hooking the last block's attention matrix, and log-binning by
  the official nested Python loop over the grid (re-implemented below with the same structure).
  It is measured here, side by side on this very machine and load.
* ``reference``: the original code's figures from ``../shared/reference/original-code.md``
  (parsed; '-' where the file has no such row).

Run: ``python bench/bench_extract.py`` (2.5-5 minutes on the 2-core CPU, by load; ``--quick`` under 2,
``--device cuda`` on a GPU). See ``bench/README.md``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

STRIDE = 4
LOAD_SIZE = 224

# name -> (label, reference-row matcher (words that must appear, words that must not))
ROWS: dict[str, tuple[str, tuple[tuple[str, ...], tuple[str, ...]] | None]] = {
    "forward": ("forward only (layer 11 token)", None),
    "key11": ("key, layer 11, no bin (4015 x 384)", (("key", "layer 11", "no bin"), ())),
    "key9bin": ("key, layer 9, log-binned (4015 x 6528)", (("key", "layer 9", "log-binned"), ())),
    "saliency": ("saliency map alone", (("saliency",), ())),
    "key9bin+sal": ("key layer 9 log-binned + saliency", None),
}
TARGET_ROW = "key9bin"
TARGET_SPEEDUP = 20.0     # issue: log-binned descriptor extraction at least 20x faster ...
TARGET_MEMORY = 0.25      # ... with at most 1/4 of the peak memory


# =============================================================================== vitdense
def ours_step(ex, image, row: str, load_size: int = LOAD_SIZE) -> Callable[[], Any]:
    """The library call measured by ``row`` (descriptors from the image, preprocessing included)."""
    if row == "forward":
        tensor, _geometry = ex.preprocess(image, load_size, STRIDE)
        batch = tensor[None]
        return lambda: ex.forward(batch, [11], facet="token", stride=STRIDE)
    kw = dict(stride=STRIDE, load_size=load_size, facet="key")
    if row == "key11":
        return lambda: ex.extract(image, layer=11, **kw)
    if row == "key9bin":
        return lambda: ex.extract(image, layer=9, bin=True, **kw)
    if row == "saliency":  # the pass stops at the last block's q, k (its key descriptors come free)
        return lambda: ex.extract(image, layer=11, saliency=True, **kw)
    if row == "key9bin+sal":
        return lambda: ex.extract(image, layer=9, bin=True, saliency=True, **kw)
    raise ValueError(row)


# =============================================================================== original style
class OriginalStyle:
    """What the official ``ViTExtractor`` does, on the same timm model (see the module docstring).

    The official code hooks ``model.blocks[i]`` (token), ``blocks[i].attn`` (query / key / value,
    re-computing ``qkv`` from the hooked input) or ``blocks[i].attn.attn_drop`` (the attention
    matrix), then runs the whole model. Its DINO ViT feeds ``cls + patches`` (positional encoding
    bicubically resized to the grid) through 12 blocks and the final norm.
    """

    SALIENCY_HEADS = [0, 2, 4, 5]

    def __init__(self, ex) -> None:
        self.ex = ex
        self.model = ex.model
        for blk in self.model.blocks:
            blk.attn.fused_attn = False  # materialise softmax(q k^T) like the original's DINO ViT
        self.feats: list[torch.Tensor] = []
        self.num_patches = (0, 0)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """DINO's ``prepare_tokens`` with the stride patched to ``STRIDE``."""
        m = self.model
        proj = m.patch_embed.proj
        x = F.conv2d(images, proj.weight, proj.bias, stride=STRIDE)
        h, w = x.shape[-2:]
        self.num_patches = (h, w)
        x = x.flatten(2).transpose(1, 2)
        pos = m.pos_embed[:, 1:]
        g = int(math.sqrt(pos.shape[1]))
        pos = F.interpolate(pos.reshape(1, g, g, -1).permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, h * w, -1)
        cls = m.cls_token.expand(x.shape[0], -1, -1) + m.pos_embed[:, :1]
        return torch.cat([cls, x + pos], dim=1)

    def _run(self, images: torch.Tensor, layer: int, facet: str) -> torch.Tensor:
        """Hook ``layer``'s ``facet``, run ALL blocks and the final norm, return the hooked tensor."""
        blk = self.model.blocks[layer]
        self.feats = []
        if facet == "token":
            handle = blk.register_forward_hook(lambda mod, inp, out: self.feats.append(out))
        elif facet == "attn":
            handle = blk.attn.attn_drop.register_forward_hook(lambda mod, inp, out: self.feats.append(out))
        else:
            index = {"query": 0, "key": 1, "value": 2}[facet]

            def hook(mod, inp, out):
                x = inp[0]
                B, N, Ch = x.shape
                qkv = mod.qkv(x).reshape(B, N, 3, mod.num_heads, Ch // mod.num_heads).permute(2, 0, 3, 1, 4)
                self.feats.append(qkv[index])  # B x heads x t x d
            handle = blk.attn.register_forward_hook(hook)
        x = self.tokens(images)
        for b in self.model.blocks:
            x = b(x)
        self.model.norm(x)
        handle.remove()
        return self.feats[0]

    def log_bin(self, x: torch.Tensor, hierarchy: int = 2) -> torch.Tensor:
        """The official ``_log_bin``: pooled maps per level, then a Python loop over every grid cell
        copying each of its ``1 + 8 * hierarchy`` bins with a per-cell slice assignment.
        x: B x heads x t x d (no CLS) -> B x 1 x t x (1 + 8 * hierarchy) * d * heads."""
        B = x.shape[0]
        gh, gw = self.num_patches
        bins = 1 + 8 * hierarchy
        grid = x.permute(0, 2, 3, 1).flatten(start_dim=-2).permute(0, 2, 1).reshape(B, -1, gh, gw)
        dim = grid.shape[1]
        pooled = [torch.nn.AvgPool2d(3 ** k, stride=1, padding=3 ** k // 2, count_include_pad=False)(grid)
                  for k in range(hierarchy)]
        out = torch.zeros((B, dim * bins, gh, gw)).to(x.device)
        for y in range(gh):
            for xx in range(gw):
                part = 0
                for k in range(hierarchy):
                    size = 3 ** k
                    for i in range(y - size, y + size + 1, size):
                        for j in range(xx - size, xx + size + 1, size):
                            if i == y and j == xx and k != 0:
                                continue
                            if 0 <= i < gh and 0 <= j < gw:
                                out[:, part * dim:(part + 1) * dim, y, xx] = pooled[k][:, :, i, j]
                            else:  # border: the nearest cell inside the grid
                                ci = max(0, min(i, gh - 1))
                                cj = max(0, min(j, gw - 1))
                                out[:, part * dim:(part + 1) * dim, y, xx] = pooled[k][:, :, ci, cj]
                            part += 1
        return out.flatten(start_dim=-2).permute(0, 2, 1).unsqueeze(dim=1)

    def descriptors(self, images: torch.Tensor, layer: int, facet: str = "key", bin: bool = False):
        x = self._run(images, layer, facet)
        if facet == "token":
            x = x.unsqueeze(1)
        x = x[:, :, 1:, :]  # drop CLS
        if not bin:
            return x.permute(0, 2, 3, 1).flatten(start_dim=-2).unsqueeze(dim=1)
        return self.log_bin(x)

    def saliency(self, images: torch.Tensor) -> torch.Tensor:
        attn = self._run(images, 11, "attn")  # B x heads x t x t
        cls = attn[:, self.SALIENCY_HEADS, 0, 1:].mean(dim=1)
        lo, hi = cls.min(dim=1)[0], cls.max(dim=1)[0]
        return (cls - lo) / (hi - lo)


def original_step(ex, image, row: str, load_size: int = LOAD_SIZE) -> Callable[[], Any]:
    orig = OriginalStyle(ex)
    tensor, _geometry = ex.preprocess(image, load_size, STRIDE)
    batch = tensor[None].to(ex.device)

    def run() -> Any:
        with torch.no_grad():
            if row == "forward":
                return orig._run(batch, 11, "token")
            if row == "key11":
                return orig.descriptors(batch, 11, "key")
            if row == "key9bin":
                return orig.descriptors(batch, 9, "key", bin=True)
            if row == "saliency":
                return orig.saliency(batch)
            if row == "key9bin+sal":  # the official code has no joint pass: two full passes
                return orig.descriptors(batch, 9, "key", bin=True), orig.saliency(batch)
        raise ValueError(row)
    return run


# =============================================================================== worker
def worker(args: argparse.Namespace) -> None:
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    ex = C.random_weights_extractor(device=args.device, dtype=args.dtype)
    image = C.bench_image()
    make = ours_step if args.impl == "ours" else original_step
    step = make(ex, image, args.row)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with C.PeakMemory() as mem:  # libraries + model + image are loaded: the measured part starts
        warm = args.warmup_size
        for _ in range(args.warmup):
            if warm and warm != LOAD_SIZE:  # a smaller image: warms threads and allocator, costs less
                make(ex, image, args.row, load_size=warm)()
            else:
                step()
        times, cpu = [], []
        for _ in range(args.repeats):
            dt, dc, _out = C.timed_cpu(step, args.device)
            del _out  # a run's result is not alive during the next run
            times.append(dt)
            cpu.append(dc)
    result = dict(row=args.row, impl=args.impl, times=times, median=statistics.median(times),
                  min=min(times), cpu=cpu, cpu_median=statistics.median(cpu),
                  threads=torch.get_num_threads(), **mem.as_dict())
    if args.device.startswith("cuda"):
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    C.emit(result)


# =============================================================================== driver
def measure(impl: str, row: str, args: argparse.Namespace, repeats: int, warmup_size: int | None) -> dict:
    cli = ["--worker", "--impl", impl, "--row", row, "--device", args.device, "--dtype", args.dtype, "--repeats", str(repeats),
           "--warmup", str(args.warmup)]
    if args.threads:
        cli += ["--threads", str(args.threads)]
    if warmup_size:
        cli += ["--warmup-size", str(warmup_size)]
    res = C.run_worker(Path(__file__), cli)
    if "error" in res:
        print(f"  ! {res['error']}", file=sys.stderr)
    else:
        print(f"  {impl:9s} {row:12s} median {res['median']:7.2f} s  peak RSS {res['peak_rss_mib']:6.0f} MiB "
              f"(+{res['work_mib']:.0f} over setup)  "
              f"(runs: {', '.join(f'{t:.2f}' for t in res['times'])}; CPU s: "
              f"{', '.join(f'{t:.2f}' for t in res['cpu'])})", file=sys.stderr, flush=True)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_device_args(p)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per vitdense row (median shown); default 3, 1 with --quick")
    p.add_argument("--baseline-repeats", type=int, default=1,
                   help="timed runs per original-style row (each 6-30 s on the 2-core CPU, by load); default 1")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per process (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="1 repeat, and the original-style baseline only for the target row")
    p.add_argument("--no-baseline", action="store_true", help="skip the original-style baseline")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    # worker mode (one measurement in this process)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=["ours", "original"], help=argparse.SUPPRESS)
    p.add_argument("--row", choices=list(ROWS), help=argparse.SUPPRESS)
    p.add_argument("--warmup-size", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available here")
    if args.worker:
        args.repeats = args.repeats or 1
        return worker(args)

    repeats = args.repeats or (1 if args.quick else 3)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}: choose from {', '.join(ROWS)}")
    baseline_rows = [] if args.no_baseline else ([TARGET_ROW] if args.quick else rows)
    ref_rows = C.read_reference()
    machine = C.machine_line(args.device)
    print(f"# bench_extract: {machine}", file=sys.stderr)
    t_start = time.perf_counter()

    ours, orig = {}, {}
    for row in rows:  # interleaved, so that a change of load hits both columns alike
        ours[row] = measure("ours", row, args, repeats, None)
        if row in baseline_rows:
            # the baseline's warm-up runs on a 168-px image (same code path, a quarter of the cost)
            orig[row] = measure("original", row, args, args.baseline_repeats, 168)

    def ref_of(row: str) -> dict | None:
        match = ROWS[row][1]
        return None if match is None else C.find_reference(ref_rows, *match[0], exclude=match[1])

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    dev = args.device
    print(f"\n## Descriptor extraction, DINO ViT-S/8 (random weights), {dev} {args.dtype}, one image, 55 x 73 grid, "
          "stride 4\n")
    print(machine)
    print(f"vitdense: median of {repeats} run(s) after {args.warmup} warm-up; orig-style: median of "
          f"{args.baseline_repeats} run(s) (warm-up on a 168-px image); a fresh process per cell.\n")

    def cell(d: dict, key: str, digits: int) -> str:
        return C.fmt(d.get(key), digits)

    lines = []
    for row in rows:
        o, b, ref = ours[row], orig.get(row, {}), ref_of(row) or {}
        lines.append([ROWS[row][0], cell(o, "median", 2), cell(o, "min", 2), cell(b, "median", 2),
                      C.fmt(ratio(b.get("median"), o.get("median")), 1, "x"),
                      cell(o, "cpu_median", 1), cell(b, "cpu_median", 1),
                      C.fmt(ratio(b.get("cpu_median"), o.get("cpu_median")), 1, "x"),
                      C.fmt(ref.get("seconds"), 1), C.fmt(ratio(ref.get("seconds"), o.get("median")), 1, "x")])
    print("Time (seconds; wall clock unless 'CPU': CPU time of the process, all threads; "
          "speed-up = other / vitdense)\n")
    print(C.table(["measurement", "vitdense", "vitdense min", "orig-style", "speed-up", "vitdense CPU",
                   "orig-style CPU", "speed-up CPU", "reference", "speed-up vs ref"], lines))
    lines = []
    for row in rows:
        o, b, ref = ours[row], orig.get(row, {}), ref_of(row) or {}
        lines.append([ROWS[row][0], cell(o, "peak_rss_mib", 0), cell(b, "peak_rss_mib", 0),
                      C.fmt(ratio(o.get("peak_rss_mib"), b.get("peak_rss_mib")), 2),
                      C.fmt(ref.get("rss_mib"), 0),
                      C.fmt(ratio(o.get("peak_rss_mib"), ref.get("rss_mib")), 2),
                      cell(o, "work_mib", 0), cell(b, "work_mib", 0),
                      C.fmt(ratio(o.get("work_mib"), b.get("work_mib")), 2)])
    setup = [ours[r]["setup_rss_mib"] for r in rows if "setup_rss_mib" in ours[r]]
    print("\nPeak memory (MiB; ratio = vitdense / other, lower is better). 'peak RSS' is the whole "
          "process (ru_maxrss), like the reference; 'above setup' is the peak minus the RSS once "
          "torch, timm, the model and the image are loaded"
          + (f" (~{statistics.median(setup):.0f} MiB here)" if setup else "") + ".\n")
    print(C.table(["measurement", "vitdense peak RSS", "orig-style peak RSS", "ratio", "reference",
                   "ratio vs ref", "vitdense above setup", "orig-style above setup", "ratio"], lines))

    print("\nTargets (issue): log-binned descriptor extraction (key, layer 9) >= "
          f"{TARGET_SPEEDUP:.0f}x faster, peak memory <= 1/{1 / TARGET_MEMORY:.0f}")
    o = ours.get(TARGET_ROW, {})
    ref = ref_of(TARGET_ROW) or {}
    base = orig.get(TARGET_ROW, {})
    checks = [("speed-up vs reference", ratio(ref.get("seconds"), o.get("median")), TARGET_SPEEDUP, True),
              ("speed-up vs orig-style (this run)", ratio(base.get("median"), o.get("median")), TARGET_SPEEDUP, True),
              ("speed-up vs orig-style (this run), CPU time", ratio(base.get("cpu_median"), o.get("cpu_median")),
               TARGET_SPEEDUP, True),
              ("peak RSS vs reference", ratio(o.get("peak_rss_mib"), ref.get("rss_mib")), TARGET_MEMORY, False),
              ("peak RSS vs orig-style (this run)", ratio(o.get("peak_rss_mib"), base.get("peak_rss_mib")),
               TARGET_MEMORY, False),
              ("memory above setup vs orig-style (this run)", ratio(o.get("work_mib"), base.get("work_mib")),
               TARGET_MEMORY, False)]
    for name, value, target, higher in checks:
        if value is None:
            print(f"- {name}: not measured")
            continue
        met = value >= target if higher else value <= target
        shown = f"{value:.1f}x" if higher else f"{value:.2f}"
        print(f"- {name}: {shown} -> {'MET' if met else 'NOT met'}")
    if dev.startswith("cuda"):
        print("\nGPU peak allocated (MiB): " + ", ".join(
            f"{r}: {ours[r].get('peak_cuda_mib', float('nan')):.0f}" for r in rows))
    print(f"\n(total bench time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()

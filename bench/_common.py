"""Shared helpers of the benchmark scripts (not part of the vitdense package).

* :func:`random_weights_extractor`: an :class:`~vitdense.Extractor` of the paper's architecture
  (DINO ViT-S/8, timm ``vit_small_patch8_224``) with RANDOM weights (``pretrained=False``: timm's
  seeded initialisation). Timing and memory do not depend on the weights, the benchmarks run
  offline, and the original code's figures in ``../shared/reference/original-code.md`` were also
  measured with random weights.
* the images (real photos from ``skimage.data``, no downloads);
* :func:`read_reference`: the markdown table of the reference file, parsed (no number is
  hard-coded here);
* :func:`run_worker`: run one measurement in a fresh Python process, so that its peak RSS
  (``getrusage(RUSAGE_SELF).ru_maxrss``) is that measurement's alone;
* table formatting and a one-line description of the machine.
"""
from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the scripts run as ``python bench/xxx.py`` from a checkout
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REFERENCE = REPO.parent / "shared" / "reference" / "original-code.md"
PAPER_MODEL = "dino_vits8"


# --------------------------------------------------------------------------- the extractor
def random_weights_extractor(model: str = PAPER_MODEL, device: str = "cpu", seed: int = 0,
                             dtype: str | None = None):
    """``Extractor(model, device, dtype, pretrained=False)``: timm's (seeded) random initialisation."""
    from vitdense.features.extractor import Extractor
    torch.manual_seed(seed)
    return Extractor(model, device=device, dtype=dtype, pretrained=False)


def add_device_args(p: Any) -> None:
    """``--device`` and ``--dtype`` of an argparse parser, as every CPU-first bench has them."""
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (when available)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="network precision (default fp32; fp16 needs a GPU)")


def sync(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU) before reading a clock."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- images
def _rgb(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(a[..., :3]).astype(np.uint8))


def bench_image() -> Image.Image:
    """skimage's chelsea (300 x 451) centre-cropped to 300 x 400, the 4:3 aspect of the official
    ``cat.jpg``: at load size 224 it becomes 224 x 298 px, a 55 x 73 grid (4015 patches) at
    stride 4 with patch 8, the reference's grid."""
    from skimage import data
    a = data.chelsea()
    x0 = (a.shape[1] - 400) // 2
    return _rgb(a[:, x0:x0 + 400])


def photo_set() -> list[tuple[str, Image.Image]]:
    """Ten real photos from ``skimage.data`` (bundled, no download), grey ones as RGB."""
    from skimage import data
    left, right, _disp = data.stereo_motorcycle()
    return [("chelsea (4:3 crop)", bench_image()), ("astronaut", _rgb(data.astronaut())),
            ("coffee", _rgb(data.coffee())), ("rocket", _rgb(data.rocket())),
            ("motorcycle left", _rgb(left)), ("motorcycle right", _rgb(right)),
            ("camera", _rgb(data.camera())), ("immunohistochemistry", _rgb(data.immunohistochemistry())),
            ("hubble_deep_field", _rgb(data.hubble_deep_field())), ("coins", _rgb(data.coins()))]


def image_pair() -> tuple[tuple[str, Image.Image], tuple[str, Image.Image]]:
    """A real stereo pair (skimage's ``stereo_motorcycle``, 500 x 741 each: a 55 x 81 grid,
    4455 patches per image at load size 224 and stride 4, slightly more than the reference's
    cat / ibex pair)."""
    from skimage import data
    left, right, _disp = data.stereo_motorcycle()
    return ("motorcycle left", _rgb(left)), ("motorcycle right", _rgb(right))


# --------------------------------------------------------------------------- the reference
def read_reference(path: Path = REFERENCE) -> list[dict[str, Any]]:
    """Rows of the markdown table in the reference file: ``{"measurement", "seconds", "rss_mib"}``."""
    rows = []
    if not path.is_file():
        return rows
    header = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            header = None if not line else header
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rec = dict(zip(header, cells))
        meas = rec.get("measurement", cells[0])
        sec = next((v for k, v in rec.items() if "second" in k), None)
        rss = next((v for k, v in rec.items() if "rss" in k or "mib" in k), None)
        rows.append({"measurement": meas, "seconds": _number(sec), "rss_mib": _number(rss)})
    return rows


def _number(text: str | None) -> float | None:
    m = re.search(r"[-+]?\d[\d,]*(?:\.\d+)?", text or "")
    return float(m.group(0).replace(",", "")) if m else None


def find_reference(rows: list[dict[str, Any]], *must: str, exclude: Sequence[str] = ()) -> dict | None:
    """The one reference row whose measurement text contains every word of ``must`` (case-insensitive)
    and none of ``exclude``; None when there is no such row or more than one."""
    hits = [r for r in rows if all(m.lower() in r["measurement"].lower() for m in must)
            and not any(e.lower() in r["measurement"].lower() for e in exclude)]
    return hits[0] if len(hits) == 1 else None


# --------------------------------------------------------------------------- measuring
def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux: ru_maxrss is in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS high-water mark (Linux >= 4.0: ``clear_refs`` 5), so that a
    later :func:`peak_rss_mib` covers only what ran after it. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak RSS of a measured section, separately from the set-up before it.

    ``total_mib``: the whole process's peak (set-up included, like the reference's figures);
    ``setup_mib``: the RSS when the section starts; ``work_mib``: the section's peak above it.
    """

    def __enter__(self) -> "PeakMemory":
        self.setup_peak = peak_rss_mib()
        self.setup_mib = current_rss_mib()
        self.reset = reset_peak_rss()
        return self

    def __exit__(self, *exc: Any) -> None:
        peak = peak_rss_mib()
        self.total_mib = max(self.setup_peak, peak)
        self.work_mib = max(0.0, peak - self.setup_mib)

    def as_dict(self) -> dict[str, float]:
        return dict(peak_rss_mib=self.total_mib, setup_rss_mib=self.setup_mib, work_mib=self.work_mib)


def current_rss_mib() -> float:
    """This process's resident set size now, in MiB."""
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2 ** 20
    except ImportError:  # pragma: no cover - psutil is a dev dependency
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """(wall seconds, result) of ``fn()``."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def timed_cpu(fn: Callable[[], Any], device: str) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, all threads, result) of ``fn()``. On a shared
    machine the CPU time moves less with the load than the wall time (waiting for a core is not
    counted; threads spinning at a barrier are)."""
    c0 = time.process_time()
    wall, out = timed(fn, device)
    return wall, time.process_time() - c0, out


def run_worker(script: Path, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """Run ``python script --worker ... args`` in a fresh process; its last stdout line is JSON."""
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        return {"error": f"worker {' '.join(args)} failed (rc {proc.returncode}): " + " | ".join(tail)}
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """A worker's result, as the last stdout line."""
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- printing
def fmt(x: float | None, digits: int = 2, suffix: str = "") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}{suffix}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A markdown table (first column left-aligned, the others right-aligned)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def machine_line(device: str = "cpu") -> str:
    """Date, CPU / GPU, thread count and load average, for the README tables."""
    cpu = platform.processor() or platform.machine()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [time.strftime("%Y-%m-%d %H:%M"), f"{cpu}, {os.cpu_count()} cores",
             f"torch {torch.__version__} ({torch.get_num_threads()} threads)"]
    if str(device).startswith("cuda") and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    try:
        parts.append("load average %.1f / %.1f / %.1f (other processes share the machine)" % os.getloadavg())
    except OSError:
        pass
    return "; ".join(parts)

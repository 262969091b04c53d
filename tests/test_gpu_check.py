"""The one-call GPU check stays runnable: shell syntax, and every file it runs exists.

(The script's own CPU dry run, ``bash bench/gpu_check.sh --dry-run``, takes about a minute; it is
the CI-like check of the script and is not repeated here.)"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"


def test_script_parses_and_names_existing_files():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    named = set(re.findall(r"\b((?:tests|bench)/[\w/]+\.py)\b", text))
    assert {"tests/test_device.py", "bench/bench_gpu.py", "bench/bench_extract.py"} <= named
    assert all((REPO / p).is_file() for p in named), sorted(p for p in named if not (REPO / p).is_file())

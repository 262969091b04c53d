"""The one-call GPU check stays runnable: shell syntax, and every file it runs exists.

(The script's own CPU dry run, ``bash bench/gpu_check.sh --dry-run``, takes about a minute; it is
the CI-like check of the script and is not repeated here.)"""
from __future__ import annotations

import re
import subprocess

from tests import REPO

SCRIPT = REPO / "bench" / "gpu_check.sh"


def test_script_parses_and_names_existing_files():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    named = set(re.findall(r"\b((?:tests|bench)/[\w/]+\.py)\b", text))
    assert {"tests/test_device.py", "bench/bench_gpu.py", "bench/bench_extract.py"} <= named
    assert all((REPO / p).is_file() for p in named), sorted(p for p in named if not (REPO / p).is_file())


def test_script_reports_the_issue_19_rows_and_the_layer_verdict():
    """The check measures what issue 19 asks (the bench rows exist) and says whether the layer passed."""
    text = SCRIPT.read_text()
    bench = (REPO / "bench" / "bench_gpu.py").read_text()
    assert "tests/ops/test_refine.py" in text and "CUDA test layer" in text
    assert ': PASSED**' in text and ': FAILED**' in text
    for row in ("raw forward ceiling", "ratio extract / raw forward", "model FLOP utilisation",
                "extract-dataset worker", "network / refinement / other"):
        assert row in bench, row
    # pydensecrf is no longer needed on CUDA: its build runs last, and only with time left
    assert text.index("build pydensecrf2") > text.index("pair selection")
    assert "GPU_CHECK_CRF_S" in text

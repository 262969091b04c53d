"""The deprecated module paths (vitdense.moved): every old path still imports, as the very module at
its new path, and warns once with a DeprecationWarning that names the new path."""
from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO
from vitdense.moved import MOVED

#: run in a fresh interpreter, so that no old path was imported before
PROBE = """
import importlib, json, sys, warnings
out = {}
for old, new in json.loads(sys.argv[1]).items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
        again = importlib.import_module(old)
    out[old] = dict(same=module is importlib.import_module(new) and again is module,
                    warnings=[str(w.message) for w in caught if w.category is DeprecationWarning])
print(json.dumps(out))
"""


def test_every_old_path_is_the_new_module_and_warns_once():
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(MOVED)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.splitlines()[-1])
    assert set(got) == set(MOVED) and len(MOVED) > 20
    for old, new in MOVED.items():
        assert got[old]["same"], f"import {old} is not {new}"
        assert got[old]["warnings"] == [f"{old} moved to {new}; the old path will be removed"], (old, got[old])


def test_a_path_that_never_existed_still_fails():
    run = subprocess.run([sys.executable, "-c", "import vitdense.nothing_here"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr

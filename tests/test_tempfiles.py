"""Old temporary files are deleted, recent ones kept."""
from __future__ import annotations

import os
import time

from vitdense.tempfiles import Janitor, folder_bytes, gradio_delete_cache, prune


def test_prune_by_age(tmp_path):
    old, new = tmp_path / "run-old", tmp_path / "run-new"
    old.mkdir(), new.mkdir()
    (old / "a.zip").write_bytes(b"x" * 1000)
    (new / "b.zip").write_bytes(b"y" * 500)
    (tmp_path / "loose.mp4").write_bytes(b"z" * 10)
    kept = tmp_path / "example"                      # Gradio's cached copy of an example file
    kept.mkdir()
    (kept / "cat_a.jpg").write_bytes(b"c" * 7)
    past = time.time() - 3600
    for p in (old, old / "a.zip", tmp_path / "loose.mp4", kept, kept / "cat_a.jpg"):
        os.utime(p, (past, past))
    assert folder_bytes(tmp_path) == 1517
    assert prune(tmp_path, max_age_s=600, keep=frozenset({("cat_a.jpg", 7)})) == (2, 1010)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example", "run-new"]
    assert prune(tmp_path / "missing", 1) == (0, 0)


def test_janitor_runs_on_its_schedule(tmp_path):
    (tmp_path / "x").write_bytes(b"1")
    j = Janitor([tmp_path], max_age_s=0.2, every_s=0.1).start()
    try:
        deadline = time.monotonic() + 5
        while any(tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        j.stop()
    assert not any(tmp_path.iterdir()) and j.removed == 1
    assert gradio_delete_cache(1800, 300) == (300, 1800)

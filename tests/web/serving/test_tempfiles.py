"""Old temporary files are deleted, recent ones kept; above the byte ceiling the oldest go first."""
from __future__ import annotations

import os
import time
from pathlib import Path

from vitdense.web.serving.tempfiles import Janitor, cap, folder_bytes, gradio_delete_cache, prune


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
        # the count is added after the pass: wait for both (the folder empties first)
        while (any(tmp_path.iterdir()) or j.removed < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        j.stop()
    assert not any(tmp_path.iterdir()) and j.removed == 1
    assert gradio_delete_cache(1800, 300) == (300, 1800)


def test_cap_deletes_the_oldest_first_across_roots(tmp_path):
    ours, cache = tmp_path / "ours", tmp_path / "cache"
    ours.mkdir(), cache.mkdir()
    now = time.time()

    def entry(root, name, size, age_s):
        path = root / name
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age_s, now - age_s))

    entry(ours, "oldest.zip", 400, 900)
    entry(cache, "cat_a.jpg", 300, 1000)          # an example's cached copy: never deleted, counted
    entry(cache, "older.png", 300, 600)
    entry(ours, "old.zip", 300, 300)
    entry(cache, "young.png", 500, 5)             # a visitor is probably downloading it
    keep = frozenset({("cat_a.jpg", 300)})
    assert cap([ours, cache], 10_000, now=now, keep=keep) == (0, 0)  # under the ceiling: nothing
    assert cap([ours, cache], 1200, now=now, keep=keep) == (2, 700)  # 1800 -> 1100: oldest two
    assert sorted(p.name for p in tmp_path.rglob("*.*")) == ["cat_a.jpg", "old.zip", "young.png"]
    assert cap([ours, cache, tmp_path / "missing"], 1, now=now, keep=keep) == (1, 300)
    assert sorted(p.name for p in tmp_path.rglob("*.*")) == ["cat_a.jpg", "young.png"]


def test_janitor_holds_the_ceiling(tmp_path):
    past = time.time() - 120
    for i in range(4):                             # young by age (30 min), too many bytes
        (tmp_path / f"run-{i}").write_bytes(b"x" * 1000)
        os.utime(tmp_path / f"run-{i}", (past + i, past + i))
    j = Janitor([tmp_path], every_s=3600, max_bytes=2500, grace_s=60)
    assert j.run_once() == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["run-2", "run-3"]
    assert Janitor([tmp_path], max_bytes=None).run_once() == 0


def test_cap_counts_a_root_inside_another_once(tmp_path):
    """The demo's own folder lies inside Gradio's cache (vitdense.web.zips.output_root)."""
    cache = tmp_path / "gradio"
    ours = cache / "vitdense-app"
    ours.mkdir(parents=True)
    now = time.time()
    for root, name, size, age in [(ours, "run-a", 400, 900), (ours, "run-b", 400, 600),
                                  (cache, "upload", 400, 300)]:
        (root / name).write_bytes(b"x" * size)
        os.utime(root / name, (now - age, now - age))
    assert cap([ours, cache], 1200, now=now) == (0, 0)            # 1200 bytes, not 2000
    assert cap([ours, cache], 800, now=now) == (1, 400)           # the oldest run, not the folder
    assert ours.is_dir() and sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["run-b", "upload"]


def test_a_slot_holds_a_bounded_number_of_folders_whatever_their_age(tmp_path):
    """An auto-clicker's burst (every folder inside its grace period) leaves at most SLOT_MOST
    folders in its slot, the newest ones; once they age, the slot keeps its newest SLOT_KEEP."""
    import tempfile

    from vitdense.web.serving.tempfiles import SLOT_KEEP, SLOT_MOST, keep_newest
    slot = tmp_path / "v-visitor" / "correspondences-run"
    slot.mkdir(parents=True)
    made = []
    for i in range(40):                                   # 40 events in 2 s: 20 clicks a second
        made.append(Path(tempfile.mkdtemp(dir=slot)))
        (made[-1] / "corr.zip").write_bytes(b"x" * 100)
        os.utime(made[-1], (time.time() - 1 + i / 40,) * 2)    # all younger than the 2 s grace
        keep_newest(slot, made[-1])
        assert len(list(slot.iterdir())) <= SLOT_MOST
    assert sorted(slot.iterdir()) == sorted(made[-SLOT_MOST:])
    assert keep_newest(slot, made[-1], now=time.time() + 60) == SLOT_MOST - SLOT_KEEP   # aged: 2 stay
    assert sorted(slot.iterdir()) == sorted(made[-SLOT_KEEP:])
    young = keep_newest(slot, made[-1], keep=1, most=10)
    assert young == 0 and len(list(slot.iterdir())) == 2  # within the grace and the bound: kept

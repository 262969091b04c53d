"""Keeping the web demo's temporary folders bounded: old files are deleted on a schedule.

Gradio's cache of uploads and outputs is cleaned by Gradio itself (``gr.Blocks(delete_cache=
(every_s, max_age_s))``, see :func:`gradio_delete_cache`), and by :class:`Janitor` too: under many
concurrent visitors Gradio's cleanup task stopped (the soak benchmark saw its temporary folder grow
by 1.4 MiB per click). The janitor prunes the demo's own zips and Gradio's cache by age, keeping
Gradio's cached copies of the example files, then holds them under one byte ceiling (:func:`cap`:
all folders together, as they share one disk; oldest entries first, never one modified in the last
:data:`DEFAULT_GRACE_S` seconds). :func:`folder_bytes` is what the soak benchmark reports.

A visitor's slot (one folder per event of a tab and kind of output, ``vitdense.web.zips``) is
pruned by :func:`keep_newest` at every event: beyond its newest folders once they are a little
old, and beyond :data:`SLOT_MOST` folders whatever their age, so that an auto-clicker holds at
most ``SLOT_MOST`` folders per slot however fast it clicks.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger("vitdense.web.serving.tempfiles")

DEFAULT_MAX_AGE_S = 30 * 60     # a download link stays valid this long after the result
DEFAULT_EVERY_S = 5 * 60        # how often the folders are scanned
DEFAULT_MAX_BYTES = 2 << 30     # all the folders together, above it the oldest entries go first
#: an entry modified this recently is never deleted for the byte ceiling: a visitor is probably
#: still receiving it (the result's images, the zip just offered) or an upload is being written
DEFAULT_GRACE_S = 30.0
#: folders a visitor's slot keeps: the one just written and the one before it (its files may still
#: be loading in the page while the new event's outputs arrive)
SLOT_KEEP = 2
#: a slot's folder younger than this is kept beyond :data:`SLOT_KEEP`: a concurrent event of the
#: same visitor may still be writing it, or the page still loading it
SLOT_GRACE_S = 2.0
#: the most folders a slot holds, whatever their age (a click rate of 20/s x the 2 s grace would
#: otherwise leave 40): the oldest go first, even inside their grace
SLOT_MOST = 4


def gradio_delete_cache(max_age_s: float = DEFAULT_MAX_AGE_S,
                        every_s: float = DEFAULT_EVERY_S) -> tuple[int, int]:
    """The ``delete_cache=(frequency, age)`` argument of ``gr.Blocks`` (whole seconds, >= 1)."""
    return max(1, int(round(every_s))), max(1, int(round(max_age_s)))


def prune(root: str | os.PathLike, max_age_s: float, now: float | None = None,
          keep: frozenset = frozenset()) -> tuple[int, int]:
    """Delete the entries directly under ``root`` (files or folders) last modified more than
    ``max_age_s`` seconds ago; returns (entries removed, bytes freed). A missing root is empty.

    ``keep``: (file name, size) pairs never deleted, nor the folders holding them (Gradio's cached
    copies of the page's example files, which the page links to)."""
    root = Path(root)
    now = time.time() if now is None else now
    removed = freed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            if now - _newest_mtime(entry) <= max_age_s or (keep and _holds(entry, keep)):
                continue
            freed += folder_bytes(entry)
            _remove(entry)
            removed += 1
        except OSError:
            continue
    return removed, freed


def cap(roots: list[str | os.PathLike], max_bytes: int, grace_s: float = DEFAULT_GRACE_S,
        now: float | None = None, keep: frozenset = frozenset()) -> tuple[int, int]:
    """Delete the entries directly under ``roots`` (all roots together; a root inside another one
    counts as a root, not as an entry), oldest first, until their files hold at most ``max_bytes``;
    returns (entries removed, bytes freed).

    Entries modified in the last ``grace_s`` seconds and those holding a ``keep`` file stay (and
    count), even when that leaves the folders above ``max_bytes``."""
    now = time.time() if now is None else now
    total, candidates = 0, []
    nested = {Path(r).resolve() for r in roots}     # a root inside another counts once, as a root
    for root in roots:
        try:
            entries = list(Path(root).iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.resolve() in nested:
                    continue
                size, mtime = folder_bytes(entry), _newest_mtime(entry)
                total += size
                if now - mtime > grace_s and not (keep and _holds(entry, keep)):
                    candidates.append((mtime, size, entry))
            except OSError:
                continue
    removed = freed = 0
    for _, size, entry in sorted(candidates, key=lambda c: c[0]):
        if total <= max_bytes:
            break
        try:
            _remove(entry)
        except OSError:
            continue
        total -= size
        removed += 1
        freed += size
    return removed, freed


def keep_newest(slot: str | os.PathLike, newest: str | os.PathLike, keep: int = SLOT_KEEP,
                grace_s: float = SLOT_GRACE_S, most: int = SLOT_MOST, now: float | None = None) -> int:
    """Delete the folders of ``slot`` except ``newest``, the ``keep - 1`` most recent others and
    those younger than ``grace_s`` seconds, and then the oldest until at most ``most`` remain
    (``newest`` never); returns the folders deleted. Folders deleted meanwhile are skipped."""
    slot, newest = Path(slot), Path(newest)
    now = time.time() if now is None else now
    others = []
    for entry in slot.iterdir():
        if entry != newest:
            try:
                others.append((entry.stat().st_mtime, entry))
            except OSError:      # deleted meanwhile (the janitor, a concurrent event)
                continue
    removed = 0
    for held, (mtime, old) in enumerate(sorted(others, reverse=True), start=2):   # newest is the first
        if held > max(keep, 1) and (now - mtime > grace_s or held > most):
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def _remove(entry: Path) -> None:
    """Remove a file or a folder tree (its size is already known to the caller)."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _newest_mtime(entry: Path) -> float:
    """The latest modification time of ``entry`` and, for a folder, of the files directly in it."""
    t = entry.lstat().st_mtime
    if entry.is_dir() and not entry.is_symlink():
        for f in entry.iterdir():
            with contextlib.suppress(OSError):
                t = max(t, f.lstat().st_mtime)
    return t


def _holds(entry: Path, keep: frozenset) -> bool:
    files = [entry] if not entry.is_dir() else [f for f in entry.iterdir() if f.is_file()]
    return any((f.name, f.lstat().st_size) in keep for f in files)


def keep_set(folder: str | os.PathLike) -> frozenset:
    """(name, size) of every file under ``folder`` (the demo's example assets)."""
    return frozenset((p.name, p.stat().st_size) for p in Path(folder).rglob("*") if p.is_file())


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path`` (a file: its size; missing: 0). Links are not followed."""
    path = Path(path)
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size if path.exists() else 0
    except OSError:
        return 0
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


class Janitor:
    """A daemon thread that prunes ``roots`` every ``every_s`` seconds: entries older than
    ``max_age_s``, then the oldest until all roots hold at most ``max_bytes`` (:func:`cap`; None: no
    ceiling). ``start()`` is idempotent; ``stop()`` ends it."""

    def __init__(self, roots: list[str | os.PathLike], max_age_s: float = DEFAULT_MAX_AGE_S,
                 every_s: float = DEFAULT_EVERY_S, keep: frozenset = frozenset(),
                 max_bytes: int | None = DEFAULT_MAX_BYTES, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.roots = [Path(r) for r in roots]
        self.keep = keep
        self.max_age_s, self.every_s = float(max_age_s), float(every_s)
        self.max_bytes, self.grace_s = max_bytes, float(grace_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.removed = 0

    def run_once(self) -> int:
        n = 0
        for root in self.roots:
            removed, freed = prune(root, self.max_age_s, keep=self.keep)
            if removed:
                log.info("deleted %d old entries (%.1f MiB) under %s", removed, freed / 2**20, root)
            n += removed
        if self.max_bytes is not None:
            removed, freed = cap(self.roots, self.max_bytes, self.grace_s, keep=self.keep)
            if removed:
                log.info("deleted the %d oldest entries (%.1f MiB) to stay under %.1f MiB", removed,
                         freed / 2**20, self.max_bytes / 2**20)
            n += removed
        self.removed += n
        return n

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a failed scan must not end the thread
                log.exception("temporary file cleanup failed")

    def start(self) -> "Janitor":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="vitdense-janitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

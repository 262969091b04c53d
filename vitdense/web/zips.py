"""What the demo hands out as files: the pictures it shows and the downloads (an application's
export, the command line's layout, as a zip), written under :func:`output_root`.

Inside a visitor's event every folder is that visitor's **slot** for the tab and the kind of
output (:func:`output_folder`): a fresh, unguessable folder per event, of which the slot keeps the
newest :data:`KEEP_PER_SLOT` and deletes the older ones (none younger than
``SLOT_GRACE_S``: a concurrent click of the same visitor may still be writing it). A click that redraws a result therefore
replaces the visitor's previous pictures instead of adding to them, and writes no zip: a run writes
its zip, and the zip of what a tab shows after clicks is built only when the visitor presses the
tab's "Prepare download" (:func:`download_zip`, its own slot). The disk a visitor holds is bounded
by what one result of each tab takes, whatever the number of clicks (``bench/bench_soak.py``
measures the growth per click).

The root lies inside Gradio's cache folder on purpose: Gradio serves such files as they are. A
numpy picture returned to a ``gr.Image`` is encoded by Gradio on every event (see
:func:`vitdense.web.patches.atomic_picture_cache`), and a zip outside the cache is hashed and
copied. The demo's janitor (``JobGate.start_janitor``) prunes the root with Gradio's cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vitdense.export import Png, as_png, zip_entries
from vitdense.web.gate import CURRENT_TAB, session_id
from vitdense.web.serving.tempfiles import SLOT_GRACE_S, SLOT_KEEP, keep_newest

__all__ = ["KEEP_PER_SLOT", "Png", "as_png", "output_root", "output_folder", "png_files", "write_zip",
           "download_zip"]

#: folders kept per (visitor, tab, kind) once older than ``SLOT_GRACE_S``:
#: :func:`vitdense.web.serving.tempfiles.keep_newest`
KEEP_PER_SLOT = SLOT_KEEP


def output_root() -> Path:
    """``vitdense-app`` inside Gradio's cache folder (``$GRADIO_TEMP_DIR``, else the system's
    temporary folder / gradio)."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()) / "vitdense-app"


def output_folder(prefix: str = "run-") -> Path:
    """A fresh folder for one event's files: in a visitor's event, in that visitor's slot for the
    running tab and ``prefix`` (older folders of the slot beyond :data:`KEEP_PER_SLOT` are deleted);
    outside one (tests, benchmarks), directly under :func:`output_root`."""
    root = output_root()
    session = session_id()
    if not session:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    visitor = hashlib.sha256(session.encode()).hexdigest()[:20]
    slot = root / f"v-{visitor}" / f"{CURRENT_TAB.get() or 'page'}-{prefix.strip('-') or 'run'}"
    slot.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=slot))
    # no cap on the young folders (``most``): one visitor's clicks are not queued, so a cap deletes
    # a folder a concurrent click is still writing (test_app_hardening's 40 clicks under load)
    keep_newest(slot, folder, KEEP_PER_SLOT, SLOT_GRACE_S, most=math.inf)
    for parent in (slot, slot.parent, root):   # the janitor ages a folder by its own time and its
        with contextlib.suppress(OSError):     # children's: a visitor's event keeps the chain young
            os.utime(parent)
    return folder


def png_files(pictures: Sequence[np.ndarray | bytes | None], names: Sequence[str],
              folder: Path | None = None) -> list[str | None]:
    """Write ``pictures`` (arrays or :class:`Png` bytes; None stays None) as ``<name>.png`` into
    ``folder`` (default: a fresh one); their paths, for ``gr.Image`` / ``gr.Gallery`` outputs."""
    folder = output_folder("shown-") if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)     # (a slot's folder pruned under a very slow event)
    paths: list[str | None] = []
    for picture, name in zip(pictures, names):
        if picture is None:
            paths.append(None)
            continue
        path = folder / f"{name}.png"
        path.write_bytes(as_png(picture))
        paths.append(str(path))
    return paths


def write_zip(stem: str, entries: dict[str, Any], folder: Path | None = None) -> str:
    """Zip an export (name -> uint8 array (PNG) | Png | dict/list (JSON) | bytes | str) into
    ``folder`` (default: a fresh one of the visitor's slot); returns the zip's path."""
    folder = output_folder() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    return str(zip_entries(entries, folder / f"{stem}.zip"))


def download_zip(stem: str, entries: dict[str, Any]) -> str:
    """The zip a tab's "Prepare download" builds from the visitor's current result: written into the
    visitor's download slot of the tab, which replaces the previous one; returns its path."""
    return write_zip(stem, entries, output_folder("download-"))

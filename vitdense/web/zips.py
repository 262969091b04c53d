"""Downloads: an application's export (vitdense.apps, the same layout as the command line's output
folder) written as a zip into a fresh, unguessable folder, pruned after OUTPUT_TTL_S."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..export import Png, zip_entries  # noqa: F401 (Png re-exported for tabs)

OUTPUT_ROOT = Path(tempfile.gettempdir()) / "vitdense-app"
OUTPUT_TTL_S = 2 * 3600      # downloadable zips are deleted after this long
PRUNE_INTERVAL_S = 60        # the output folder is scanned for expired zips at most this often
_last_prune = 0.0


def prune_outputs() -> None:
    """Delete output folders older than OUTPUT_TTL_S (at most every PRUNE_INTERVAL_S)."""
    global _last_prune
    now = time.time()
    if now - _last_prune < PRUNE_INTERVAL_S or not OUTPUT_ROOT.is_dir():
        return
    _last_prune = now
    for d in OUTPUT_ROOT.iterdir():
        try:
            if now - d.stat().st_mtime > OUTPUT_TTL_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def output_folder(prefix: str = "run-") -> Path:
    """A fresh folder under OUTPUT_ROOT (served to this session only)."""
    prune_outputs()
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=OUTPUT_ROOT))


def write_zip(stem: str, entries: dict[str, Any]) -> str:
    """Zip an export (name -> uint8 array (PNG) | Png | dict/list (JSON) | bytes | str); returns the
    zip's path."""
    return str(zip_entries(entries, output_folder() / f"{stem}.zip"))

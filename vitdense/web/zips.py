"""Downloads: an application's export (vitdense.apps, the same layout as the command line's output
folder) written as a zip into a fresh, unguessable folder under OUTPUT_ROOT, which the demo's
janitor (:func:`vitdense.web.guard.start_janitor`) prunes with Gradio's cache."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..export import Png, zip_entries  # noqa: F401 (Png re-exported for tabs)

OUTPUT_ROOT = Path(tempfile.gettempdir()) / "vitdense-app"


def output_folder(prefix: str = "run-") -> Path:
    """A fresh folder under OUTPUT_ROOT (served to this session only)."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=OUTPUT_ROOT))


def write_zip(stem: str, entries: dict[str, Any]) -> str:
    """Zip an export (name -> uint8 array (PNG) | Png | dict/list (JSON) | bytes | str); returns the
    zip's path."""
    return str(zip_entries(entries, output_folder() / f"{stem}.zip"))

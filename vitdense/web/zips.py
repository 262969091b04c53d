"""What the demo hands out as files: the pictures it shows and the downloads (an application's
export, the command line's layout, as a zip), written into fresh, unguessable folders under
:func:`output_root`.

The root lies inside Gradio's cache folder on purpose: Gradio serves such files as they are. A
numpy picture returned to a ``gr.Image`` is encoded by Gradio on every event (and was rewritten in
place under a concurrent download until :func:`vitdense.web.guard.atomic_picture_cache`), and a
zip outside the cache is hashed and copied. The demo's janitor
(:func:`vitdense.web.guard.start_janitor`) prunes the root with Gradio's cache.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vitdense.export import Png, as_png, zip_entries

__all__ = ["Png", "as_png", "output_root", "output_folder", "png_files", "write_zip"]


def output_root() -> Path:
    """``vitdense-app`` inside Gradio's cache folder (``$GRADIO_TEMP_DIR``, else the system's
    temporary folder / gradio)."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()) / "vitdense-app"


def output_folder(prefix: str = "run-") -> Path:
    """A fresh folder under :func:`output_root` (served to this session only)."""
    root = output_root()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def png_files(pictures: Sequence[np.ndarray | bytes | None], names: Sequence[str],
              folder: Path | None = None) -> list[str | None]:
    """Write ``pictures`` (arrays or :class:`Png` bytes; None stays None) as ``<name>.png`` into
    ``folder`` (default: a fresh one); their paths, for ``gr.Image`` / ``gr.Gallery`` outputs."""
    folder = output_folder("shown-") if folder is None else folder
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
    ``folder`` (default: a fresh one); returns the zip's path."""
    folder = output_folder() if folder is None else folder
    return str(zip_entries(entries, folder / f"{stem}.zip"))

"""Writing results: JSON-safe values, PNG encoding and unique file stems.

Shared by the command line (:mod:`vitdense.cli.main`, files in an output folder) and the web demo
(:mod:`vitdense.web`, entries of a downloadable zip), so both write the same kinds of files.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

__all__ = ["to_jsonable", "dumps", "write_json", "png_bytes", "save_png", "unique_stems", "write_atomic", "Png", "entry_bytes",
           "write_entries", "zip_entries"]


def to_jsonable(obj: Any) -> Any:
    """numpy / torch / Path / other values -> JSON types, recursively.

    Arrays and numpy scalars become lists and Python numbers; NaN and infinities become ``None``
    (JSON has no such numbers); anything else unknown becomes its ``str``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (through :func:`to_jsonable`: never a bare NaN)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json(obj: Any, path: Path) -> None:
    """:func:`dumps` ``obj`` into ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj) + "\n")


def png_bytes(arr: Any, compress_level: int = 1) -> bytes:
    """A uint8 image array (H x W, H x W x 3|4) -> PNG file bytes (fast compression by default)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_png(arr: Any, path: Path, compress_level: int = 6) -> str:
    """Write a uint8 image array as the PNG file ``path``; returns the file name."""
    path = Path(path)
    path.write_bytes(png_bytes(arr, compress_level))
    return path.name


def unique_stems(names: Sequence[str | Path], numbered: bool = False) -> list[str]:
    """File stems for ``names`` (paths or file names) that stay apart when two share a stem.

    ``numbered``: every stem is prefixed by its 1-based position (``01_cat``, ``02_cat``: uploads
    may even share a whole name). Otherwise a stem is kept as it is unless another name has it too,
    then the whole name with dots replaced is used (``a.jpg``, ``a.png`` -> ``a_jpg``, ``a_png``).
    """
    paths = [Path(n) for n in names]
    if numbered:
        return [f"{i + 1:02d}_{p.stem or 'image'}" for i, p in enumerate(paths)]
    stems = [p.stem for p in paths]
    return [p.name.replace(".", "_") if stems.count(p.stem) > 1 else p.stem for p in paths]


def current_umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 when it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file and ``os.replace``, so that
    readers and concurrent writers (threads or processes) never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would stay on the result
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- an application's export: {relative file name: value}, written as a folder or as a zip ----------
class Png(bytes):
    """Bytes of an already encoded PNG file (written as they are, never encoded again)."""


def entry_bytes(value: Any) -> bytes:
    """One export entry -> file bytes: uint8 array -> PNG; dict / list -> strict JSON; bytes as
    they are; a Path -> the file's bytes; anything else -> its text."""
    if isinstance(value, np.ndarray):
        return png_bytes(value, compress_level=6)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return (dumps(value) + "\n").encode()
    if isinstance(value, Path):
        return value.read_bytes()
    return str(value).encode()


def write_entries(entries: dict[str, Any], folder: str | os.PathLike) -> list[Path]:
    """Write an export into ``folder`` (the command line's OUT/<set>); returns the paths."""
    folder = Path(folder)
    paths = []
    for name, value in entries.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(entry_bytes(value))
        paths.append(path)
    return paths


def as_png(picture: np.ndarray | Png) -> Png:
    """A uint8 picture (H x W, H x W x 3|4) -> its PNG bytes (fast compression); PNG bytes as
    they are."""
    return picture if isinstance(picture, Png) else Png(png_bytes(picture))


def zip_entries(entries: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write an export as the zip file ``path`` (the web demo's download), in the same layout as
    :func:`write_entries`. PNG entries are stored (already compressed), the rest deflated."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                value = as_png(value)
            if isinstance(value, Png):
                zf.writestr(name, value, compress_type=zipfile.ZIP_STORED)
            else:
                zf.writestr(name, entry_bytes(value))
    return path

"""A stored descriptor data set: sharded safetensors plus a JSONL manifest, and its reader.

Written by :func:`vitdense.scale.jobs.extract_dataset` (which needs Ray); read here without Ray.

Layout of ``out_dir``::

    shards/<run>-<worker>-<seq>.safetensors   descs_<i> (T x D), saliency_<i> (h x w), cls_<i> (D)
    manifest/<run>-<worker>-<seq>.jsonl       one record per image of that shard (and its failures)
    pca.safetensors                           mean (D), components (D x k), explained_variance_ratio
                                              (k), present only with ``pca_dim``

A shard is renamed into place complete, then its manifest part is: an image counts as stored only
once its record exists, so a killed job loses at most the shards in flight and leaves no half file
that a reader would trust. Shard names carry a per-run and per-worker id, so two runs (or two
workers) never write the same name.

Record fields: ``path``, ``relpath`` (to the source folder, when there was one), ``hash`` (blake2b of
the file's bytes), ``status`` (``"ok"`` / ``"failed"``), ``reason`` (failures), ``shard``, ``index``,
``offsets`` (byte ranges of each tensor inside the shard's data section), ``shape``, ``grid``,
``geometry``, ``params`` and their ``params_key``, ``model``, ``vitdense_version``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from vitdense.errors import ParameterError
from vitdense.export import write_atomic
from vitdense.features.descriptors import Geometry, ImageDescriptors
from vitdense.ops.host import to_host

SHARDS = "shards"
MANIFEST = "manifest"
PCA_FILE = "pca.safetensors"
STORE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def content_hash(data: bytes) -> str:
    """blake2b-128 hex digest of a file's bytes (the manifest's ``hash``)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def params_key(params: dict) -> str:
    """Short stable digest of the extraction parameters (records with equal keys are comparable)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def vitdense_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("vitdense")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def safetensors_offsets(path: Path) -> dict[str, list[int]]:
    """Tensor name -> ``[start, end)`` byte range in the data section (after the JSON header)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}


def host_descriptors(descs: Sequence[ImageDescriptors], store_dtype: str = "fp32") -> list[ImageDescriptors]:
    """``descs`` as a shard stores them: descriptors in ``store_dtype``, saliency and CLS in float32,
    all on the CPU, with one device-to-host copy per dtype (:func:`vitdense.ops.host.to_host`)."""
    dtype = STORE_DTYPES[store_dtype]
    parts = [(d.descs.detach().to(dtype), None if d.saliency is None else d.saliency.detach().float(),
              None if d.cls is None else d.cls.detach().float()) for d in descs]
    copied = iter(to_host([t for p in parts for t in p if t is not None]))
    out = []
    for d, p in zip(descs, parts):
        host = [None if t is None else next(copied) for t in p]
        out.append(dataclasses.replace(d, descs=host[0], saliency=host[1], cls=host[2]))
    return out


def write_shard(out_dir: str | os.PathLike, name: str, descs: Sequence[ImageDescriptors],
                records: Sequence[dict], failures: Sequence[dict], store_dtype: str = "fp32") -> list[dict]:
    """Write one shard (``descs[i]`` belongs to ``records[i]``) and then its manifest part.

    ``records``: per stored image ``path``, ``hash`` (and optional ``relpath``), completed here with
    ``shard``, ``index``, ``offsets``, ``grid``, ``geometry``; ``failures``: records with ``status
    "failed"`` and a ``reason``. Returns every record written.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).mkdir(parents=True, exist_ok=True)
    written = []
    if descs:
        tensors = {}
        for i, d in enumerate(host_descriptors(descs, store_dtype)):
            tensors[f"descs_{i}"] = d.descs.contiguous()
            if d.saliency is not None:
                tensors[f"saliency_{i}"] = d.saliency.contiguous()
            if d.cls is not None:
                tensors[f"cls_{i}"] = d.cls.contiguous()
        shard = out / SHARDS / f"{name}.safetensors"
        write_atomic(shard, save(tensors, metadata={"format": "vitdense-shard-1"}))
        offsets = safetensors_offsets(shard)
        for i, (d, rec) in enumerate(zip(descs, records)):
            names = [k for k in (f"descs_{i}", f"saliency_{i}", f"cls_{i}") if k in offsets]
            written.append({**rec, "status": "ok", "reason": None,
                            "shard": f"{SHARDS}/{shard.name}", "index": i,
                            "offsets": {k.rsplit("_", 1)[0]: offsets[k] for k in names},
                            "shape": list(d.descs.shape), "grid": list(d.grid),
                            "geometry": dict(d.geometry.__dict__)})
    written.extend({**f, "status": "failed", "shard": None} for f in failures)
    lines = "".join(json.dumps(r, default=str) + "\n" for r in written)
    write_atomic(out / MANIFEST / f"{name}.jsonl", lines.encode())
    return written


def read_manifest(out_dir: str | os.PathLike) -> list[dict]:
    """Every record of every manifest part of ``out_dir`` (parts in name order; [] when none)."""
    folder = Path(out_dir) / MANIFEST
    if not folder.is_dir():
        return []
    records = []
    for part in sorted(folder.glob("*.jsonl")):
        records.extend(json.loads(line) for line in part.read_text().splitlines() if line.strip())
    return records


def save_pca(out_dir: str | os.PathLike, mean: torch.Tensor, components: torch.Tensor,
             explained_variance_ratio: torch.Tensor, meta: dict) -> str:
    """Store a fitted projection (mean D, components D x k); returns its content digest."""
    from safetensors.torch import save
    data = save({"mean": mean.float().contiguous(), "components": components.float().contiguous(),
                 "explained_variance_ratio": explained_variance_ratio.float().contiguous()},
                metadata={"meta": json.dumps(meta, default=str)})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out_dir) / PCA_FILE, data)
    return content_hash(data)


def load_pca(out_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, str] | None:
    """(tensors, meta, digest) of ``out_dir``'s stored projection, or None."""
    from safetensors.torch import load
    path = Path(out_dir) / PCA_FILE
    if not path.is_file():
        return None
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(json.loads(data[8:8 + n]).get("__metadata__", {}).get("meta", "{}"))
    return load(data), meta, content_hash(data)


@dataclass(frozen=True)
class PCAProjection:
    """A projection stored with the data set: ``(x - mean) @ components``, D -> k."""

    mean: torch.Tensor                       # D
    components: torch.Tensor                 # D x k
    explained_variance_ratio: torch.Tensor   # k

    def project(self, descs: torch.Tensor) -> torch.Tensor:
        """T x D descriptors (from the same extraction parameters) -> T x k."""
        return (descs.float().to(self.mean.device) - self.mean) @ self.components


class DescriptorStore:
    """Read access to a stored data set; see :func:`open_descriptors`."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        if not self.root.is_dir() or not (self.root / MANIFEST).is_dir():
            raise ParameterError(f"{self.root}: not a descriptor data set (no {MANIFEST}/ folder); "
                                 "write one with `vitdense extract-dataset`")
        self.records = read_manifest(self.root)
        self._ok: dict[str, dict] = {}
        self.failed: dict[str, str] = {}
        for rec in self.records:  # later parts win (names start with the run's time)
            if rec["status"] == "ok":
                self.failed.pop(rec["path"], None)
                for key in self._keys(rec):
                    self._ok[key] = rec
            else:
                self.failed[rec["path"]] = rec.get("reason") or "failed"
        self.paths = sorted({r["path"] for r in self._ok.values()})
        pca = load_pca(self.root)
        self.pca = None if pca is None else PCAProjection(pca[0]["mean"], pca[0]["components"],
                                                          pca[0]["explained_variance_ratio"])
        self._handles: dict[str, object] = {}

    @staticmethod
    def _keys(rec: dict) -> list[str]:
        keys = [rec["path"], os.path.abspath(rec["path"]), rec["hash"]]
        return keys + ([rec["relpath"]] if rec.get("relpath") else [])

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, key: object) -> bool:
        return self._lookup_key(key) in self._ok

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def _lookup_key(self, key: object) -> str:
        key = os.fspath(key) if isinstance(key, os.PathLike) else str(key)
        return key if key in self._ok else os.path.abspath(key)

    def record(self, key: str | os.PathLike) -> dict:
        """The manifest record of an image, by path (as listed, absolute, or relative) or hash."""
        k = self._lookup_key(key)
        if k not in self._ok:
            reason = self.failed.get(str(key))
            raise ParameterError(f"{key}: not in the data set {self.root}"
                                 + (f" (its extraction failed: {reason})" if reason else ""))
        return self._ok[k]

    def _handle(self, shard: str):
        if shard not in self._handles:
            from safetensors import safe_open
            self._handles[shard] = safe_open(str(self.root / shard), "pt")  # memory-mapped
        return self._handles[shard]

    def __getitem__(self, key: str | os.PathLike) -> ImageDescriptors:
        """The stored descriptors of one image (CPU, float32; read lazily from its shard)."""
        rec = self.record(key)
        f = self._handle(rec["shard"])
        i = rec["index"]
        names = set(rec["offsets"])
        geometry = Geometry(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec["geometry"].items()})
        return ImageDescriptors(
            f.get_tensor(f"descs_{i}").float(), geometry,
            f.get_tensor(f"saliency_{i}") if "saliency" in names else None,
            f.get_tensor(f"cls_{i}") if "cls" in names else None, dict(rec.get("params") or {}))

    def get(self, key: str | os.PathLike, default=None) -> ImageDescriptors | None:
        return self[key] if key in self else default

    def load(self, keys: Sequence[str | os.PathLike]) -> list[ImageDescriptors]:
        """Descriptors of several images, in order (e.g. one set for ``cosegment_descriptors``)."""
        return [self[k] for k in keys]

    def close(self) -> None:
        self._handles.clear()


def open_descriptors(out_dir: str | os.PathLike) -> DescriptorStore:
    """Open a data set written by :func:`vitdense.scale.jobs.extract_dataset` (no Ray needed).

    ``store[path_or_hash]`` -> :class:`ImageDescriptors` read from its memory-mapped shard;
    ``store.paths`` (stored images), ``store.failed`` (path -> reason), ``store.records``,
    ``store.pca`` (the :class:`PCAProjection` when the data set was stored reduced).
    """
    return DescriptorStore(out_dir)

"""A descriptor cache keyed by image content and every parameter that changes the result.

Applications and the web demo ask the :class:`~vitdense.features.extractor.Extractor` again with other
clustering knobs; the network runs only for (image, parameters) pairs it has not seen. Entries
live in memory (least recently used evicted past ``max_bytes``) and, optionally, on disk as
safetensors files that survive the process.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

from vitdense.export import write_atomic  # noqa: F401 (re-exported: its old home)
from vitdense.features.descriptors import Geometry, ImageDescriptors


class DescriptorCache:
    """LRU cache of :class:`ImageDescriptors` (thread-safe: the web app shares one)."""

    def __init__(self, max_bytes: int = 2 << 30, directory: str | os.PathLike | None = None) -> None:
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._items: OrderedDict[str, ImageDescriptors] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image_digest: str, params: dict) -> str:
        """Key of one image (content digest) under one parameter set."""
        blob = json.dumps(params, sort_keys=True, default=str)
        return hashlib.blake2b(f"{image_digest}|{blob}".encode(), digest_size=20).hexdigest()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def num_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> ImageDescriptors | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item
        item = self._read(key) if self.directory is not None else None
        with self._lock:
            if item is None:
                self.misses += 1
            else:
                self.hits += 1
                self._insert(key, item)
        return item

    def put(self, key: str, item: ImageDescriptors) -> None:
        with self._lock:
            self._insert(key, item)
        if self.directory is not None:
            self._write(key, item)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _insert(self, key: str, item: ImageDescriptors) -> None:
        if key in self._items:
            self._bytes -= self._items.pop(key).num_bytes
        self._items[key] = item
        self._bytes += item.num_bytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.num_bytes

    # -- disk ---------------------------------------------------------------------------------
    def _paths(self, key: str) -> tuple[Path, Path]:
        assert self.directory is not None
        return self.directory / f"{key}.safetensors", self.directory / f"{key}.json"

    def _write(self, key: str, item: ImageDescriptors) -> None:
        from safetensors.torch import save
        tensors_path, meta_path = self._paths(key)
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in
                   (("descs", item.descs), ("saliency", item.saliency), ("cls", item.cls)) if t is not None}
        meta = {"geometry": asdict(item.geometry), "params": item.params}
        write_atomic(tensors_path, save(tensors))
        write_atomic(meta_path, json.dumps(meta, default=str).encode())

    def _read(self, key: str) -> ImageDescriptors | None:
        from safetensors.torch import load_file
        tensors_path, meta_path = self._paths(key)
        if not (tensors_path.is_file() and meta_path.is_file()):
            return None
        try:
            tensors = load_file(str(tensors_path))
            meta = json.loads(meta_path.read_text())
            geo = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["geometry"].items()}
        except Exception:  # noqa: BLE001 - any damaged entry is a miss, rebuilt by the caller
            return None
        return ImageDescriptors(tensors["descs"], Geometry(**geo),
                                tensors.get("saliency"), tensors.get("cls"), meta["params"])


"""The result store: every visitor's results in one process-wide store under one memory budget.

The page keeps only a small key in each visitor's ``gr.State``; the descriptors and results live
here, accounted in bytes across every session, together with the working memory the running jobs
reserve (:meth:`ResultStore.reserve`). When a new result or job would go over the budget, the
least recently used entries are evicted first; an entry idle for longer than ``idle_s`` expires;
a closed browser tab releases its owner's entries at once. Asking for an entry that is gone raises
:class:`SessionCleared` with one sentence that says why and what to press again.

Nothing here imports Gradio: the store is unit-tested without a server.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from vitdense.errors import ParameterError, VitdenseError

log = logging.getLogger("vitdense.web.serving.results")

GIB = 1 << 30
#: default budget of visitors' results and the running jobs' working memory together: on a 16 GB
#: machine (a free Hugging Face CPU Space) the process is then bounded by ~1 GB at rest (torch,
#: Gradio, the model) + 0.5 GiB of descriptor cache + 4 GiB, with room to spare
DEFAULT_BUDGET_BYTES = 4 * GIB
#: an entry unused for this long is dropped (a visitor who walks away frees memory within 20 min)
DEFAULT_IDLE_S = 20 * 60
BUDGET_ENV = "VITDENSE_SESSION_MEMORY"     # e.g. "4GiB", "512MiB", "2e9"
TOMBSTONES = 10_000                        # keys remembered as cleared (to say why), oldest dropped

EVICTED = "evicted"
EXPIRED = "expired"
CLOSED = "closed"


class SessionCleared(VitdenseError, LookupError):
    """The visitor's results are no longer held (evicted to make room, expired, or released)."""


def parse_bytes(text: str | int | float) -> int:
    """"4GiB" / "512MiB" / "2GB" / "2e9" / 123 -> bytes (int > 0), else :class:`ParameterError`."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
                 "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "k": 1 << 10, "m": 1 << 20,
                 "g": 1 << 30, "b": 1}
        scale = 1.0
        for suffix, factor in units.items():
            if s.endswith(suffix):
                s, scale = s[: -len(suffix)], float(factor)
                break
        try:
            value = float(s) * scale
        except ValueError:
            raise ParameterError(f"{str(text)[:40]!r} is not a size: expected e.g. 4GiB, 512MiB or "
                                 "a number of bytes") from None
    if not np.isfinite(value) or value < 1:
        raise ParameterError(f"{str(text)[:40]!r} is not a positive size: expected e.g. 4GiB")
    return int(value)


def budget_from_env(default: int = DEFAULT_BUDGET_BYTES) -> int:
    """The budget in ``$VITDENSE_SESSION_MEMORY`` when set, else ``default``."""
    value = os.environ.get(BUDGET_ENV)
    return default if not value else parse_bytes(value)


def nbytes(obj: Any) -> int:
    """Bytes held by ``obj``'s arrays, tensors, images and byte strings, each storage counted once.

    Walks dataclasses, plain objects' ``__dict__``, dicts, lists and tuples (numbers, strings and
    small objects count 0: what matters to the budget is the bulk data).
    """
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if o is None or isinstance(o, (int, float, str, bool)):
            continue
        if isinstance(o, torch.Tensor):
            storage = o.untyped_storage()
            key = storage.data_ptr()
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = o if o.base is None else o.base
            if base is not o and id(base) in seen:
                continue
            seen.add(id(base))
            total += base.nbytes if isinstance(base, np.ndarray) else o.nbytes
        elif isinstance(o, (bytes, bytearray, memoryview)):
            total += len(o)
        elif isinstance(o, Image.Image):
            total += o.width * o.height * len(o.getbands())
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            stack.extend(vars(o).values())      # dataclasses too (and their cached properties)
        elif dataclasses.is_dataclass(o):
            stack.extend(getattr(o, f.name) for f in dataclasses.fields(o))
    return total


def compact_tensor(t: torch.Tensor | None, dtype: torch.dtype = torch.float16) -> torch.Tensor | None:
    """A floating tensor on the CPU in ``dtype`` (fp16 halves fp32's bytes); others as they are."""
    if t is None or not t.is_floating_point():
        return t
    return t.detach().to("cpu", dtype).contiguous()


def compact_descriptors(d: Any, dtype: torch.dtype = torch.float16) -> Any:
    """An ``ImageDescriptors`` with descriptors, saliency and CLS stored in ``dtype`` on the CPU.

    Cosine similarities of fp16 descriptors differ from fp32 by < 1e-3 (tests/web/serving/test_results.py);
    callers that cluster them convert back with :func:`expand_descriptors`.
    """
    return dataclasses.replace(d, descs=compact_tensor(d.descs, dtype),
                               saliency=compact_tensor(d.saliency, dtype),
                               cls=compact_tensor(d.cls, dtype))


def expand_descriptors(d: Any) -> Any:
    """The fp32 version of a compacted ``ImageDescriptors`` (a new copy, for computing)."""
    def up(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None or not t.is_floating_point() else t.float()
    return dataclasses.replace(d, descs=up(d.descs), saliency=up(d.saliency), cls=up(d.cls))


@dataclasses.dataclass
class _Entry:
    owner: str
    slot: str
    value: Any
    size: int
    last_used: float


class ResultStore:
    """Visitors' results under one byte budget: LRU eviction, idle expiry, release per owner.

    ``put(owner, value)`` returns a key (kept in the visitor's ``gr.State``); ``get(key, again)``
    returns the value, or raises :class:`SessionCleared` whose sentence ends with ``again`` (what to
    press). Thread-safe. ``clock`` is injectable for tests.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES, idle_s: float = DEFAULT_IDLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if budget_bytes < 1 or not idle_s > 0:
            raise ParameterError("the session budget and the idle time must be positive")
        self.budget = int(budget_bytes)
        self.idle_s = float(idle_s)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()   # oldest use first
        self._gone: OrderedDict[str, str] = OrderedDict()         # key -> why it was cleared
        self._lock = threading.Lock()
        self.used = 0
        self.reserved = 0          # working memory of the running jobs (:meth:`reserve`)
        self.evictions = 0

    # -- writing ---------------------------------------------------------------------------------
    def put(self, owner: str, value: Any, replace: str | None = None, slot: str = "") -> str:
        """Store ``value`` for ``owner`` (a session id); returns its new key.

        ``replace``: the key this value supersedes, freed first; ``slot`` (a tab's name): the
        owner's previous value in the same slot is freed first (a visitor keeps one result per
        tab; an empty owner or slot replaces nothing). A value larger than the whole budget is
        refused with :class:`ParameterError`.
        """
        size = nbytes(value)
        if size > self.budget:
            raise ParameterError(f"this result needs {size / 2**20:.0f} MiB, more than the demo's "
                                 f"{self.budget / 2**20:.0f} MiB for all visitors' results: use fewer "
                                 "images, a smaller load size or a larger stride")
        key = uuid.uuid4().hex
        with self._lock:
            if replace is not None:
                self._drop(replace, None)
            if owner and slot:
                for k in [k for k, e in self._entries.items() if e.owner == owner and e.slot == slot]:
                    self._drop(k, None)
            self._expire_locked()
            self._make_room_locked(size)
            self._entries[key] = _Entry(owner, slot, value, size, self._clock())
            self.used += size
        return key

    def reserve(self, size: int, what: str = "this request") -> int:
        """Set aside ``size`` bytes for a running job's working memory (least recently used results
        are evicted to make room); returns ``size``, to give back with :meth:`unreserve`. A job that
        needs more than the whole budget is refused with :class:`ParameterError`."""
        size = int(size)
        self.check_reservation(size, what)
        with self._lock:
            self._expire_locked()
            self._make_room_locked(size)
            self.reserved += size
        return size

    def check_reservation(self, size: int, what: str = "this request") -> None:
        """:class:`ParameterError` (one sentence) when a job's working memory cannot fit at all."""
        if size > self.budget:
            raise ParameterError(f"{what} needs about {size / 2**20:.0f} MiB of memory while it runs, "
                                 f"more than the demo's {self.budget / 2**20:.0f} MiB for visitors' "
                                 "results and running jobs: use fewer images, a smaller load size, a "
                                 "larger stride or no log-binning (Advanced settings)")

    def unreserve(self, size: int) -> None:
        """Give back a :meth:`reserve` (the job ended)."""
        with self._lock:
            self.reserved = max(0, self.reserved - int(size))

    def update(self, key: str, value: Any) -> None:
        """Replace the value under ``key`` (e.g. a new click), re-accounting its size."""
        size = nbytes(value)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            self.used += size - entry.size
            entry.value, entry.size, entry.last_used = value, size, self._clock()
            self._entries.move_to_end(key)

    def release(self, key: Any) -> None:
        """Forget ``key`` (``gr.State``'s delete callback); anything that is not a key is ignored."""
        if isinstance(key, str):
            with self._lock:
                self._drop(key, CLOSED)

    def release_owner(self, owner: str) -> int:
        """Forget every entry of ``owner`` (the tab was closed); returns how many."""
        with self._lock:
            keys = [k for k, e in self._entries.items() if e.owner == owner]
            for k in keys:
                self._drop(k, CLOSED)
        return len(keys)

    def sweep(self) -> int:
        """Drop the entries idle for longer than ``idle_s``; returns how many."""
        with self._lock:
            return self._expire_locked()

    # -- reading ---------------------------------------------------------------------------------
    def get(self, key: Any, again: str = "run it") -> Any:
        """The value under ``key``; :class:`SessionCleared` (one sentence ending in ``again``) when
        it was evicted, expired or released. ``key`` None means nothing was run: returns None."""
        if key is None:
            return None
        if not isinstance(key, str):
            raise ParameterError("this call is missing its inputs: give every input the API lists "
                                 "(see the page's 'Use via API')")
        with self._lock:
            self._expire_locked()
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = self._clock()
                self._entries.move_to_end(key)
                return entry.value
            why = self._gone.get(key)
        raise SessionCleared(self.sentence(why, again))

    def sentence(self, why: str | None, again: str) -> str:
        """The visitor's sentence for an entry that is gone."""
        if why == EXPIRED:
            return (f"Your results expired after {self.idle_s / 60:.0f} minutes without use: "
                    f"{again} again.")
        if why == EVICTED:
            return f"Your results were cleared to make room for other visitors: {again} again."
        return f"Your results are no longer on the server: {again} again."

    def __len__(self) -> int:
        return len(self._entries)

    def owners(self) -> set[str]:
        with self._lock:
            return {e.owner for e in self._entries.values()}

    # -- internals (lock held) -------------------------------------------------------------------
    def _make_room_locked(self, size: int) -> None:
        """Evict least recently used entries until ``size`` more bytes fit (or none is left)."""
        while self.used + self.reserved + size > self.budget and self._entries:
            old, _ = next(iter(self._entries.items()))
            log.info("evicted a result of %.1f MiB (least recently used) to make room",
                     self._entries[old].size / 2**20)
            self._drop(old, EVICTED)
            self.evictions += 1

    def _drop(self, key: str, why: str | None) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.used -= entry.size
        if why is not None:
            self._gone[key] = why
            while len(self._gone) > TOMBSTONES:
                self._gone.popitem(last=False)

    def _expire_locked(self) -> int:
        now = self._clock()
        old = [k for k, e in self._entries.items() if now - e.last_used > self.idle_s]
        for k in old:
            self._drop(k, EXPIRED)
        return len(old)

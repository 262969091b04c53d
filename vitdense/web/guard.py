"""What keeps the public demo up and its messages clear: the Gradio side of the hardening.

One process-wide :class:`~vitdense.web.serving.sessions.SessionStore` (visitors' results under a byte budget),
one :class:`~vitdense.web.serving.workbudget.WorkGate` with the work limit (heavy jobs one at a time, bounded
queue and wait; clicks never pass through it), a :class:`~vitdense.web.serving.tempfiles.Janitor` for the demo's
own zips, our sentence when Gradio's queue is full, the status line of each tab (filled by
:func:`vitdense.web.errors.ui_errors`), the raw inputs our validators judge, and the upload check.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import types
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from vitdense.errors import ImageError
from vitdense.web.serving import validate, workbudget
from vitdense.web.serving.sessions import DEFAULT_IDLE_S, SessionStore, budget_from_env
from vitdense.web.serving.tempfiles import (
    DEFAULT_EVERY_S,
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_BYTES,
    Janitor,
    gradio_delete_cache,
)

log = logging.getLogger("vitdense.web.guard")

STATUS_ENTRIES = 20_000          # (session, tab) status lines remembered, oldest dropped


@dataclass
class Limits:
    """Every bound of the served demo (``app.py`` flags; README "Limits of the public demo")."""

    session_bytes: int = 4 << 30          # all visitors' results and the running jobs' working memory
    cache_bytes: int = 512 << 20          # descriptors of recently extracted images (instant re-runs)
    idle_s: float = DEFAULT_IDLE_S        # a result unused this long is dropped
    max_work: float = workbudget.DEFAULT_MAX_WORK
    concurrency: int = 1                  # heavy jobs at once
    max_waiting: int = 4                  # heavy jobs waiting at most; beyond: "busy" at once
    max_wait_s: float = 120.0             # the longest a heavy job waits for its turn
    queue_size: int = 64                  # Gradio's queue: events (clicks included) waiting to be served
    temp_max_age_s: float = DEFAULT_MAX_AGE_S
    temp_every_s: float = DEFAULT_EVERY_S
    temp_max_bytes: int = DEFAULT_MAX_BYTES   # uploads, outputs, downloads on disk, all together


# the CPU work limit until launch() knows the hardware (importing must not touch CUDA: ZeroGPU)
LIMITS = Limits(session_bytes=budget_from_env(), max_work=workbudget.default_max_work(cuda=False))
STORE = SessionStore(LIMITS.session_bytes, LIMITS.idle_s)
GATE = workbudget.WorkGate(LIMITS.concurrency, LIMITS.max_waiting, LIMITS.max_wait_s)
JANITOR: Janitor | None = None


def configure(**changes: Any) -> Limits:
    """Replace the limits (``app.py`` flags); the store and the gate are rebuilt when theirs change."""
    global LIMITS, STORE, GATE
    old = LIMITS
    LIMITS = Limits(**{**LIMITS.__dict__, **{k: v for k, v in changes.items() if v is not None}})
    if (LIMITS.session_bytes, LIMITS.idle_s) != (old.session_bytes, old.idle_s):
        STORE = SessionStore(LIMITS.session_bytes, LIMITS.idle_s)
    if (LIMITS.concurrency, LIMITS.max_waiting, LIMITS.max_wait_s) != \
            (old.concurrency, old.max_waiting, old.max_wait_s):
        GATE = workbudget.WorkGate(LIMITS.concurrency, LIMITS.max_waiting, LIMITS.max_wait_s)
    return LIMITS


def start_janitor(roots: Sequence[str | Path], keep: frozenset = frozenset()) -> Janitor:
    """Prune ``roots`` (the demo's zips, Gradio's cache) on the schedule of Gradio's own cleanup,
    by age and under the byte ceiling; ``keep``: (name, size) of files never deleted (the examples
    Gradio caches)."""
    global JANITOR
    if JANITOR is not None:
        JANITOR.stop()
    JANITOR = Janitor(list(roots), LIMITS.temp_max_age_s, LIMITS.temp_every_s, keep,
                      LIMITS.temp_max_bytes).start()
    return JANITOR


def own_queue_full(demo: gr.Blocks) -> None:
    """Gradio's queue, when full, answers "Queue is full. Max size is N and size is M."; after
    ``demo.queue(...)``, this makes it answer our sentence (still a refusal with HTTP 503, which
    Gradio's browser page and gradio_client turn into their own "busy, try again" text)."""
    queue = demo._queue
    push = queue.push

    async def push_ours(*args: Any, **kwargs: Any) -> tuple:
        ok, out, state = await push(*args, **kwargs)
        if state == "queue_full":
            out = (f"the demo is receiving too many requests right now ({queue.max_size} waiting, the "
                   "most it holds): try again in a minute, or run it locally (python app.py)")
        return ok, out, state

    queue.push = push_ours


def atomic_picture_cache() -> None:
    """Gradio writes a picture a handler returns as an array under the hash of its bytes, in place:
    when two visitors are shown the same picture (an example's result), the second write truncates
    the file while the first visitor downloads it ("Too little data for declared Content-Length",
    a broken picture). After this, the file is written under a temporary name and renamed over the
    old one (same bytes), so that a download under way keeps reading the complete old file."""
    from gradio import processing_utils as pu
    if getattr(pu.save_pil_to_cache, "vitdense_atomic", False):
        return

    def save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        staging = path.with_name(f".{path.name}.{threading.get_ident()}")
        staging.write_bytes(data)
        os.replace(staging, path)
        return str(path)

    save_pil_to_cache.vitdense_atomic = True
    pu.save_pil_to_cache = save_pil_to_cache


def delete_cache() -> tuple[int, int]:
    """``gr.Blocks(delete_cache=...)`` for the configured age."""
    return gradio_delete_cache(LIMITS.temp_max_age_s, LIMITS.temp_every_s)


# -- who is asking -------------------------------------------------------------------------------
def session_id() -> str:
    """The Gradio session of the running event ("" outside one, e.g. in unit tests)."""
    try:
        from gradio.context import LocalContext
        request = LocalContext.request.get(None)
    except (ImportError, LookupError):  # pragma: no cover - another Gradio layout
        request = None
    return str(getattr(request, "session_hash", "") or "")


# -- the status line of each tab -----------------------------------------------------------------
_STATUS: OrderedDict[tuple[str, str], str] = OrderedDict()
_STATUS_LOCK = threading.Lock()


def set_status(tab: str, text: str) -> None:
    """Remember ``text`` as what the tab's status line says for this session."""
    with _STATUS_LOCK:
        key = (session_id(), tab)
        _STATUS[key] = text
        _STATUS.move_to_end(key)
        while len(_STATUS) > STATUS_ENTRIES:
            _STATUS.popitem(last=False)


def status_reader(tab: str) -> Callable[[], str]:
    """The ``.then(...)`` function that fills the tab's status line after every event."""
    def read_status() -> str:
        with _STATUS_LOCK:
            return _STATUS.get((session_id(), tab), "")
    read_status.__name__ = f"status_{tab}"
    return read_status


def wire_status(event: Any, tab: str, status: gr.components.Component) -> Any:
    """After ``event`` (success or error), show the tab's status line (not part of the API)."""
    return event.then(status_reader(tab), None, status, api_visibility="private",
                      concurrency_limit=None, show_progress="hidden", queue=False)


def one_line(text: str) -> str:
    """One line (messages are already sentences; file names keep their case)."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Done:
    """The last element of a handler's result: the status line's "what was done"."""

    text: str


# -- inputs --------------------------------------------------------------------------------------
def _passthrough(self: Any, payload: Any) -> Any:
    return payload


def raw(component: gr.components.Component) -> gr.components.Component:
    """Let ``component``'s value reach the handler as sent, for our validators to judge
    (Gradio's own checks answer with internal texts: rounding errors, "not in the list of
    choices"). The instance's preprocess is replaced, as ``image_input`` does."""
    component.preprocess = types.MethodType(_passthrough, component)
    return component


def check_upload_value(value: Any, tab: str, check: Callable[[str], Any] = validate.check_upload) -> None:
    """An upload event (gr.Image / gr.Gallery / gr.Video value): warn at once about a file that
    will be refused (``check``: not an image, too small, too large; a video's limits with
    :func:`~vitdense.web.serving.validate.check_video_upload`), and say so in the tab's status line."""
    items = value if isinstance(value, (list, tuple)) else [value]
    problems = []
    for item in items:
        if isinstance(item, (tuple, list)):          # gallery: (path, caption)
            item = item[0]
        if isinstance(item, dict):
            item = item.get("path")
        if isinstance(item, str):
            try:
                check(item)
            except ImageError as err:
                problems.append(one_line(str(err)))
    text = " ".join(problems)
    set_status(tab, text)
    if text:
        gr.Warning(text)


# -- heavy jobs ----------------------------------------------------------------------------------
#: niceness of the threads that run heavy handlers on the CPU: a click (answered at the normal
#: priority) then gets most of the cores while a heavy job runs ($VITDENSE_JOB_NICENESS, 0 = off)
JOB_NICENESS = int(os.environ.get("VITDENSE_JOB_NICENESS", "10"))
#: ``launch()`` turns job threads off when the passes run on a GPU (ZeroGPU included)
USE_JOB_THREADS = True
_JOB = threading.local()


def _start_job_thread() -> None:
    """Lower this thread's priority (Linux: niceness is per thread, and the OpenMP threads torch
    starts from it inherit it); where that is not possible its jobs run at the normal priority."""
    _JOB.inside = True
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)


# more threads than jobs can wait in the gate: a request always reaches admit() (and its refusal) at once
_JOBS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="vitdense-job", initializer=_start_job_thread)


def in_job_thread(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a low-priority job thread, with the caller's context (Gradio's
    request, progress and warnings); here when job threads are off or already in one."""
    if not USE_JOB_THREADS or JOB_NICENESS <= 0 or getattr(_JOB, "inside", False):
        return fn(*args, **kwargs)
    return _JOBS.submit(contextvars.copy_context().run, fn, *args, **kwargs).result()


def blocks_run(depth: int, layers: int | Sequence[int], saliency: bool) -> int:
    """Transformer blocks one pass runs: the deepest requested layer, or all when saliency (the
    last block's attention) is needed."""
    deepest = max(layers) if isinstance(layers, (list, tuple)) else int(layers)
    return depth if saliency else deepest + 1


_HELD = threading.local()      # the gate slot the running handler holds (released by guarded)


def admit(sizes_wh: Sequence[tuple[int, int]], load_size: int, patch: int, stride: int,
          blocks: int, progress: Any = None, embed_dim: int = 0, bin: bool = False) -> workbudget.Work:
    """Refuse above the work limit or the memory budget (at once, one sentence), then wait for a
    slot of the gate (at most ``max_wait_s``, the position shown in the progress line), then reserve
    the job's working memory (:func:`vitdense.web.serving.workbudget.working_bytes` of ``embed_dim``-wide
    tokens) from the session store, evicting the least recently used results. Slot and reservation
    are held until the handler (wrapped by ``ui_errors``) returns; a second call in the same handler
    keeps them."""
    work = workbudget.estimate(sizes_wh, load_size, patch, stride, blocks)
    workbudget.check(work, LIMITS.max_work, stride, load_size, patch)
    working = workbudget.working_bytes(sizes_wh, load_size, patch, stride, embed_dim, bin) if embed_dim else 0
    if getattr(_HELD, "gate", None) is None:
        store = STORE
        store.check_reservation(working)

        def on_wait(position: int) -> None:
            if progress is not None:
                progress(0.0, desc=f"Waiting for the server: {position} job(s) ahead")
        gate = GATE
        waited = gate.acquire(on_wait)
        _HELD.gate = gate
        _HELD.reservation = (store, store.reserve(working))
        log.info("heavy job waited %.2f s (work %.3g units, %.0f MiB reserved)", waited, work.units,
                 working / 2**20)
    return work


def release_held() -> None:
    """Free the gate slot and the memory reservation this thread's handler holds (ui_errors calls
    it when the handler ends)."""
    gate = getattr(_HELD, "gate", None)
    if gate is not None:
        _HELD.gate = None
        gate.release()
    reservation = getattr(_HELD, "reservation", None)
    if reservation is not None:
        _HELD.reservation = None
        store, size = reservation
        store.unreserve(size)
        trim_memory()


def trim_memory() -> None:
    """Give the memory a finished job freed back to the system (glibc keeps freed heap pages for
    reuse, so the process's RSS would stay at its highest job; no-op without glibc)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def offered_strides(patch: int, depth: int, sizes: Sequence[int]) -> list[str]:
    """Stride choices ("auto" first) that some load size of ``sizes`` accepts for a pair."""
    return ["auto"] + [str(s) for s in workbudget.offered_strides(patch, depth, 2, LIMITS.max_work, sizes)]


def load_size_bound(patch: int, stride: int, depth: int, sizes: Sequence[int]) -> int:
    """The largest load size the limit accepts for a pair at ``stride`` (the slider's maximum)."""
    return workbudget.max_load_size(patch, stride, depth, 2, LIMITS.max_work, sizes) or min(sizes)

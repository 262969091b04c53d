"""The job gate on the Gradio side: who is asking (the browser session and the client's address),
the process's :class:`~vitdense.web.serving.gate.JobGate` (``JOBS``), heavy jobs admitted for the
running handler and released when it ends, the click rate, and the low-priority job threads.

``JOBS`` is built once at import with the CPU defaults (importing must not touch CUDA: ZeroGPU)
and configured once by :func:`vitdense.web.page.launch`; handlers reach it through this module.
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable

from vitdense import stops
from vitdense.web.serving.gate import Held, JobGate
from vitdense.web.serving.limits import Limits
from vitdense.web.serving.workbudget import Busy, Job

log = logging.getLogger("vitdense.web.gate")

JOBS = JobGate(Limits.resolve(cuda=False))
#: the tab whose handler is running (set by ``ui_errors``): a job's seconds model is its tab's
CURRENT_TAB: contextvars.ContextVar[str] = contextvars.ContextVar("vitdense_tab", default="")


# -- who is asking -------------------------------------------------------------------------------
def request() -> Any:
    """The Gradio request of the running event (None outside one, e.g. in unit tests)."""
    try:
        from gradio.context import LocalContext
        return LocalContext.request.get(None)
    except (ImportError, LookupError):  # pragma: no cover - another Gradio layout
        return None


def session_id() -> str:
    """The Gradio session of the running event ("" outside one)."""
    return str(getattr(request(), "session_hash", "") or "")


def client_address(req: Any, hops: int) -> str:
    """The client's address: with ``hops`` trusted proxies in front, the X-Forwarded-For entry
    ``hops`` from the right (what the nearest proxy saw; entries further left are the client's
    own claims), else the peer of the connection."""
    if hops > 0:
        headers = getattr(req, "headers", None) or {}
        chain = [a.strip() for a in str(headers.get("x-forwarded-for", "")).split(",") if a.strip()]
        if chain:
            return chain[-min(hops, len(chain))]
    return str(getattr(getattr(req, "client", None), "host", "") or "")


_FOR_EVERY_VISITOR = contextvars.ContextVar("vitdense_for_every_visitor", default=False)


@contextlib.contextmanager
def for_every_visitor():
    """Jobs admitted inside run for the server, not for the visitor whose event triggered them
    (the landing example, computed once for everyone): they count against the limits but not
    against that visitor's one job."""
    token = _FOR_EVERY_VISITOR.set(True)
    try:
        yield
    finally:
        _FOR_EVERY_VISITOR.reset(token)


def visitor_keys() -> tuple[Hashable, ...]:
    """The running event's visitor, as the keys the gate counts (session, address); () outside
    an event, or inside :func:`for_every_visitor`."""
    req = request()
    if req is None or _FOR_EVERY_VISITOR.get():
        return ()
    keys: list[Hashable] = []
    if getattr(req, "session_hash", None):
        keys.append(("session", str(req.session_hash)))
    address = client_address(req, JOBS.limits.proxy_hops)
    if address:
        keys.append(("address", address))
    return tuple(keys)


def configure(**changes: Any) -> Limits:
    """Use the limits with ``changes`` (fields of :class:`Limits`; None = unchanged) from now on."""
    return JOBS.configure(JOBS.limits.replace(**changes))


def offered_strides(patch: int, depth: int, sizes: list[int]) -> list[str]:
    """Stride choices ("auto" first) that some load size of ``sizes`` accepts for a pair."""
    return ["auto"] + [str(s) for s in JOBS.offered_strides(patch, depth, sizes)]


def load_size_bound(patch: int, stride: int, depth: int, sizes: list[int]) -> int:
    """The largest load size the limits accept for a pair at ``stride`` (the slider's maximum)."""
    return JOBS.load_size_bound(patch, stride, depth, sizes)


# -- heavy jobs ----------------------------------------------------------------------------------
_HELD = threading.local()      # the job the running handler holds (released by ui_errors)


def admit(job: Job, progress: Any = None) -> Job:
    """Admit ``job`` for the running handler (:meth:`JobGate.admit`: refused at once with one
    sentence, or a bounded wait shown in the progress line); held until the handler (wrapped by
    ``ui_errors``) returns. A second call in the same handler only checks the limits."""
    if getattr(_HELD, "job", None) is not None:
        JOBS.check(job)
        return job

    def on_wait(position: int) -> None:
        if progress is not None:
            progress(0.0, desc=f"Waiting for the server: {position} job(s) ahead")
    _HELD.job = JOBS.admit(job, visitor_keys(), on_wait)
    return job


def release_held() -> None:
    """Free the slot and the memory reservation this thread's handler holds (``ui_errors`` calls
    it when the handler ends)."""
    held: Held | None = getattr(_HELD, "job", None)
    if held is not None:
        _HELD.job = None
        JOBS.release(held)
        trim_memory()


def check_work() -> None:
    """The web's check at every stop point (:mod:`vitdense.stops`: each block of a network pass,
    each k-means iteration, each chunk of a similarity pass, each refined image): raise
    :class:`~vitdense.web.serving.workbudget.Overrun` (one sentence) when the running handler's job
    has done more than ``Limits.overrun`` x its estimated work; ``ui_errors`` then shows the
    sentence and releases the job, and the visitor's previous results stay. Outside a job (another
    thread, a click): nothing."""
    held: Held | None = getattr(_HELD, "job", None)
    if held is not None:
        held.meter.check()


stops.install(check_work)


#: a visitor's clicks run one at a time (locks striped by session: bounded, no per-visitor entries)
_TURNS = [threading.RLock() for _ in range(64)]


@contextlib.contextmanager
def visitor_turn() -> Any:
    """The running event's visitor has its turn: its clicks (sent without waiting for the previous
    one's answer) each read the result the previous one saved, never the same one twice."""
    with _TURNS[hash(session_id()) % len(_TURNS)]:
        yield


def check_click() -> None:
    """Raise :class:`Busy` (one sentence) when the running event's visitor clicks faster than
    ``Limits.click_rate`` per second."""
    if not JOBS.allow_click(visitor_keys()):
        raise Busy(JOBS.clicks.sentence())


def blocks_run(depth: int, layers: int | list[int] | tuple[int, ...], saliency: bool) -> int:
    """Transformer blocks one pass runs: the deepest requested layer, or all when saliency (the
    last block's attention) is needed."""
    deepest = max(layers) if isinstance(layers, (list, tuple)) else int(layers)
    return depth if saliency else deepest + 1


# -- job threads ---------------------------------------------------------------------------------
#: niceness of the threads that run heavy handlers on the CPU: a click (answered at the normal
#: priority) then gets most of the cores while a heavy job runs ($VITDENSE_JOB_NICENESS, 0 = off)
JOB_NICENESS = int(os.environ.get("VITDENSE_JOB_NICENESS", "10"))


class JobThreads:
    """Whether heavy handlers run in niced job threads (``launch()`` turns them off on a GPU)."""

    enabled = True


_JOB = threading.local()


def _start_job_thread() -> None:
    """Lower this thread's priority (Linux: niceness is per thread, and the OpenMP threads torch
    starts from it inherit it); where that is not possible its jobs run at the normal priority."""
    _JOB.inside = True
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)


# more threads than jobs can wait in the gate: a request always reaches admit() (and its refusal) at once
_JOBS_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="vitdense-job", initializer=_start_job_thread)


def in_job_thread(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a low-priority job thread, with the caller's context (Gradio's
    request, progress and warnings); here when job threads are off or already in one."""
    if not JobThreads.enabled or JOB_NICENESS <= 0 or getattr(_JOB, "inside", False):
        return fn(*args, **kwargs)
    return _JOBS_POOL.submit(contextvars.copy_context().run, fn, *args, **kwargs).result()


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def trim_memory() -> None:
    """Give the memory a finished job freed back to the system (glibc keeps freed heap pages for
    reuse, so the process's RSS would stay at its highest job; no-op without glibc)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

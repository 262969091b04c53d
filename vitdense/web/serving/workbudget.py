"""How much work a request asks for, the limit a shared server accepts, and a bounded wait.

Work is estimated before anything runs, as the attention cost of the pass:
``sum over images of tokens_i**2 x blocks`` (tokens = patches of the resized image at the chosen
stride; blocks = blocks run). Measured on the 2-vCPU machine of this project with the bundled
DINOv2 ViT-S/14: a 256 x 256 pair at load size 224 takes 36 s at stride 2 (3.0e9 units) and
496 s at stride 1 (4.8e10 units), i.e. about 1.2e-8 s per unit once attention dominates.

:data:`DEFAULT_MAX_WORK` (6e9 units, about a minute on that CPU) is the default limit; a local
user raises it (``app.py --max-work 1e12``, or ``$VITDENSE_MAX_WORK``). :func:`max_load_size`
tells the page which load sizes a stride can use at all, so the settings never offer a
combination that is always refused.

:class:`WorkGate` runs heavy jobs one (or ``concurrency``) at a time and bounds the wait: at most
``max_waiting`` jobs wait, each at most ``max_wait_s`` seconds; beyond that the visitor is told at
once that the demo is busy. Clicks never pass through the gate.
"""
from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from vitdense.errors import ParameterError, VitdenseError
from vitdense.features.images import resized_size

DEFAULT_MAX_WORK = 6e9          # units (tokens**2 x blocks, summed over images); ~1 min on 2 vCPU
GPU_MAX_WORK = 2e11             # with CUDA: a guess from the CPU figure (not measured here)
MAX_WORK_ENV = "VITDENSE_MAX_WORK"
SECONDS_PER_UNIT_CPU = 1.2e-8   # measured (module docstring); shown to visitors as "about N s"


class WorkRefused(ParameterError):
    """The request is above the server's work limit (the message names estimate, limit, knob)."""


class Busy(VitdenseError, RuntimeError):
    """Too many heavy jobs are waiting, or this one waited longer than the bound."""


def default_max_work(cuda: bool = False) -> float:
    """``$VITDENSE_MAX_WORK`` when set, else the default for the hardware."""
    value = os.environ.get(MAX_WORK_ENV)
    if value:
        return parse_work(value)
    return GPU_MAX_WORK if cuda else DEFAULT_MAX_WORK


def parse_work(text: str | float) -> float:
    """"6e9" / 6e9 / "inf" -> a positive limit (units), else :class:`ParameterError`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParameterError(f"max work {str(text)[:40]!r} is not a number: expected e.g. 6e9") from None
    if math.isnan(value) or value <= 0:
        raise ParameterError(f"max work {str(text)[:40]!r} must be a positive number (or inf)")
    return value


def grid_tokens(size_wh: tuple[int, int], load_size: int | None, patch: int, stride: int) -> int:
    """Patches of one image: ``(1 + (H1 - patch) // stride) * (1 + (W1 - patch) // stride)``."""
    w1, h1 = resized_size(size_wh, load_size)
    if w1 < patch or h1 < patch:
        return 0
    return (1 + (h1 - patch) // stride) * (1 + (w1 - patch) // stride)


@dataclass(frozen=True)
class Work:
    """A request's estimate. ``units`` = sum of tokens**2 x blocks."""

    tokens: tuple[int, ...]     # per image
    blocks: int
    units: float

    @property
    def seconds_cpu(self) -> float:
        """The estimate as seconds on the 2-vCPU machine (attention-bound jobs)."""
        return self.units * SECONDS_PER_UNIT_CPU


def estimate(sizes_wh: Sequence[tuple[int, int]], load_size: int | None, patch: int, stride: int,
             blocks: int) -> Work:
    """The work of extracting ``sizes_wh`` (each (W, H) as given to the extractor)."""
    tokens = tuple(grid_tokens(s, load_size, patch, stride) for s in sizes_wh)
    return Work(tokens, int(blocks), float(sum(t * t for t in tokens)) * int(blocks))


#: working memory of a job: bytes per descriptor value (two fp32 copies: the extracted and the
#: normalised descriptors), per embedding value of every token (the network's activations, fp32),
#: and a floor (the interpreter's and the libraries' own buffers, drawing, encoding); fitted, with a
#: margin, to the peaks measured by bench/bench_job_memory.py (README "Limits of the public demo")
WORKING_BYTES_PER_DESC = 8
WORKING_BYTES_PER_EMBED = 56
WORKING_BYTES_FLOOR = 64 << 20


def working_bytes(sizes_wh: Sequence[tuple[int, int]], load_size: int | None, patch: int,
                  stride: int, embed_dim: int, bin: bool = False, hierarchy: int = 2) -> int:
    """The transient memory a heavy job needs while it runs (bytes), for images of ``sizes_wh``
    (W, H) and a model of ``embed_dim``: the server reserves it from its memory budget before the
    job starts (``vitdense.web.serving.sessions.SessionStore.reserve``)."""
    tokens = sum(grid_tokens(s, load_size, patch, stride) for s in sizes_wh)
    dim = embed_dim * ((1 + 8 * hierarchy) if bin else 1)
    return int(WORKING_BYTES_FLOOR + tokens * (WORKING_BYTES_PER_DESC * dim + WORKING_BYTES_PER_EMBED * embed_dim))


def check(work: Work, limit: float, stride: int, load_size: int | None,
          patch: int | None = None) -> None:
    """Raise :class:`WorkRefused` when ``work`` is above ``limit``, naming the knob to lower."""
    if work.units <= limit:
        return
    n = len(work.tokens)
    biggest = max(work.tokens) if work.tokens else 0
    ratio = work.units / limit
    # the knob with the biggest effect first: stride (square), then load size (fourth power),
    # then the number of images (linear)
    if (patch is None or stride < patch) and ratio <= 64:   # one stride step is ~16x less
        knob = f"use a larger stride than {stride}"
    elif load_size:
        knob = (f"use a smaller load size than {load_size} (work grows with its fourth power) "
                f"or a larger stride")
    else:
        knob = "use fewer or smaller images"
    raise WorkRefused(f"this request is too much work for this server: about {work.units:.2g} units "
                      f"({n} image{'s' if n != 1 else ''} of up to {biggest:,} patches, {work.blocks} "
                      f"blocks), above the limit of {limit:.2g}; {knob} (Advanced settings), or run "
                      "the demo locally with a higher --max-work")


def max_load_size(patch: int, stride: int, blocks: int, images: int, limit: float,
                  sizes: Sequence[int]) -> int | None:
    """The largest of ``sizes`` whose smallest request (``images`` square images) fits ``limit``;
    None when even the smallest is refused (the page then does not offer this stride)."""
    best = None
    for s in sorted(sizes):
        if estimate([(s, s)] * images, s, patch, stride, blocks).units <= limit:
            best = s
    return best


def offered_strides(patch: int, blocks: int, images: int, limit: float,
                    sizes: Sequence[int]) -> list[int]:
    """Divisors of ``patch`` that are accepted at least at the smallest load size."""
    return [d for d in range(1, patch + 1)
            if patch % d == 0 and max_load_size(patch, d, blocks, images, limit, sizes) is not None]


class WorkGate:
    """Heavy jobs ``concurrency`` at a time; at most ``max_waiting`` wait, each up to ``max_wait_s``.

    ``with gate.slot(): ...`` raises :class:`Busy` at once when the waiting room is full, or after
    ``max_wait_s`` seconds without a free slot; ``on_wait(position)`` is called while waiting (the
    page's progress line). Waiters are served first come, first served.
    """

    def __init__(self, concurrency: int = 1, max_waiting: int = 4, max_wait_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1 or max_waiting < 0 or not max_wait_s > 0:
            raise ParameterError("concurrency >= 1, max_waiting >= 0 and max_wait_s > 0 are needed")
        self.concurrency, self.max_waiting, self.max_wait_s = concurrency, max_waiting, max_wait_s
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._queue: list[object] = []      # waiting tickets, first come first
        self.waits: list[float] = []        # seconds each admitted job waited (the soak reads it)
        self.refused = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def acquire(self, on_wait: Callable[[int], None] | None = None) -> float:
        """Wait for a slot (see the class); returns the seconds waited. Pair with :meth:`release`."""
        ticket = object()
        start = self._clock()
        with self._cond:
            if self._running >= self.concurrency or self._queue:
                if len(self._queue) >= self.max_waiting:
                    self.refused += 1
                    raise Busy(f"the demo is busy ({self._running} job running, {len(self._queue)} "
                               "waiting, the most it queues): try again in a minute, or run it "
                               "locally (python app.py)")
            self._queue.append(ticket)
            try:
                while self._running >= self.concurrency or self._queue[0] is not ticket:
                    left = self.max_wait_s - (self._clock() - start)
                    if left <= 0:
                        self.refused += 1
                        raise Busy(f"the demo stayed busy for {self.max_wait_s:.0f} s, the longest a "
                                   "job waits here: try again in a minute, or run it locally "
                                   "(python app.py)")
                    if on_wait is not None:
                        on_wait(self._queue.index(ticket) + 1)
                    self._cond.wait(timeout=min(left, 1.0))
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            self._running += 1
        waited = self._clock() - start
        self.waits.append(waited)
        del self.waits[:-1000]
        return waited

    def release(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None) -> Iterator[float]:
        """Hold one slot for the ``with`` body; yields the seconds waited."""
        waited = self.acquire(on_wait)
        try:
            yield waited
        finally:
            self.release()

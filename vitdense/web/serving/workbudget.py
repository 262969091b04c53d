"""How much work a request asks for, in units and in seconds, the limits a shared server accepts,
and a bounded, fair wait.

Work is estimated before anything runs. In units, as the attention cost of the pass:
``sum over images of tokens_i**2 x blocks`` (tokens = patches of the resized image at the chosen
stride; blocks = blocks run). In seconds, per application (:func:`estimate_seconds`): the network's
matrix products (``blocks x T x D^2``) and attention (``blocks x T^2 x D``), log-binning
(``T x D x 17``) and the application's own work after the pass (clustering, drawing, the zip:
per patch), with coefficients fitted on the 2-vCPU machine of this project by
``bench/bench_work_seconds.py`` (:data:`SECONDS_MODEL`; README "Limits of the public demo").

The server refuses a request whose estimate is above ``--max-seconds`` (60 s on a CPU) or above
``--max-work`` units; :func:`max_load_size` tells the page which load sizes a stride can use at
all, so the settings never offer a combination that is always refused.

:class:`WorkGate` runs heavy jobs one (or ``concurrency``) at a time and bounds the wait: at most
``max_waiting`` jobs wait, each at most ``max_wait_s`` seconds, and each visitor has at most
``per_visitor`` job running or waiting (one visitor cannot fill the waiting room); beyond that the
visitor is told at once. Clicks never pass through the gate.
"""
from __future__ import annotations

import math
import os
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Sequence

from vitdense.errors import ParameterError, VitdenseError
from vitdense.features.images import resized_size

DEFAULT_MAX_WORK = math.inf     # units (tokens**2 x blocks, summed over images): on a CPU the
                                # seconds limit rules (the units were 6e9 until it was calibrated)
GPU_MAX_WORK = 2e11             # with CUDA: a guess from the CPU figure (not measured here)
MAX_WORK_ENV = "VITDENSE_MAX_WORK"
DEFAULT_MAX_SECONDS = 60.0      # the longest job a CPU server accepts (estimated seconds)
MAX_SECONDS_ENV = "VITDENSE_MAX_SECONDS"
SECONDS_PER_UNIT_CPU = 1.2e-8   # attention-bound jobs only (a pair at stride 1 and 2, measured)

#: seconds of a heavy job on the 2-vCPU machine, per term (see :func:`seconds_features`), fitted by
#: ``bench/bench_work_seconds.py`` to the web handlers' CPU time / 2 (2026-12-04, 15 jobs of the six
#: applications; README "Limits of the public demo"); ``tokens:<tab>`` is that application's own
#: work per patch after the pass (clustering, drawing, the zip). With the bundled ViT-S/14 the
#: ``linear`` and ``tokens`` terms are proportional (12 blocks, width 384), so their split is not
#: measured: another width is extrapolated
SECONDS_MODEL: dict[str, float] = {
    "linear": 1.97e-11, "attention": 2.08e-11, "binned": 2.86e-08, "constant": 1.4,
    "tokens:correspondences": 1.49e-4, "tokens:similarity": 0.0, "tokens:pca": 2.83e-4,
    "tokens:cosegmentation": 1.43e-4, "tokens:parts": 2.43e-4, "tokens:transfer": 1.72e-4,
}
#: the estimate is the fit times this: a stage that uses one core takes longer than CPU time / 2,
#: and the fit's residuals reach about 20%
SECONDS_MARGIN = 1.25
#: a running job is stopped at its next checkpoint once its work passes this many times its estimate
DEFAULT_OVERRUN = 2.0
#: the longest (wall seconds) a job holds its slot while another visitor waits, unless its own
#: allowance (overrun x estimate) is longer: a flood's job that the machine's load slows down
#: cannot keep the next visitor waiting past max_wait_s (README "Fair sharing under a flood")
DEFAULT_HOLD_S = 60.0
#: the vCPUs of the machine the seconds model was fitted on: a job's seconds of work are the
#: process's CPU seconds / this, as ``bench/bench_work_seconds.py`` measures them
REFERENCE_CORES = 2


class WorkRefused(ParameterError):
    """The request is above the server's work limit (the message names estimate, limit, knob)."""


class Busy(VitdenseError, RuntimeError):
    """Too many heavy jobs are waiting, or this one waited longer than the bound."""


class Overrun(VitdenseError, RuntimeError):
    """A running job did more work than its allowance (the message names both, and what to reduce)."""


def default_max_work(cuda: bool = False) -> float:
    """``$VITDENSE_MAX_WORK`` when set, else the default for the hardware."""
    value = os.environ.get(MAX_WORK_ENV)
    if value:
        return parse_work(value)
    return GPU_MAX_WORK if cuda else DEFAULT_MAX_WORK


def default_max_seconds(cuda: bool = False) -> float:
    """``$VITDENSE_MAX_SECONDS`` when set, else 60 s on a CPU; no seconds limit with CUDA (the
    model is fitted on the CPU; ``--max-work`` bounds a GPU server)."""
    value = os.environ.get(MAX_SECONDS_ENV)
    if value:
        return parse_work(value, "max seconds")
    return math.inf if cuda else DEFAULT_MAX_SECONDS


def parse_work(text: str | float, what: str = "max work") -> float:
    """"6e9" / 6e9 / "inf" -> a positive limit, else :class:`ParameterError`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} {str(text)[:40]!r} is not a number: expected e.g. 60") from None
    if math.isnan(value) or value <= 0:
        raise ParameterError(f"{what} {str(text)[:40]!r} must be a positive number (or inf)")
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


def seconds_features(sizes_wh: Sequence[tuple[int, int]], load_size: int | None, patch: int, stride: int,
                     embed_dim: int, blocks: int, bin: bool = False, hierarchy: int = 2) -> dict[str, float]:
    """The terms of :data:`SECONDS_MODEL` for a job: ``linear`` (blocks x T x D^2), ``attention``
    (blocks x T^2 x D), ``binned`` (T x D x 17, log-binned only) and ``tokens`` (T), summed over images."""
    tokens = [grid_tokens(s, load_size, patch, stride) for s in sizes_wh]
    d = float(embed_dim)
    return dict(linear=sum(blocks * t * d * d for t in tokens),
                attention=sum(blocks * float(t) * t * d for t in tokens),
                binned=sum(t * d * (1 + 8 * hierarchy) for t in tokens) if bin else 0.0,
                tokens=float(sum(tokens)))


def estimate_seconds(app: str, features: dict[str, float], model: dict[str, float] | None = None) -> float:
    """Seconds of ``app``'s heavy job with ``features`` (:func:`seconds_features`) on the 2-vCPU
    machine (an application without its own term, e.g. the video tab, takes the costliest per patch)."""
    m = SECONDS_MODEL if model is None else model
    per_token = m.get(f"tokens:{app}", max(v for k, v in m.items() if k.startswith("tokens:")))
    return SECONDS_MARGIN * (m["constant"] + m["linear"] * features["linear"] + m["attention"] * features["attention"]
                             + m["binned"] * features["binned"] + per_token * features["tokens"])


@dataclass(frozen=True)
class Job:
    """What a heavy job asks for, known before it runs: the application (its tab id), the images'
    sizes (W, H) and the descriptor settings that set its cost."""

    app: str = ""
    sizes_wh: tuple[tuple[int, int], ...] = ()
    load_size: int | None = None
    patch: int = 1
    stride: int = 1
    blocks: int = 0                 # transformer blocks run (0: no network pass)
    embed_dim: int = 0
    bin: bool = False

    @property
    def work(self) -> Work:
        return estimate(self.sizes_wh, self.load_size, self.patch, self.stride, self.blocks)

    @property
    def seconds(self) -> float:
        """Estimated seconds on the 2-vCPU machine (:data:`SECONDS_MODEL`)."""
        return estimate_seconds(self.app, seconds_features(self.sizes_wh, self.load_size, self.patch, self.stride,
                                                           self.embed_dim, self.blocks, self.bin))

    @property
    def working_bytes(self) -> int:
        """Memory the job needs while it runs (0 without a network pass)."""
        if not self.embed_dim:
            return 0
        return working_bytes(self.sizes_wh, self.load_size, self.patch, self.stride, self.embed_dim, self.bin)


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
    job starts (``vitdense.web.serving.results.ResultStore.reserve``)."""
    tokens = sum(grid_tokens(s, load_size, patch, stride) for s in sizes_wh)
    dim = embed_dim * ((1 + 8 * hierarchy) if bin else 1)
    return int(WORKING_BYTES_FLOOR + tokens * (WORKING_BYTES_PER_DESC * dim + WORKING_BYTES_PER_EMBED * embed_dim))


def check(work: Work, limit: float, stride: int, load_size: int | None,
          patch: int | None = None) -> None:
    """Raise :class:`WorkRefused` when ``work`` is above ``limit`` units, naming the knob to lower."""
    if work.units <= limit:
        return
    raise WorkRefused(_too_much(work, f"about {work.units:.2g} units", f"{limit:.2g}", work.units / limit,
                                stride, load_size, patch, "--max-work"))


def check_job(job: Job, max_work: float, max_seconds: float, seconds_scale: float = 1.0) -> None:
    """Raise :class:`WorkRefused` when ``job`` is above ``max_work`` units or above ``max_seconds``
    estimated seconds on this server (``job.seconds x seconds_scale``; one sentence: estimate,
    limit, the knob to lower)."""
    check(job.work, max_work, job.stride, job.load_size, job.patch)
    seconds = job.seconds * seconds_scale
    if seconds > max_seconds:
        raise WorkRefused(_too_much(job.work, f"about {seconds:.0f} s", f"{max_seconds:.0f} s",
                                    seconds / max_seconds, job.stride, job.load_size, job.patch,
                                    "--max-seconds"))


def _too_much(work: Work, estimate: str, limit: str, ratio: float, stride: int, load_size: int | None,
              patch: int | None, flag: str) -> str:
    n = len(work.tokens)
    biggest = max(work.tokens) if work.tokens else 0
    # the knob with the biggest effect first: stride (square), then load size (fourth power),
    # then the number of images (linear)
    if (patch is None or stride < patch) and ratio <= 64:   # one stride step is ~16x less
        knob = f"use a larger stride than {stride}"
    elif load_size and ratio > 1.5:
        knob = (f"use a smaller load size than {load_size} (work grows with its fourth power) "
                f"or a larger stride")
    else:
        knob = "use fewer or smaller images" + (f" or a smaller load size than {load_size}" if load_size else "")
    return (f"this request is too much work for this server: {estimate} ({n} image{'s' if n != 1 else ''} "
            f"of up to {biggest:,} patches, {work.blocks} blocks), above the limit of {limit}; {knob} "
            f"(Advanced settings), or run the demo locally with a higher {flag}")


def max_load_size(patch: int, stride: int, blocks: int, images: int, limit: float,
                  sizes: Sequence[int], fits: Callable[[Job], bool] | None = None, **job: Any) -> int | None:
    """The largest of ``sizes`` whose smallest request (``images`` square images) fits ``limit``
    units (and ``fits(job)``, e.g. the seconds limit; ``job``: the Job's other fields); None when
    even the smallest is refused (the page then does not offer this stride)."""
    best = None
    for s in sorted(sizes):
        j = Job(sizes_wh=((s, s),) * images, load_size=s, patch=patch, stride=stride, blocks=blocks, **job)
        if j.work.units <= limit and (fits is None or fits(j)):
            best = s
    return best


def offered_strides(patch: int, blocks: int, images: int, limit: float, sizes: Sequence[int],
                    fits: Callable[[Job], bool] | None = None, **job: Any) -> list[int]:
    """Divisors of ``patch`` that are accepted at least at the smallest load size."""
    return [d for d in range(1, patch + 1)
            if patch % d == 0 and max_load_size(patch, d, blocks, images, limit, sizes, fits, **job) is not None]


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process, all its threads (torch's intra-op threads too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class WorkMeter:
    """The work a running job has done, in the unit of its estimate: seconds on the 2-vCPU machine,
    i.e. the process's CPU seconds since :meth:`start` / :data:`REFERENCE_CORES`.

    Wall time means nothing on a shared machine, and the job thread's own CPU time misses torch's
    intra-op threads (README "Limits of the public demo": about half of the work); the process's
    CPU time is the job's while it is the only heavy job running (the gate's default concurrency
    of 1; clicks add a little). With ``running() > 1`` jobs at once, each is charged its share of
    the CPU time since the last reading. :meth:`check` (called at the library's stop points) raises
    :class:`Overrun` past ``factor`` x ``estimate_s``; ``factor`` = inf turns it off.

    ``hold_s``: while ``waiting()`` > 0 (another visitor's job waits for the slot), the job is also
    stopped once it has held the slot this many wall seconds, or its allowance if that is longer
    (:attr:`hold_limit_s`); inf: never."""

    def __init__(self, estimate_s: float, factor: float = DEFAULT_OVERRUN,
                 running: Callable[[], int] = lambda: 1,
                 cpu: Callable[[], float] = process_cpu_seconds,
                 hold_s: float = math.inf, waiting: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.estimate_s, self.factor, self.hold_s = float(estimate_s), float(factor), float(hold_s)
        self._running, self._cpu, self._waiting, self._clock = running, cpu, waiting, clock
        self._last = cpu()
        self._start = clock()
        self._lock = threading.Lock()
        self.done_s = 0.0

    @property
    def allowance_s(self) -> float:
        """Seconds of work after which the job is stopped."""
        return self.factor * self.estimate_s

    def seconds(self) -> float:
        """Seconds of work done so far (see the class)."""
        with self._lock:
            now = self._cpu()
            self.done_s += max(0.0, now - self._last) / (REFERENCE_CORES * max(1, self._running()))
            self._last = now
            return self.done_s

    @property
    def hold_limit_s(self) -> float:
        """Wall seconds the job may hold its slot while another job waits."""
        allowance = self.allowance_s if math.isfinite(self.allowance_s) else 0.0
        return max(self.hold_s, allowance)

    def check(self) -> None:
        """Raise :class:`Overrun` (one sentence) when the job is past its allowance, or has held its
        slot past :attr:`hold_limit_s` while another visitor waits."""
        if math.isfinite(self.allowance_s):
            done = self.seconds()
            if done > self.allowance_s:
                times = "twice" if self.factor == 2 else f"{self.factor:g} times"
                raise Overrun(f"stopped after {_secs(done)} s of work: more than {times} its estimate of "
                              f"{_secs(self.estimate_s)} s; try fewer or smaller images")
        if math.isfinite(self.hold_limit_s):
            held = self._clock() - self._start
            if held > self.hold_limit_s and self._waiting() > 0:
                raise Overrun(f"stopped after {_secs(held)} s while other visitors waited (a job keeps "
                              f"the demo at most {_secs(self.hold_limit_s)} s when others wait; this "
                              f"server is busy): try fewer or smaller images, or again in a minute")


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


class WorkGate:
    """Heavy jobs ``concurrency`` at a time; at most ``max_waiting`` wait, each up to ``max_wait_s``
    without the queue moving (a job ahead getting its slot starts the count again); each visitor
    has at most ``per_visitor`` job running or waiting.

    ``acquire(on_wait, visitors=(session, address))`` raises :class:`Busy` at once when the waiting
    room is full or when one of ``visitors`` (keys of the same visitor: the browser session, the
    client's address) already has ``per_visitor`` jobs in, and after ``max_wait_s`` seconds in which
    no job ahead got a slot; ``on_wait(position)`` is called while waiting (the page's progress line). Waiters
    are served first come, first served, so a visitor waits at most for the jobs of the visitors
    ahead, one each.
    """

    def __init__(self, concurrency: int = 1, max_waiting: int = 4, max_wait_s: float = 120.0,
                 per_visitor: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1 or max_waiting < 0 or not max_wait_s > 0 or per_visitor < 1:
            raise ParameterError("concurrency >= 1, max_waiting >= 0, max_wait_s > 0 and per_visitor >= 1 "
                                 "are needed")
        self.concurrency, self.max_waiting, self.max_wait_s = concurrency, max_waiting, max_wait_s
        self.per_visitor = per_visitor
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._queue: list[object] = []      # waiting tickets, first come first
        self._jobs: dict[Hashable, int] = {}    # visitor key -> jobs running or waiting
        self._started = 0                   # jobs that got a slot so far (the queue moved)
        self.waits: list[float] = []        # seconds each admitted job waited (the soak reads it)
        self.refused = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def jobs_of(self, visitor: Hashable) -> int:
        """Jobs of ``visitor`` running or waiting."""
        with self._cond:
            return self._jobs.get(visitor, 0)

    def acquire(self, on_wait: Callable[[int], None] | None = None,
                visitors: Sequence[Hashable] = ()) -> float:
        """Wait for a slot (see the class); returns the seconds waited. Pair with
        :meth:`release` (the same ``visitors``)."""
        ticket = object()
        start = self._clock()
        with self._cond:
            if any(self._jobs.get(v, 0) >= self.per_visitor for v in visitors):
                self.refused += 1
                raise Busy("you already have a job running or waiting on this demo (one at a time per "
                           "visitor): wait for it to finish, then press again")
            if self._running >= self.concurrency or self._queue:
                if len(self._queue) >= self.max_waiting:
                    self.refused += 1
                    raise Busy(f"the demo is busy ({self._running} job running, {len(self._queue)} "
                               "waiting, the most it queues): try again in a minute, or run it "
                               "locally (python app.py)")
            self._count(visitors, +1)
            self._queue.append(ticket)
            since, started = start, self._started
            try:
                while self._running >= self.concurrency or self._queue[0] is not ticket:
                    if self._started != started:        # a job ahead got its slot: the wait goes on
                        since, started = self._clock(), self._started
                    left = self.max_wait_s - (self._clock() - since)
                    if left <= 0:
                        self.refused += 1
                        raise Busy(f"the demo stayed busy for {self.max_wait_s:.0f} s without the queue "
                                   "moving, the longest a job waits here: try again in a minute, or run "
                                   "it locally (python app.py)")
                    if on_wait is not None:
                        on_wait(self._queue.index(ticket) + 1)
                    self._cond.wait(timeout=min(left, 1.0))
            except BaseException:
                self._count(visitors, -1)
                raise
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            self._running += 1
            self._started += 1
        waited = self._clock() - start
        self.waits.append(waited)
        del self.waits[:-1000]
        return waited

    def release(self, visitors: Sequence[Hashable] = ()) -> None:
        with self._cond:
            self._running -= 1
            self._count(visitors, -1)
            self._cond.notify_all()

    def _count(self, visitors: Sequence[Hashable], step: int) -> None:
        for v in set(visitors):
            n = self._jobs.get(v, 0) + step
            if n > 0:
                self._jobs[v] = n
            else:
                self._jobs.pop(v, None)

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None,
             visitors: Sequence[Hashable] = ()) -> Iterator[float]:
        """Hold one slot for the ``with`` body; yields the seconds waited."""
        waited = self.acquire(on_wait, visitors)
        try:
            yield waited
        finally:
            self.release(visitors)


class ClickLimiter:
    """At most ``rate`` events per second per visitor, in bursts of up to ``burst`` (a token bucket
    per visitor key): an auto-clicker is told to slow down instead of taking the cores from others.

    ``allow(visitors)`` is True (and takes a token from each key) or False. Buckets of visitors
    idle for a minute are forgotten (bounded memory under many addresses)."""

    def __init__(self, rate: float = 20.0, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ParameterError("the click rate must be positive")
        self.rate, self.burst = float(rate), float(burst if burst is not None else rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, tuple[float, float]] = {}    # key -> (tokens, time)
        self.refused = 0

    def allow(self, visitors: Sequence[Hashable]) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._buckets) > 10_000:
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            levels = {}
            for v in set(visitors):
                tokens, then = self._buckets.get(v, (self.burst, now))
                levels[v] = min(self.burst, tokens + (now - then) * self.rate)
            if any(t < 1.0 for t in levels.values()):
                self.refused += 1
                return False
            for v, t in levels.items():
                self._buckets[v] = (t - 1.0, now)
            return True

    def sentence(self) -> str:
        return (f"you are clicking faster than this demo answers ({self.rate:.0f} clicks a second at most "
                "per visitor): wait a moment, then click again")

"""The job gate of the served demo, without Gradio: one object that holds the process's limits,
the store of visitors' results, the work gate (heavy jobs one at a time, fair per visitor), the
click limiter and the temporary-file janitor, and admits each heavy job in one call.

A heavy job is admitted in this order: refused at once above the work limit (units or estimated
seconds) or when its working memory can never fit; refused at once when its visitor already has
a job running or waiting, or when the waiting room is full; else it waits (bounded) for its turn,
then reserves its working memory from the result store (least recently used results evicted).
:meth:`JobGate.release` gives both back. While it runs, its :class:`~vitdense.web.serving.workbudget.
WorkMeter` counts its work; the job calls ``Held.meter.check()`` between its steps and is stopped
(:class:`~vitdense.web.serving.workbudget.Overrun`, one sentence) past ``Limits.overrun`` x its
estimate.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Sequence

from vitdense.web.serving import workbudget
from vitdense.web.serving.limits import Limits
from vitdense.web.serving.results import ResultStore
from vitdense.web.serving.tempfiles import Janitor
from vitdense.web.serving.workbudget import ClickLimiter, Job, WorkGate, WorkMeter

log = logging.getLogger("vitdense.web.serving.gate")


@dataclass(frozen=True)
class Held:
    """What an admitted job holds until :meth:`JobGate.release`."""

    work: WorkGate
    store: ResultStore
    reserved: int
    visitors: tuple[Hashable, ...]
    job: Job
    waited: float
    meter: WorkMeter


class JobGate:
    """The process's limits and what enforces them (see the module). :meth:`configure` replaces
    the limits; a part whose own limits changed is rebuilt (a job already admitted releases into
    the part that admitted it)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.results = ResultStore(self.limits.session_bytes, self.limits.idle_s)
        self.work = self._work_gate(self.limits)
        self.clicks = ClickLimiter(self.limits.click_rate)
        self.janitor: Janitor | None = None
        self.last_job: Job | None = None      # the last admitted job (the calibration bench reads it)

    @staticmethod
    def _work_gate(limits: Limits) -> WorkGate:
        return WorkGate(limits.concurrency, limits.max_waiting, limits.max_wait_s, limits.per_visitor)

    def configure(self, limits: Limits) -> Limits:
        """Use ``limits`` from now on."""
        old, self.limits = self.limits, limits
        if (limits.session_bytes, limits.idle_s) != (old.session_bytes, old.idle_s):
            self.results = ResultStore(limits.session_bytes, limits.idle_s)
        if (limits.concurrency, limits.max_waiting, limits.max_wait_s, limits.per_visitor) != \
                (old.concurrency, old.max_waiting, old.max_wait_s, old.per_visitor):
            self.work = self._work_gate(limits)
        if limits.click_rate != old.click_rate:
            self.clicks = ClickLimiter(limits.click_rate)
        return limits

    # -- heavy jobs ----------------------------------------------------------------------------
    def check(self, job: Job) -> None:
        """Refuse ``job`` at once (one sentence) above the work limits or the memory budget."""
        workbudget.check_job(job, self.limits.max_work, self.limits.max_seconds, self.limits.seconds_scale)
        self.results.check_reservation(job.working_bytes)

    def admit(self, job: Job, visitors: Sequence[Hashable] = (),
              on_wait: Callable[[int], None] | None = None) -> Held:
        """Check ``job``, wait for its turn (``visitors``: the keys of who asks, one job each),
        reserve its working memory; what it holds, for :meth:`release`."""
        self.check(job)
        work, store, visitors = self.work, self.results, tuple(visitors)
        waited = work.acquire(on_wait, visitors)
        try:
            reserved = store.reserve(job.working_bytes)
        except BaseException:
            work.release(visitors)
            raise
        self.last_job = job
        seconds = self.seconds(job)
        log.info("heavy job of %s waited %.2f s (%s, ~%.0f s estimated, %.0f MiB reserved; %d visitor keys)",
                 job.app or "?", waited, f"{job.work.units:.3g} units", seconds, reserved / 2**20, len(visitors))
        meter = WorkMeter(seconds, self.limits.overrun, running=lambda: work.running,
                          hold_s=self.limits.hold_s, waiting=lambda: work.waiting)
        return Held(work, store, reserved, visitors, job, waited, meter)

    @staticmethod
    def release(held: Held) -> None:
        """Give back a job's slot and its reserved memory."""
        held.work.release(held.visitors)
        held.store.unreserve(held.reserved)

    def seconds(self, job: Job) -> float:
        """``job``'s estimated seconds on this server (the fit's x ``Limits.seconds_scale``)."""
        return job.seconds * self.limits.seconds_scale

    def fits(self, job: Job) -> bool:
        """Whether ``job`` is within the work limits (units and seconds)."""
        return job.work.units <= self.limits.max_work and self.seconds(job) <= self.limits.max_seconds

    def offered_strides(self, patch: int, depth: int, sizes: Sequence[int], app: str = "",
                        embed_dim: int = 0) -> list[int]:
        """Strides that some load size of ``sizes`` accepts for a pair (the page's choices)."""
        return workbudget.offered_strides(patch, depth, 2, self.limits.max_work, sizes, self.fits,
                                          app=app, embed_dim=embed_dim)

    def load_size_bound(self, patch: int, stride: int, depth: int, sizes: Sequence[int], app: str = "",
                        embed_dim: int = 0) -> int:
        """The largest load size the limits accept for a pair at ``stride`` (the slider's maximum)."""
        return workbudget.max_load_size(patch, stride, depth, 2, self.limits.max_work, sizes, self.fits,
                                        app=app, embed_dim=embed_dim) or min(sizes)

    # -- clicks and files ----------------------------------------------------------------------
    def allow_click(self, visitors: Sequence[Hashable]) -> bool:
        """Whether a visitor's event that is not a heavy job may run now (its click rate)."""
        return not visitors or self.clicks.allow(visitors)

    def start_janitor(self, roots: Sequence[str | Path], keep: frozenset = frozenset()) -> Janitor:
        """Prune ``roots`` by age and under the byte ceiling (``keep``: (name, size) of files never
        deleted); a janitor already running is stopped first."""
        if self.janitor is not None:
            self.janitor.stop()
        lim = self.limits
        self.janitor = Janitor(list(roots), lim.temp_max_age_s, lim.temp_every_s, keep, lim.temp_max_bytes).start()
        return self.janitor

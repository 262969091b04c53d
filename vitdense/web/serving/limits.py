"""Every bound of the served demo in one object, resolved once (``app.py`` flags, environment,
hardware) and handed to the job gate (:class:`vitdense.web.serving.gate.JobGate`)."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from vitdense.web.serving import workbudget
from vitdense.web.serving.results import DEFAULT_IDLE_S, budget_from_env
from vitdense.web.serving.tempfiles import DEFAULT_EVERY_S, DEFAULT_MAX_AGE_S, DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Limits:
    """Every bound of the served demo (``app.py`` flags; README "Limits of the public demo")."""

    session_bytes: int = 4 << 30          # all visitors' results and the running jobs' working memory
    cache_bytes: int = 512 << 20          # descriptors of recently extracted images (instant re-runs)
    idle_s: float = DEFAULT_IDLE_S        # a result unused this long is dropped
    max_work: float = workbudget.DEFAULT_MAX_WORK          # units (tokens^2 x blocks) of one request
    max_seconds: float = workbudget.DEFAULT_MAX_SECONDS    # estimated seconds of one request
    seconds_scale: float = 1.0            # this machine's seconds per second of the 2-vCPU fit
    overrun: float = workbudget.DEFAULT_OVERRUN    # a job is stopped past this x its estimate (inf: never)
    hold_s: float = workbudget.DEFAULT_HOLD_S       # ... or past this many wall seconds (or its allowance,
                                                    # if longer) while another visitor's job waits
    concurrency: int = 1                  # heavy jobs at once
    max_waiting: int = 4                  # heavy jobs waiting at most; beyond: "busy" at once
    max_wait_s: float = 120.0             # the longest a heavy job waits while the queue does not move
    per_visitor: int = 1                  # heavy jobs of one visitor running or waiting
    click_rate: float = 20.0              # events per second per visitor that are not heavy jobs
    proxy_hops: int = 0                   # trusted proxies in front (the client's address is the
                                          # X-Forwarded-For entry this far from the right; 0: the peer)
    queue_size: int = 64                  # Gradio's queue: events (clicks included) waiting to be served
    temp_max_age_s: float = DEFAULT_MAX_AGE_S
    temp_every_s: float = DEFAULT_EVERY_S
    temp_max_bytes: int = DEFAULT_MAX_BYTES   # uploads, outputs, downloads on disk, all together

    @classmethod
    def resolve(cls, cuda: bool = False, **flags: Any) -> "Limits":
        """The limits of this process: ``flags`` (None = not given) over the environment
        (``$VITDENSE_SESSION_MEMORY``, ``$VITDENSE_MAX_WORK``, ``$VITDENSE_MAX_SECONDS``, ``$SPACE_ID``:
        behind Hugging Face's proxy) over the hardware's defaults (``cuda``: no stopping of a job
        past its estimate, which counts the CPU's work)."""
        base = dict(session_bytes=budget_from_env(), max_work=workbudget.default_max_work(cuda),
                    max_seconds=workbudget.default_max_seconds(cuda),
                    overrun=math.inf if cuda else workbudget.DEFAULT_OVERRUN,
                    proxy_hops=1 if os.environ.get("SPACE_ID") else 0)
        return cls(**{**base, **{k: v for k, v in flags.items() if v is not None}})

    def replace(self, **changes: Any) -> "Limits":
        """These limits with ``changes`` (None = unchanged)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

"""The old home of the demo's guards, split into (docs/ARCHITECTURE.md):

- :mod:`vitdense.web.serving.limits` ``Limits`` (every bound, resolved once);
- :mod:`vitdense.web.serving.gate` ``JobGate`` (Gradio-free: work limits, fair waiting, memory
  reservations, click rate) and :mod:`vitdense.web.gate` (the Gradio side: who asks, ``JOBS``,
  ``admit(Job(...))``, job threads);
- :mod:`vitdense.web.status` (status lines, upload checks) and :mod:`vitdense.web.patches` (every
  change to Gradio's behaviour, with its reason).

The names below stay importable for the tests and the benchmarks; ``STORE``, ``GATE`` and
``LIMITS`` read the live job gate.
"""
from __future__ import annotations

from typing import Any

from vitdense.web.gate import (  # noqa: F401
    JOB_NICENESS, JOBS, blocks_run, configure, in_job_thread, load_size_bound, offered_strides,
    release_held, session_id, trim_memory,
)
from vitdense.web.patches import atomic_picture_cache, own_queue_full, raw  # noqa: F401
from vitdense.web.serving import workbudget  # noqa: F401
from vitdense.web.serving.limits import Limits  # noqa: F401
from vitdense.web.serving.results import DEFAULT_IDLE_S  # noqa: F401
from vitdense.web.status import Done, check_upload_value, one_line, set_status, status_reader, wire_status  # noqa: F401


def __getattr__(name: str) -> Any:
    live = {"STORE": lambda: JOBS.results, "GATE": lambda: JOBS.work, "LIMITS": lambda: JOBS.limits}
    if name in live:
        return live[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

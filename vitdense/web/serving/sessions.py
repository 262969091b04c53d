"""The old name of :mod:`vitdense.web.serving.results` (the store of visitors' results), kept so
that old imports still work; ``SessionStore`` is ``ResultStore``."""
from vitdense.web.serving.results import (  # noqa: F401
    DEFAULT_BUDGET_BYTES, DEFAULT_IDLE_S, EVICTED, EXPIRED, CLOSED, ResultStore, SessionCleared,
    budget_from_env, compact_descriptors, compact_tensor, expand_descriptors, nbytes, parse_bytes,
)

SessionStore = ResultStore

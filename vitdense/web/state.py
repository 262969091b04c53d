"""A tab's ``gr.State``: each visitor's results live in the process's result store
(:class:`~vitdense.web.serving.results.ResultStore`: one byte budget for every visitor, least
recently used first out, idle expiry, released when the browser tab closes); the visitor's
``gr.State`` (one per tab) holds only its key. A click or a re-clustering never runs the network
again and two visitors never see each other's data. Result *types* live in their tab modules;
this module owns their keys and lifetime.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import gradio as gr

from vitdense.web.gate import JOBS, session_id
from vitdense.web.serving.results import DEFAULT_IDLE_S

STATE_TTL_S = DEFAULT_IDLE_S   # a visitor's results are dropped this long after their last use

S = TypeVar("S")


def _release(key: Any) -> None:
    JOBS.results.release(key)


def session_state() -> gr.State:
    """A tab's per-visitor key into the result store (None until the tab's first run)."""
    return gr.State(None, time_to_live=JOBS.limits.idle_s, delete_callback=_release)


def keep(result: Any, tab: str) -> str:
    """Store ``result`` as this visitor's result of ``tab`` (the previous one is freed); its key."""
    return JOBS.results.put(session_id(), result, slot=tab)


def load(key: Any, again: str) -> Any:
    """The result under ``key`` (None before a run); SessionCleared (a sentence ending in
    ``again``: what to press) when it was evicted or expired."""
    return JOBS.results.get(key, again)


def save(key: str, result: Any) -> None:
    """The result under ``key`` changed (a click)."""
    JOBS.results.update(key, result)


def release_session(request: gr.Request) -> None:
    """The browser tab was closed: free that visitor's results at once (``demo.unload``)."""
    JOBS.results.release_owner(str(getattr(request, "session_hash", "") or ""))


def updated(value: S, /, **changes: Any) -> S:
    """A new result with ``changes``: handlers never mutate the result they were given (a
    visitor's concurrent events may share it)."""
    return dataclasses.replace(value, **changes)

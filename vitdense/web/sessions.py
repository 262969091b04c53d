"""The session store: each visitor's descriptors and results live in the process-wide
:class:`~vitdense.web.serving.sessions.SessionStore` (one byte budget for every visitor, least recently used
first out, idle expiry, released when the tab closes); the visitor's ``gr.State`` (one per tab)
holds only its key. A click or a re-clustering never runs the network again and two visitors never
see each other's data. Session *types* live in their tab modules; this module owns their lifetime.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import gradio as gr

from vitdense.web import guard

STATE_TTL_S = guard.DEFAULT_IDLE_S   # a session's results are dropped this long after their last use

S = TypeVar("S")


def _release(key: Any) -> None:
    guard.STORE.release(key)


def session_state() -> gr.State:
    """A tab's per-visitor key into the store (None until the tab's first run)."""
    return gr.State(None, time_to_live=guard.LIMITS.idle_s, delete_callback=_release)


def keep(session: Any, tab: str) -> str:
    """Store ``session`` as this visitor's result of ``tab`` (the previous one is freed); its key."""
    return guard.STORE.put(guard.session_id(), session, slot=tab)


def load(key: Any, again: str) -> Any:
    """The session under ``key`` (None before a run); SessionCleared (a sentence ending in
    ``again``: what to press) when it was evicted or expired."""
    return guard.STORE.get(key, again)


def store(key: str, session: Any) -> None:
    """The session under ``key`` changed (a click)."""
    guard.STORE.update(key, session)


def release_session(request: gr.Request) -> None:
    """The browser tab was closed: free that visitor's results at once (``demo.unload``)."""
    guard.STORE.release_owner(str(getattr(request, "session_hash", "") or ""))


def updated(session: S, **changes: Any) -> S:
    """A new session with ``changes``: handlers never mutate the session they were given (a
    visitor's concurrent events may share it)."""
    return dataclasses.replace(session, **changes)

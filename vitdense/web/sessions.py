"""The session store: each visitor's descriptors and results live in that visitor's ``gr.State``
(one per tab), so a click or a re-clustering never runs the network again and two visitors never
see each other's data. Session *types* live in their tab modules; this module owns their lifetime.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import gradio as gr

STATE_TTL_S = 3600         # a session's cached descriptors live this long after its last use

S = TypeVar("S")


def session_state() -> gr.State:
    """A tab's per-visitor store (empty until the tab's first run; expires after STATE_TTL_S)."""
    return gr.State(None, time_to_live=STATE_TTL_S)


def updated(session: S, **changes: Any) -> S:
    """A new session with ``changes``: handlers never mutate the state they were given (a Gradio
    state may be shared by concurrent events of one visitor)."""
    return dataclasses.replace(session, **changes)

"""The status line of each tab (what was done, or what went wrong, kept until the next action;
filled by :func:`vitdense.web.errors.ui_errors`) and the check of an upload as it arrives."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from vitdense.errors import ImageError
from vitdense.web.gate import session_id
from vitdense.web.serving import validate

STATUS_ENTRIES = 20_000          # (session, tab) status lines remembered, oldest dropped

_STATUS: OrderedDict[tuple[str, str], str] = OrderedDict()
_STATUS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Done:
    """The last element of a handler's result: the status line's "what was done"."""

    text: str


def one_line(text: str) -> str:
    """One line (messages are already sentences; file names keep their case)."""
    return " ".join(str(text).split())


def set_status(tab: str, text: str) -> None:
    """Remember ``text`` as what the tab's status line says for this session."""
    with _STATUS_LOCK:
        key = (session_id(), tab)
        _STATUS[key] = text
        _STATUS.move_to_end(key)
        while len(_STATUS) > STATUS_ENTRIES:
            _STATUS.popitem(last=False)


def status_reader(tab: str) -> Callable[[], str]:
    """The ``.then(...)`` function that fills the tab's status line after every event."""
    def read_status() -> str:
        with _STATUS_LOCK:
            return _STATUS.get((session_id(), tab), "")
    read_status.__name__ = f"status_{tab}"
    return read_status


def wire_status(event: Any, tab: str, status: gr.components.Component) -> Any:
    """After ``event`` (success or error), show the tab's status line (not part of the API)."""
    return event.then(status_reader(tab), None, status, api_visibility="private",
                      concurrency_limit=None, show_progress="hidden", queue=False)


def check_upload_value(value: Any, tab: str, check: Callable[[str], Any] = validate.check_upload) -> None:
    """An upload event (gr.Image / gr.Gallery / gr.Video value): warn at once about a file that
    will be refused (``check``: not an image, too small, too large; a video's limits with
    :func:`~vitdense.web.serving.validate.check_video_upload`), and say so in the tab's status line."""
    items = value if isinstance(value, (list, tuple)) else [value]
    problems = []
    for item in items:
        if isinstance(item, (tuple, list)):          # gallery: (path, caption)
            item = item[0]
        if isinstance(item, dict):
            item = item.get("path")
        if isinstance(item, str):
            try:
                check(item)
            except ImageError as err:
                problems.append(one_line(str(err)))
    text = " ".join(problems)
    set_status(tab, text)
    if text:
        gr.Warning(text)

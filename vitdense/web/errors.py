"""Error handling of the web demo: every handler is wrapped, so a visitor sees one clear line and
never a traceback (unexpected errors are logged with theirs on the server). The line is also the
tab's status line (kept until the next action); a session cleared to make room is a sentence, not
an error; a heavy job's slot of the work gate is released when its handler ends; a visitor's
clicks (handlers that are not heavy jobs) are rate-limited."""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

import gradio as gr
import torch

from vitdense.errors import OutOfMemoryError, VitdenseError
from vitdense.web import gate
from vitdense.web.serving.results import SessionCleared
from vitdense.web.status import Done, one_line, set_status

log = logging.getLogger("vitdense.web")

#: callables returning sentences for the visitor after a handler (the pool's GPU -> CPU fallbacks)
NOTICE_SOURCES: list[Callable[[], list[str]]] = []

GENERIC_ERROR = ("Something went wrong on the server (the details were logged). "
                 "Try again with other images or settings.")


def ui_errors(fn: Callable | None = None, *, cleared: Callable[[str], Any] | None = None,
              quiet: bool = False, heavy: bool = False, tab: str | None = None) -> Any:
    """VitdenseError -> gr.Error(its message); out of memory -> what to reduce; anything else ->
    logged with its traceback on the server and a generic gr.Error for the visitor.

    The message (or, on success, the handler's trailing :class:`~vitdense.web.status.Done` text) is
    the status line of the handler's tab (its module's name). A session cleared from the store
    (:class:`~vitdense.web.serving.sessions.SessionCleared`) is no error: every output is kept (``gr.skip()``,
    or ``cleared(sentence)``), the sentence goes to the status line and a warning.
    ``quiet``: a success leaves the status line as it is (an auxiliary step chained after a run).
    ``heavy``: a handler that runs the network: the whole handler runs in a low-priority job thread
    (:func:`vitdense.web.gate.in_job_thread`), so that clicks keep the cores. Any other handler
    that is not ``quiet`` is a click: refused with one sentence when its visitor clicks faster than
    the limit (:func:`vitdense.web.gate.check_click`), and run after the visitor's previous click
    (:func:`vitdense.web.gate.visitor_turn`: the page sends clicks without waiting for answers).
    ``tab``: the tab whose status line it fills (default: the handler's module name).
    ``@ui_errors`` or ``@ui_errors(cleared=..., quiet=..., heavy=..., tab=...)``.
    """
    if fn is None:
        return lambda f: ui_errors(f, cleared=cleared, quiet=quiet, heavy=heavy, tab=tab)
    if heavy:
        fn.vitdense_heavy = True
        handler = ui_errors(fn, cleared=cleared, quiet=quiet, tab=tab)

        @functools.wraps(fn)
        def in_job_thread(*args: Any, **kwargs: Any) -> Any:
            return gate.in_job_thread(handler, *args, **kwargs)
        return in_job_thread
    tab = tab or fn.__module__.rsplit(".", 1)[-1]
    heavy_job = getattr(fn, "vitdense_heavy", False)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        token = gate.CURRENT_TAB.set(tab)
        try:
            if heavy_job or quiet:
                out = fn(*args, **kwargs)
            else:
                gate.check_click()
                with gate.visitor_turn():
                    out = fn(*args, **kwargs)
        except SessionCleared as err:
            msg = one_line(str(err))
            set_status(tab, msg)
            gr.Warning(msg)
            return gr.skip() if cleared is None else cleared(msg)
        except gr.Error as err:
            set_status(tab, one_line(err.message))
            raise
        except OutOfMemoryError as err:
            log.warning("%s: %s", fn.__name__, err)
            msg = f"Out of memory: {err}"
        except VitdenseError as err:
            msg = str(err)
        except (torch.OutOfMemoryError, MemoryError):
            log.warning("%s: out of memory", fn.__name__, exc_info=True)
            msg = ("Out of memory: use fewer images, a smaller load size or a larger stride "
                   "(Advanced settings).")
        except Exception:  # noqa: BLE001 - the one place where unexpected errors are caught
            log.exception("unexpected error in %s", fn.__name__)
            msg = GENERIC_ERROR
        else:
            if isinstance(out, tuple) and out and isinstance(out[-1], Done):
                set_status(tab, f"{out[-1].text} ({time.monotonic() - t0:.1f} s)")
                out = out[:-1]
                return out[0] if len(out) == 1 else out
            if not quiet:
                set_status(tab, "")
            return out
        finally:
            gate.CURRENT_TAB.reset(token)
            gate.release_held()
            for source in NOTICE_SOURCES:   # e.g. a GPU out-of-memory that moved a model to the CPU
                for notice in source():
                    gr.Warning(notice)
        set_status(tab, one_line(msg))
        raise gr.Error(msg, print_exception=False) from None

    return wrapper

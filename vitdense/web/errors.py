"""Error handling of the web demo: every handler is wrapped, so a visitor sees one clear line and
never a traceback (unexpected errors are logged with theirs on the server)."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr
import torch

from ..errors import OutOfMemoryError, VitdenseError

log = logging.getLogger("vitdense.web")

#: callables returning sentences for the visitor after a handler (the pool's GPU -> CPU fallbacks)
NOTICE_SOURCES: list[Callable[[], list[str]]] = []

GENERIC_ERROR = ("Something went wrong on the server (the details were logged). "
                 "Try again with other images or settings.")


def ui_errors(fn: Callable) -> Callable:
    """VitdenseError -> gr.Error(its message); out of memory -> what to reduce; anything else ->
    logged with its traceback on the server and a generic gr.Error for the visitor."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except OutOfMemoryError as err:
            log.warning("%s: %s", fn.__name__, err)
            raise gr.Error(f"Out of memory: {err}", print_exception=False) from None
        except VitdenseError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except (torch.OutOfMemoryError, MemoryError):
            log.warning("%s: out of memory", fn.__name__, exc_info=True)
            raise gr.Error("Out of memory: use fewer images, a smaller load size or a larger "
                           "stride (Advanced settings).", print_exception=False) from None
        except Exception:  # noqa: BLE001 - the one place where unexpected errors are caught
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None
        finally:  # e.g. a GPU out-of-memory that moved a model to the CPU: say so in a sentence
            for source in NOTICE_SOURCES:
                for notice in source():
                    gr.Warning(notice)

    return wrapper

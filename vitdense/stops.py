"""Stop points: where a long computation may be stopped from outside (cooperatively).

The library's long loops (each transformer block of a network pass, each k-means iteration, each
row chunk of a similarity pass, each image of a refinement) call :func:`stop_point`. By default it
does nothing. A server installs a check with :func:`install` (the web demo: stop a job that did
more work than its allowance); the check raises to stop the running computation, and the
exception reaches the caller like any other. A check must be cheap and must not synchronise a
device: it is called a few hundred times per job.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["install", "stop_point"]

_CHECK: Callable[[], None] | None = None


def install(check: Callable[[], None] | None) -> Callable[[], None] | None:
    """Call ``check`` at every stop point from now on (None: none); returns the previous one."""
    global _CHECK
    previous, _CHECK = _CHECK, check
    return previous


def stop_point() -> None:
    """A point where the running computation may be stopped: runs the installed check, if any."""
    check = _CHECK
    if check is not None:
        check()

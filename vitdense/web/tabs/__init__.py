"""The demo's tabs: every module of this package is a tab, in ``ORDER``. Each has ``ID``, ``TITLE``,
``APP`` (its registry entry), ``ORDER``, its handlers, its session type and ``build(page)`` (layout
and wiring inside its ``gr.Tab``); an optional ``available()`` hides it where it cannot run.
Adding a tab is adding a module here."""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def _discover() -> list[ModuleType]:
    mods = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted((m for m in mods if hasattr(m, "build")), key=lambda m: m.ORDER)


TABS: list[ModuleType] = _discover()

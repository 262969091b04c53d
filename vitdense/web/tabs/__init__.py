"""The demo's tabs: every module of this package is a tab, in ``ORDER``. Each has ``APP`` (its
registry entry, :func:`vitdense.apps.get_app`), ``ID`` and ``TITLE`` (the entry's id and title),
``ORDER``, its handlers (their knob parameters from the entry: :func:`vitdense.web.controls.knob_params`),
its result type and ``build(page)`` (layout and wiring inside its ``gr.Tab``: the entry's web knobs
as controls, endpoints under the entry's API names); an optional ``available()`` hides it where it
cannot run. An application of the registry without a module here gets a tab derived from its entry
alone (:mod:`vitdense.web.apptab`)."""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def _discover() -> list[ModuleType]:
    from vitdense.apps import APPS
    from vitdense.web.apptab import FIRST_ORDER, app_tab
    mods = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    tabs = [m for m in mods if hasattr(m, "build")]
    own = {m.APP.id for m in tabs}
    tabs += [app_tab(app, FIRST_ORDER + i) for i, app in enumerate(a for a in APPS.values() if a.id not in own)]
    return sorted(tabs, key=lambda m: m.ORDER)


TABS: list[ModuleType] = _discover()

"""The zero-shot applications: one module per application (a pure function from images or cached
descriptors to a small result dataclass), and the registry that describes each once
(``registry``: ``App``, ``Knob``; ``entries``: the descriptions of the first applications; a newer
application registers itself at the bottom of its own module) for the CLI, the web tabs, exports and
tests. Importing this package imports each of its modules, so every entry is registered."""
import importlib
import pkgutil

from vitdense.apps.registry import APPS, App, Inputs, Knob, get_app, register_app  # noqa: F401

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

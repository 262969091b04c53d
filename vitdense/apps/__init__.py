"""The zero-shot applications: one module per application (a pure function from images or cached
descriptors to a small result dataclass), and the registry that describes each once
(``registry``: ``App``, ``Knob``; ``entries``: the descriptions) for the CLI, the web tabs,
exports and tests."""
from vitdense.apps import entries  # noqa: F401,E402  (registers every application)
from vitdense.apps.registry import APPS, App, Inputs, Knob, get_app, register_app  # noqa: F401

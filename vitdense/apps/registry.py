"""The application registry: each application described once, as data.

In the spirit of timm's ``register_model`` + ``default_cfgs`` and segment-anything's
``sam_model_registry``: an :class:`App` names an application (id, title, one-line summary), says
what it takes (input kind), how it runs (``run(ex, images, **knobs)`` and the descriptor-level
variant), its knobs (type, range, help; defaults are *never* written here: they come from
:func:`vitdense.defaults.task_defaults` for the model in use, else from the signature of the
function the knob belongs to), how it exports a result (one exporter: the command line writes its
entries into an output folder, the web demo into a zip, so both have one layout) and how it
summarises a result in one line.

The command line (:mod:`vitdense.cli.main`), the web tabs (:mod:`vitdense.web`), the API-name lists of
the tests and the README table are derived from :data:`APPS`. The entries live in
:mod:`vitdense.apps.entries`, or at the bottom of an application's own module (as timm's
``@register_model``): importing :mod:`vitdense.apps` imports every module of the package, so each
entry is registered.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from vitdense.defaults import task_defaults
from vitdense.features.descriptors import DESCRIPTOR_KNOBS

__all__ = ["Knob", "App", "Inputs", "APPS", "APP_ALIASES", "register_app", "get_app", "INPUT_KINDS"]

#: what an application takes: a set of images, a pair, a video clip, two single images
INPUT_KINDS = ("set", "pair", "clip", "images")


@dataclass(frozen=True)
class Knob:
    """One option of an application.

    ``stage`` says which function receives it: ``"run"`` the application (``App.run``),
    ``"read"`` the input reader (e.g. video frames), ``"export"`` the exporter (drawing options).
    Its default is that function's value for the model (see :meth:`App.default`), never stored here.
    """

    name: str
    kind: type | str            # int, float, bool, str, or "choice" / "int_or_auto" / "float_or_none" / "ints3" / "crf"
    help: str
    low: float | None = None    # range shown in the web demo's slider and checked by the library
    high: float | None = None
    step: float | None = None   # the web slider's step
    choices: tuple = ()
    stage: str = "run"
    web: bool = False           # a control in the application's web tab

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass
class Inputs:
    """What an input reader hands to an application: images (H x W x 3 uint8) and their names, plus
    keyword arguments for ``App.run`` that come from the input (e.g. a clip's frame rate)."""

    images: list
    names: list[str]
    extra: dict = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class App:
    """One application, described once (see the module docstring)."""

    id: str                                # command name, web tab id and run API name ("cosegmentation")
    task: str                              # its row of vitdense.defaults.TASK_DEFAULTS
    title: str                             # "Co-segmentation"
    summary: str                           # one line: what it gives
    input: str                             # one of INPUT_KINDS
    run: Callable[..., Any]                # run(extractor, images, **knobs) -> result dataclass
    run_descriptors: Callable[..., Any] | None
    export: Callable[..., dict[str, Any]]  # export(result, inputs, stems, **export knobs) -> entries
    describe: Callable[[Any], str]         # result -> one-line summary
    knobs: tuple[Knob, ...] = ()
    description: str = ""                  # the CLI's --help text
    api_names: tuple[str, ...] = ()        # the web demo's API endpoints; the first is ``id`` (the run)
    api_aliases: dict = field(default_factory=dict)  # deprecated API name -> its name in api_names
    web_first: tuple[str, ...] = ()        # web knobs the run endpoint takes before the descriptor settings
    min_images: int = 1
    max_images: int | None = None
    reader: Callable[..., Any] | None = None    # the "read" stage's function (clips: read_video)
    delegates: tuple[Callable, ...] = ()        # functions ``run`` passes its other knobs on to
    prepare: Callable[..., dict] | None = None  # (inputs, {name: value}) -> more run kwargs (e.g. a source index)
    prepare_options: tuple[str, ...] = ()       # the options ``prepare`` reads (e.g. a query point)
    cli_options: Callable[[Any], None] | None = None  # extra CLI arguments the knobs do not describe
    extract_options: dict = field(default_factory=dict)  # what Extractor.extract must add (e.g. saliency)

    def knob(self, name: str) -> Knob:
        return next(k for k in self.knobs if k.name == name)

    def stage_knobs(self, stage: str) -> list[Knob]:
        return [k for k in self.knobs if k.stage == stage]

    @property
    def web_knobs(self) -> tuple[str, ...]:
        """The run knobs of the web tab (``Knob.web``), in the order of its controls and of its run
        endpoint's parameters: ``web_first`` first, then the others in the entry's order."""
        names = [k.name for k in self.knobs if k.web and k.stage == "run"]
        return tuple(self.web_first) + tuple(n for n in names if n not in self.web_first)

    @property
    def descriptor_knobs(self) -> tuple[str, ...]:
        """The descriptor settings ``run`` accepts (``hierarchy`` only where it log-bins)."""
        params = inspect.signature(self.run).parameters
        return tuple(k for k in DESCRIPTOR_KNOBS if k in params)

    def _stage_function(self, stage: str) -> Callable | None:
        return {"run": self.run, "read": self.reader, "export": self.export}.get(stage)

    def default(self, name: str, model: str | None = None) -> Any:
        """The default of knob (or descriptor setting) ``name`` for ``model``: the defaults table's
        value for this task and model, else the default in the signature of the knob's function."""
        table = task_defaults(self.task, model)
        if name in table:
            return table[name]
        stage = self.knob(name).stage if any(k.name == name for k in self.knobs) else "run"
        funcs = [self._stage_function(stage), self.run_descriptors, *self.delegates] if stage == "run" \
            else [self._stage_function(stage)]
        for f in funcs:
            if f is None:
                continue
            p = inspect.signature(f).parameters.get(name)
            if p is not None and p.default is not inspect.Parameter.empty:
                return p.default
        raise KeyError(f"{self.id}: no default for {name!r} (neither in defaults.py nor in a signature)")

    def defaults(self, model: str | None = None, stage: str = "run") -> dict[str, Any]:
        """Every default of ``stage`` (with the descriptor settings for ``"run"``) for ``model``."""
        names = [k.name for k in self.stage_knobs(stage)]
        if stage == "run":
            names = list(self.descriptor_knobs) + names
        return {n: self.default(n, model) for n in names}


APPS: dict[str, App] = {}

#: deprecated application ids -> their id (the command line keeps them as command aliases)
APP_ALIASES: dict[str, str] = {"cosegment": "cosegmentation", "correspond": "correspondences"}


def register_app(app: App) -> App:
    """Add ``app`` to :data:`APPS` (its id must be new)."""
    if app.id in APPS:
        raise KeyError(f"application {app.id!r} is registered twice")
    if app.api_names and app.api_names[0] != app.id:
        raise ValueError(f"{app.id}: the run's API name {app.api_names[0]!r} must be the id (app id = tab id = API name)")
    if app.input not in INPUT_KINDS:
        raise ValueError(f"{app.id}: input {app.input!r} is not one of {INPUT_KINDS}")
    APPS[app.id] = app
    return app


def get_app(app_id: str) -> App:
    """The registered application ``app_id`` (``import vitdense.apps.entries`` registers the entries);
    a deprecated id of :data:`APP_ALIASES` still finds its application, with a DeprecationWarning."""
    table = APPS
    if app_id in APP_ALIASES:
        warnings.warn(f"application id {app_id!r} is deprecated: use {APP_ALIASES[app_id]!r}",
                      DeprecationWarning, stacklevel=2)
        app_id = APP_ALIASES[app_id]
    if app_id not in table:
        raise KeyError(f"unknown application {app_id!r}: expected one of {', '.join(table)}")
    return table[app_id]

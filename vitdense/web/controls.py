"""What a tab derives from its registry entry (vitdense.apps.entries): a knob -> the Gradio component
that sets it (the knob's range, help and the default for the page's model), a handler's knob
parameters (``App.web_knobs``: names and order, as the API shows them), its endpoints under the
entry's API names (and the deprecated ones), and the on-demand download."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from vitdense.apps import get_app
from vitdense.apps.registry import App
from vitdense.web.serving import validate

#: short labels of knobs in the page (otherwise the knob's name, capitalised)
LABELS = {"thresh": "Saliency threshold", "votes_percentage": "Votes %", "refine": "GrabCut refinement",
          "crf": "CRF smoothing", "num_parts": "Number of parts", "num_sampled_frames": "Frames to co-segment",
          "num_pairs": "Number of pairs", "top_n": "Top-n patches"}


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def knob_components(app: App | str, model: str | None, names: tuple[str, ...] | None = None) -> list:
    """The controls of ``app``'s web knobs (default: all of ``App.web_knobs``, in their order), in one row."""
    app = get_app(app) if isinstance(app, str) else app
    with gr.Row():
        return [knob_component(app, name, model) for name in (app.web_knobs if names is None else names)]


def knob_params(app: App) -> Callable[[Callable], Callable]:
    """Decorator: a handler's ``knobs`` parameter becomes one parameter per web knob of ``app``
    (``App.web_knobs``, each defaulting to None): those of ``web_first`` right before ``model`` (where
    the handler takes one), the others where ``knobs`` stands. Gradio calls the handler, and the API names its parameters, in
    that order; the handler receives the values as sent, ``knobs={name: value}`` (see
    :func:`knob_values`). Adding or reordering a web knob in the entry changes the tab and the API."""
    def decorate(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters.values())
        knob = lambda name: inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)  # noqa: E731
        names = [p.name for p in params]
        first = app.web_first if "model" in names else ()   # (a handler without settings: all in order)
        at = names.index("knobs")
        params[at:at + 1] = [knob(n) for n in app.web_knobs if n not in first]
        if first:
            at = names.index("model")
            params[at:at] = [knob(n) for n in first]
        signature = inspect.Signature(params)

        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            given = signature.bind(*args, **kwargs)
            given.apply_defaults()
            values = dict(given.arguments)
            return fn(**{n: v for n, v in values.items() if n not in app.web_knobs},
                      knobs={n: values[n] for n in app.web_knobs})
        handler.__signature__ = signature
        return handler
    return decorate


def run_inputs(app: App, inputs: list, page: "Page", controls: list) -> list:
    """A run event's inputs in its handler's order (:func:`knob_params`): the tab's own inputs, the
    controls of ``web_first``, the page's descriptor settings, the other knobs' controls."""
    n = len(app.web_first)
    return [*inputs, *controls[:n], *page.descriptor_inputs, *controls[n:]]


def knob_values(app: App | str, knobs: dict | None, model: str | None) -> dict:
    """Every web knob of ``app`` (``App.web_knobs``, in order) from ``{name: value as sent}``:
    :func:`knob_value` of each (missing or None: the default for ``model``)."""
    app = get_app(app) if isinstance(app, str) else app
    return {name: knob_value(app, name, (knobs or {}).get(name), model) for name in app.web_knobs}


def knob_component(app: App | str, name: str, model: str | None, label: str | None = None,
                   **kwargs: Any) -> Any:
    """The control of knob ``name`` of ``app``: a slider (numbers with a range), a checkbox (bool),
    a dropdown (choices), a number otherwise; its value is the app's default for ``model``
    (``component.knob`` names it: ``(app id, knob name)``)."""
    app = get_app(app) if isinstance(app, str) else app
    component = _control(app, name, model, label, **kwargs)
    component.knob = (app.id, name)
    return component


def _control(app: App, name: str, model: str | None, label: str | None, **kwargs: Any) -> Any:
    knob = app.knob(name)
    value = app.default(name, model)
    info = knob.help[0].upper() + knob.help[1:] + "."
    label = label or _label(name)
    if knob.kind is bool:
        return gr.Checkbox(bool(value), label=label, info=info, **kwargs)
    if knob.choices:
        return gr.Dropdown(list(knob.choices), value=value, label=label, info=info, **kwargs)
    if knob.low is not None and knob.high is not None:
        step = knob.step or (1 if knob.kind is int else 0.01)
        return gr.Slider(knob.low, knob.high, value=value, step=step, label=label, info=info, **kwargs)
    return gr.Number(value, label=label, info=info, precision=0 if knob.kind is int else None, **kwargs)


def knob_value(app: App | str, name: str, value: Any, model: str | None, kind: type | None = None) -> Any:
    """A handler's argument for knob ``name``: None -> the app's default for ``model``; numbers
    (finite, within the knob's range, whole for int knobs), flags and choices are validated (one
    sentence each)."""
    app = get_app(app) if isinstance(app, str) else app
    if value is None:
        return app.default(name, model)
    knob = app.knob(name)
    kind = kind or knob.kind
    if knob.choices:
        return validate.choice(name, value, list(knob.choices))
    if kind is bool:
        return validate.flag(name, value)
    if kind in (int, float, "float_or_none"):   # API values arrive as sent: checked here
        return validate.number(name, value, knob.low, knob.high, integer=kind is int)
    return value


def endpoint(page: "Page", trigger: Callable, fn: Callable, inputs: Any, outputs: Any, api_name: str,
             **kwargs: Any) -> Any:
    """``trigger(fn, inputs, outputs, api_name=...)``, watched (the tab's status line): ``api_name``
    must be one of the tab's entry's ``api_names``; each deprecated name the entry maps to it
    (``App.api_aliases``) answers the same event from a hidden button, listed in the API page as
    deprecated (gradio_client sends keyword arguments only to a listed endpoint). Returns the event."""
    app = get_app(page.tab)
    if api_name not in app.api_names:
        raise KeyError(f"{app.id}: API name {api_name!r} is not in its registry entry's api_names")
    event = trigger(fn, inputs, outputs, api_name=api_name, concurrency_limit=None, **kwargs)
    page.watch(event)
    for old in (old for old, new in app.api_aliases.items() if new == api_name):
        page.watch(gr.Button(visible=False).click(fn, inputs, outputs, api_name=old, concurrency_limit=None,
                                                  api_description=f"Deprecated: the old name of /{api_name}.",
                                                  **kwargs))
    return event


def download_output(label: str) -> tuple[Any, Any]:
    """A tab's download: its file and, next to it, the button that builds the zip of what the tab
    shows now (clicks included) only when pressed; clicks write nothing to disk."""
    with gr.Row(equal_height=True):
        file = gr.File(height=90, label=label, scale=4)
        button = gr.Button("Prepare download", scale=1, elem_classes=["vd-prepare-download"])
    return file, button


@dataclass
class Page:
    """What every tab's ``build`` receives: the page-wide inputs (model and descriptor settings)."""

    model: Any                     # the model dropdown
    descriptor_inputs: list        # [model, layer, facet, stride, load_size, bin]
    default_model: str
    tab: str = ""                  # the tab being built
    status: Any = None             # its status line (gr.Markdown)
    demo: Any = None               # the page's gr.Blocks (for load events)

    def watch(self, event: Any) -> Any:
        """Show the tab's status line after ``event`` (what went wrong, or what was done).

        Gradio 6 runs no ``.then`` after an event that raised, so a failure reads the line too."""
        from vitdense.web.status import status_reader, wire_status
        event.failure(status_reader(self.tab), None, self.status, api_visibility="private",
                      concurrency_limit=None, show_progress="hidden", queue=False)
        return wire_status(event, self.tab, self.status)

    def on_select(self, picture: Any, fn: Callable, inputs: Any, outputs: Any, drawn: str | None = None) -> Any:
        """A click on ``picture`` (``fn(..., evt: gr.SelectData)``; private, watched).

        ``drawn``: JavaScript telling whether the page draws the click's answer itself
        (:func:`vitdense.web.hover.page_draws`); its value reaches ``fn`` as one more input, right
        before ``evt``, and the handler then sends marks instead of pictures.

        Gradio's default trigger mode ("once") drops a click made while the previous click's event
        is still pending: a quick second click, or any click under load, got no answer at all.
        "multiple" sends every click; ``ui_errors`` runs a visitor's clicks one at a time
        (:func:`vitdense.web.gate.visitor_turn`) and limits their rate. ("always_last" re-sent the
        first click's position.) A click is not queued: a drawn click's handler takes 2-40 ms, and
        the queue's round trip added ~50 ms to its answer in the page (p50 130-138 ms queued, 74-115
        ms not, ``bench/bench_click_page.py``, 2026-12-05); heavy jobs keep the queue."""
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        js = None
        if drawn is not None:
            inputs.append(gr.Checkbox(False, visible=False))
            js = f"(...v) => [...v.slice(0, -1), {drawn}]"
        return self.watch(picture.select(fn, inputs, outputs, api_visibility="private", concurrency_limit=None,
                                         show_progress="minimal", trigger_mode="multiple", js=js, queue=False))

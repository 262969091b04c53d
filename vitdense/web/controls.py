"""Page controls derived from the registry: a knob of an application (vitdense.apps.entries) -> the Gradio
component that sets it, with the knob's range, help and the default for the page's model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def knob_components(app: App | str, names: tuple[str, ...], model: str | None) -> list:
    """The controls of several knobs of ``app``, in one row."""
    with gr.Row():
        return [knob_component(app, name, model) for name in names]


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

"""Every change the demo makes to Gradio's own behaviour, in one place, each with its reason.

1. :func:`own_queue_full`: the full queue answers our sentence, not "Queue is full. Max size is N".
2. :func:`atomic_picture_cache`: a cached picture is replaced whole, never rewritten in place under
   a download (Gradio's ``save_pil_to_cache``).
3. :func:`raw`: a number or choice reaches our validators as sent (the component's ``preprocess``),
   instead of Gradio's rounding and "not in the list of choices" texts.
4. :func:`upload_path`: an image upload reaches the handler as its path, unopened (``gr.Image``'s
   ``preprocess`` opens it with PIL and fails with a long message on a bad file).
5. :func:`check_api_inputs`: every API call is judged before Gradio's data models see it (too few
   values, a malformed file payload, a model the page does not offer): one sentence, where
   Gradio would answer with pydantic's text and log a traceback (``Blocks.validate_inputs``).
"""
from __future__ import annotations

import os
import threading
import types
from pathlib import Path
from typing import Any, Callable, Collection, Optional

import gradio as gr


def own_queue_full(demo: gr.Blocks) -> None:
    """After ``demo.queue(...)``: a full queue answers our sentence (still a refusal with HTTP 503,
    which Gradio's browser page and gradio_client turn into their own "busy, try again" text)."""
    queue = demo._queue
    push = queue.push

    async def push_ours(*args: Any, **kwargs: Any) -> tuple:
        ok, out, state = await push(*args, **kwargs)
        if state == "queue_full":
            out = (f"the demo is receiving too many requests right now ({queue.max_size} waiting, the "
                   "most it holds): try again in a minute, or run it locally (python app.py)")
        return ok, out, state

    queue.push = push_ours


def atomic_picture_cache() -> None:
    """Gradio writes a picture a handler returns as an array under the hash of its bytes, in place:
    when two visitors are shown the same picture (an example's result), the second write truncates
    the file while the first visitor downloads it ("Too little data for declared Content-Length",
    a broken picture). After this, the file is written under a temporary name and renamed over the
    old one (same bytes), so that a download under way keeps reading the complete old file."""
    from gradio import processing_utils as pu
    if getattr(pu.save_pil_to_cache, "vitdense_atomic", False):
        return

    def save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        staging = path.with_name(f".{path.name}.{threading.get_ident()}")
        staging.write_bytes(data)
        os.replace(staging, path)
        return str(path)

    save_pil_to_cache.vitdense_atomic = True
    pu.save_pil_to_cache = save_pil_to_cache


def _passthrough(self: Any, payload: Any) -> Any:
    return payload


def raw(component: gr.components.Component) -> gr.components.Component:
    """Let ``component``'s value reach the handler as sent, for our validators to judge (the
    instance's preprocess is replaced: a subclass would make Gradio write a .pyi stub)."""
    component.preprocess = types.MethodType(_passthrough, component)
    return component


def _upload_path(self: gr.Image, payload: Any) -> Optional[str]:
    """gr.Image.preprocess replacement: the uploaded file's path, unopened (see upload_path)."""
    if payload is None:
        return None
    if payload.path is None or (payload.url or "").startswith("data:"):
        return gr.Image.preprocess(self, payload)  # pasted data URLs: Gradio writes them to a file
    return str(payload.path)


def upload_path(component: gr.Image) -> gr.Image:
    """Let an image upload reach the handler as the file's path, unopened: our loader reads it and
    reports a non-image or corrupt file in one line."""
    component.preprocess = types.MethodType(_upload_path, component)
    return component


FILE_PAYLOAD = ("a file as the page's 'Use via API' shows it (gradio_client: handle_file(path)), "
                "or null")


def check_api_inputs(demo: gr.Blocks, model: gr.components.Component | None = None,
                     offered: Callable[[], Collection[str]] = tuple) -> None:
    """Judge every call's values before Gradio does (see the module): too few values; a file
    payload its component's data model would refuse; a ``model`` value not in ``offered()``."""
    def validate_inputs(self: gr.Blocks, block_fn: Any, inputs: list) -> None:
        name = f"/{block_fn.api_name}" if block_fn.api_name else "this event"
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"this call is missing inputs: {name} takes {len(block_fn.inputs)} values "
                           f"(a session's state counted), {len(inputs)} were given; see the page's "
                           "'Use via API' for them", print_exception=False)
        for i, (block, value) in enumerate(zip(block_fn.inputs, inputs)):
            if model is not None and block is model and value not in offered():
                shown = str(value)[:60]
                raise gr.Error(f"model {shown!r} is not available on this demo; choose one of "
                               f"{', '.join(offered())}", print_exception=False)
            data_model = getattr(block, "data_model", None)
            if value is None or data_model is None or getattr(block, "stateful", False) \
                    or i in getattr(block_fn, "component_prop_inputs", ()):
                continue
            try:
                data_model.model_validate(value, context={"validate_meta": True})
            except Exception:  # noqa: BLE001 - pydantic's ValidationError and anything a model raises
                what = getattr(block, "label", None) or type(block).__name__
                raise gr.Error(f"{name}: value {i + 1} ({what}) is not {FILE_PAYLOAD}",
                               print_exception=False) from None

    demo.validate_inputs = types.MethodType(validate_inputs, demo)

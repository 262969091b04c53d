"""Hover in the page: the descriptors a tab sends once per run, so that the browser answers every
mouse move itself (one small matrix-vector product in JavaScript, ``static/hover.js``).

What is sent (:func:`hover_payload`): per image, its unit-normalised descriptors quantised to
11-bit integers with one scale per row, byte-shuffled and deflated, in base64 (a default pair is
about 1.8 MB of text against 4.5 MB of fp32 rows and 6 MB as JSON floats), and its grid geometry (cell centres <-> original pixels, :class:`vitdense.features.descriptors.Geometry`). The
page picks the source cell under the pointer like :meth:`Geometry.pixel_to_cell`, and the best
target cell is the argmax of the dequantised dot products (the rule of
``PointMatcher.query(..., refine=False)``).
"""
from __future__ import annotations

import base64
import io
import itertools
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
import torch
from PIL import Image

from vitdense.apps.correspondences import PointMatcher
from vitdense.features.descriptors import ImageDescriptors

STATIC = Path(__file__).resolve().parent / "static"


#: significant bits of the sent descriptors (int16 storage, per-row scale): 11 bits agree with the
#: server's fp16 rows on the best cell for 99.6-99.9% of cells of the example pairs; 8 bits only 97%
BITS = 11


def quantize_rows(unit: torch.Tensor | np.ndarray, bits: int = BITS) -> tuple[np.ndarray, np.ndarray]:
    """T x D rows -> (int16 T x D, float32 T scales), ``row ~= q * scale``, |q| < 2**(bits-1)."""
    x = torch.as_tensor(unit).detach().float().cpu().numpy()
    top = 2 ** (bits - 1) - 1
    scale = np.abs(x).max(axis=1) / top
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(x / scale[:, None]), -top, top).astype(np.int16)
    return q, scale.astype(np.float32)


def pack_rows(q: np.ndarray) -> bytes:
    """int16 rows -> deflate(all high bytes, then all low bytes): the high bytes of small integers
    are nearly constant, so the shuffle lets deflate take about a third off."""
    b = q.astype(">i2").view(np.uint8).reshape(-1, 2)
    return zlib.compress(np.concatenate([b[:, 0], b[:, 1]]).tobytes(), 6)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_entry(desc: ImageDescriptors, unit: torch.Tensor | None = None) -> dict:
    """One image's part of the payload: geometry and its quantised rows (``unit``: already normalised)."""
    g = desc.geometry
    if unit is None:
        unit = torch.nn.functional.normalize(desc.descs.float(), dim=-1)
    q, scale = quantize_rows(unit)
    return {"size": [int(g.orig_size[0]), int(g.orig_size[1])], "grid": [int(g.grid[0]), int(g.grid[1])],
            "stride": int(g.stride), "patch": int(g.patch),
            "scale": [float(g.scale[0]), float(g.scale[1])], "q": _b64(pack_rows(q)),
            "s": _b64(scale.astype("<f4").tobytes())}


def hover_payload(mode: str, descs: Sequence[ImageDescriptors],
                  units: Sequence[torch.Tensor] | None = None, run: int = 0,
                  targets: Sequence[int] | None = None) -> dict:
    """What the page needs to answer hovers: ``mode`` ("correspondences": the best match and the top
    of the similarity map on each target; "similarity": the same, the best cell marked as the
    peak), image 0 the source, ``targets`` the images drawn on (default: all others; the source
    itself for a self-similarity map). ``run`` tells one run's payload from the next."""
    units = units or [None] * len(descs)
    images = [image_entry(d, u) for d, u in zip(descs, units)]
    targets = list(range(1, len(descs))) if targets is None else [int(t) for t in targets]
    return {"mode": mode, "dim": int(descs[0].descs.shape[-1]), "run": run, "images": images,
            "targets": targets}


def matcher_payload(matcher: PointMatcher, run: int = 0) -> dict:
    """The correspondences payload of a :class:`~vitdense.apps.correspondences.PointMatcher`: the
    rows its queries compare (``unit_rows``), so the page's best cell is the server's."""
    return hover_payload("correspondences", [matcher.d1, matcher.d2], list(matcher.unit_rows), run=run)


def _hex(color: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in list(color)[:3])


def picture_marks(picture: str, size: tuple[int, int], points: Any, labels: Sequence[str], colors: Any,
                  avoid: Sequence[Sequence[float]] = ()) -> dict:
    """The markers the page draws over ``picture`` (an element id, or "id@k": the k-th thumbnail
    of a gallery): N x 2 ``points`` (y, x) in the pixels of a ``size`` (H, W) picture, each with its
    label and RGB colour; ``avoid``: label boxes (x0, y0, x1, y1) already drawn on the picture
    (:func:`vitdense.draw.maps.boxes_of`), which the page's labels keep clear of."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    return {"id": picture, "size": [int(size[0]), int(size[1])],
            "marks": [{"y": round(float(y), 2), "x": round(float(x), 2), "label": str(label), "color": _hex(c)}
                      for (y, x), label, c in zip(pts, labels, np.asarray(colors).reshape(-1, 3))],
            "avoid": [[round(float(v), 1) for v in box] for box in avoid]}


def marks_payload(pictures: Sequence[dict], lines: Sequence[dict] = (), heats: Sequence[dict] = ()) -> dict:
    """What the page draws after a click, in place of pictures from the server (value of a
    :func:`marks_block`): ``pictures`` (:func:`picture_marks`), ``lines`` (:func:`mark_line`) and
    ``heats`` (:func:`mark_heat`). A few hundred bytes of JSON; nothing is written to disk."""
    return {"pictures": list(pictures), "lines": list(lines), "heats": list(heats), "answer": next(_ANSWERS)}


def highlight_payload(part: int) -> dict:
    """The Parts tab's answer to a click the page draws (value of its :func:`marks_block`): the part
    highlighted (0: none)."""
    return {"highlight": int(part), "answer": next(_ANSWERS)}


#: numbers each answer, so that two equal answers in a row still reach the page (Gradio passes a
#: component's value to the page only when it changed)
_ANSWERS = itertools.count(1)


def mark_line(a: dict, point_a: Sequence[float], b: dict, point_b: Sequence[float], color: Sequence[int]) -> dict:
    """A line from (y, x) ``point_a`` of picture ``a`` to ``point_b`` of picture ``b`` (both
    :func:`picture_marks`, which give their sizes)."""
    return {"from": a["id"], "to": b["id"], "sizes": [a["size"], b["size"]],
            "a": [round(float(v), 2) for v in point_a], "b": [round(float(v), 2) for v in point_b],
            "color": _hex(color)}


def mark_heat(picture: str, image: int, source: Sequence[float]) -> dict:
    """The top of the similarity map of source pixel (y, x) ``source`` over image ``image`` of the
    tab's hover payload, drawn by the page over ``picture`` (the rule of
    :func:`vitdense.draw.top_heatmap`; the page holds the descriptors)."""
    return {"id": picture, "image": int(image), "source": [round(float(v), 2) for v in source]}


def payload_bytes(payload: dict) -> int:
    """Bytes of the base64 text the page receives (descriptors and scales)."""
    return sum(len(im["q"]) + len(im["s"]) for im in payload["images"])


@lru_cache(maxsize=None)
def script() -> str:
    """The page's hover engine (``static/hover.js``)."""
    return (STATIC / "hover.js").read_text()


def hover_block(tab: str, source: str, targets: Sequence[str], hint: str) -> gr.HTML:
    """The gr.HTML that holds one tab's payload and runs the engine: hovering ``#source img``
    previews on each ``#target img``; ``hint`` is the keyboard help shown to the visitor."""
    template = (f'<div class="vd-hover" tabindex="0" role="application" data-tab="{tab}" '
                f'aria-label="Hover preview. {hint}">'
                '<span class="vd-hover-scale" aria-hidden="true"></span>'
                '<span class="vd-hover-read" aria-live="polite">${value ? "Move the mouse over the '
                'first picture, or focus here and use the arrow keys (Enter asks the server)." : ""}'
                '</span></div>')
    return _script_block(f"{tab}-hover", template, f"vdHoverInit(element, props, watch, {source!r}, "
                                                   f"{list(targets)!r});")


def marks_block(tab: str, source: str) -> gr.HTML:
    """The gr.HTML holding the server's marks after a click (value: :func:`marks_payload`, or None
    when the server drew the pictures), drawn by the hover engine of ``#source``."""
    return _script_block(f"{tab}-marks", "<span></span>", f"vdMarksInit(element, props, watch, {source!r});")


def clear_marks(marks: gr.HTML) -> dict:
    """``event.then(**clear_marks(marks))``: after an event whose pictures the server drew (a run,
    a button, the API), the page's marks of ``marks`` (a :func:`marks_block`) go."""
    return dict(fn=lambda: None, inputs=None, outputs=marks, api_visibility="private", queue=False,
                show_progress="hidden")


def page_pictures(server_drew: bool, plain: Callable[[], tuple], count: int) -> tuple:
    """The pictures a click answers with when the page draws it: ``count`` ``gr.skip()`` (the
    page's marks go over what is shown), unless ``server_drew`` (the pictures last sent have marks
    drawn in by the server): then ``plain()``, the pictures without them, once."""
    return tuple(plain()) if server_drew else (gr.skip(),) * count


def page_draws(source: str) -> str:
    """JavaScript that is true when the page draws the answer to a click on ``#source`` (its hover
    engine or its parts highlight is ready): what a click event sends as its ``drawn`` input."""
    return f"Boolean(window.vdPageDraws && window.vdPageDraws({source!r}))"


def parts_block(source: str, gallery: str) -> gr.HTML:
    """The Parts tab's gr.HTML: a click on ``#source img`` highlights the part under it at once
    over that picture and every thumbnail of ``#gallery`` (value: :func:`parts_payload`)."""
    return _script_block("parts-pin", "<span></span>",
                         f"vdPartsInit(element, props, watch, {source!r}, {gallery!r});")


def parts_payload(part_maps: Sequence[np.ndarray], index: int, run: int = 0) -> dict:
    """Each image's label map (0 background, 1..K parts) as a base64 PNG, and the image shown for
    clicking (``index``): a few KB per image, sent once per result."""
    def png(m: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(m, np.uint8)).save(buf, format="PNG", optimize=True)
        return _b64(buf.getvalue())
    return {"run": run, "index": int(index), "maps": [png(m) for m in part_maps]}


def _script_block(elem_id: str, template: str, call: str) -> gr.HTML:
    """A gr.HTML running ``static/hover.js`` and then ``call`` (its value: the payload)."""
    return gr.HTML(None, html_template=template, css_template=CSS, js_on_load=script() + "\n" + call,
                   elem_id=elem_id, elem_classes=["vd-hover-block"], apply_default_css=False)


#: the colour scale and the readout of the hover block (the ramp of static/hover.js)
CSS = """
.vd-hover { display: flex; gap: 12px; align-items: center; min-height: 1.6em; font-size: 0.9em; }
.vd-hover:focus { outline: 2px solid var(--color-accent); }
.vd-hover-scale { display: inline-flex; align-items: center; gap: 4px; }
.vd-hover-scale b { display: inline-block; width: 120px; height: 10px; border: 1px solid #888;
  background: linear-gradient(to right, rgb(128,0,38), rgb(227,26,28), rgb(253,141,60), rgb(254,217,118), #fff); }
"""

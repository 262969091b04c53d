"""Saliency: where the model looks in each image.

The attention of the last block's CLS token over the patches, averaged over the model's saliency
heads (:attr:`vitdense.features.models.ModelSpec.saliency_heads`; the paper's saliency maps, which
co-segmentation votes with), min-max scaled to [0, 1] per image; plus each image's salient share:
the fraction of its cells above ``thresh``.

This application is described by its own registry entry at the bottom of this module (the
pattern for a new application: this module, a row in :mod:`vitdense.defaults` and a test; the CLI
command ``vitdense saliency`` and the web tab derive from the entry).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vitdense import draw
from vitdense.apps.registry import App, Inputs, Knob, register_app
from vitdense.errors import ParameterError, check_range
from vitdense.features.images import ImageLike, as_image_list
from vitdense.ops.host import to_host

if TYPE_CHECKING:
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

#: what the extraction must add for this application (the web's generic tab passes it on too)
EXTRACT_OPTIONS = {"saliency": True}


@dataclass
class SaliencyResult:
    """Saliency of a set: per image an ``h x w`` map in [0, 1] on its patch grid, its geometry
    (grid <-> original pixels), and the share of its cells above ``thresh``."""

    maps: list[np.ndarray]
    geometries: list["Geometry"]
    salient_share: list[float]
    thresh: float

    @property
    def num_images(self) -> int:
        return len(self.maps)

    def peak(self, i: int) -> tuple[float, float]:
        """(y, x) in original pixels of the most salient cell of image ``i``."""
        return self.geometries[i].cell_to_pixel(int(np.argmax(self.maps[i])))


def saliency_descriptors(descs: Sequence["ImageDescriptors"], thresh: float = 0.065) -> SaliencyResult:
    """Saliency of already-extracted descriptors (extracted with ``saliency=True``)."""
    check_range("thresh", thresh, 0.0, 1.0)
    if not descs:
        raise ParameterError("descs is empty: give the descriptors of at least one image")
    if any(d.saliency is None for d in descs):
        raise ParameterError("these descriptors hold no saliency: extract with saliency=True")
    maps = [t.numpy() for t in to_host([d.saliency.detach().float() for d in descs])]  # one copy off the device
    return SaliencyResult(maps, [d.geometry for d in descs], [float((m > thresh).mean()) for m in maps],
                          float(thresh))


def saliency(extractor: "Extractor", images: ImageLike | Sequence[ImageLike], *, load_size: int | None = 224,
             stride: int | None = None, thresh: float = 0.065, batch_size: int = 8) -> SaliencyResult:
    """Saliency maps of ``images`` (one network pass to the last block; no descriptors kept)."""
    descs = extractor.extract(as_image_list(images), layer=extractor.spec.depth - 1, facet="token", stride=stride,
                              load_size=load_size, batch_size=batch_size, **EXTRACT_OPTIONS)
    return saliency_descriptors(descs, thresh)


def export_saliency(result: SaliencyResult, inputs: Inputs, stems: Sequence[str], meta: dict | None = None,
                    cmap: str = "viridis", alpha: float = 0.6) -> dict[str, Any]:
    """``<stem>_saliency.png`` (the map over the photo), ``<stem>_saliency_map.png`` (the map alone,
    grey, at the photo's size) and ``saliency.json`` (salient share and peak per image)."""
    out: dict[str, Any] = {}
    for img, m, g, stem in zip(inputs.images, result.maps, result.geometries, stems):
        out[f"{stem}_saliency.png"] = draw.saliency_overlay(img, m, alpha, cmap, g)
        out[f"{stem}_saliency_map.png"] = np.round(255 * g.upsample(m, mode="bilinear")).astype(np.uint8)
    out["saliency.json"] = {**(meta or {}), "thresh": result.thresh, "images": [
        {"image": name, "salient_share": share, "peak": {"x": x, "y": y}}
        for i, (name, share) in enumerate(zip(inputs.names, result.salient_share))
        for y, x in [result.peak(i)]]}
    return out


def describe_saliency(result: SaliencyResult) -> str:
    shares = result.salient_share
    return (f"saliency of {result.num_images} image(s): {min(shares):.0%}-{max(shares):.0%} of the cells "
            f"above {result.thresh:g}")


register_app(App(
    id="saliency", task="saliency", title="Saliency",
    summary="where the model looks: the last block's CLS attention over each image",
    description="Saliency maps of a set of images (the last block's CLS attention, averaged over the "
                "model's saliency heads, scaled to [0, 1] per image), and each image's salient share. "
                "Writes OUT/<set>/<image>_saliency.png, <image>_saliency_map.png and saliency.json.",
    input="set", run=saliency, run_descriptors=saliency_descriptors, export=export_saliency,
    describe=describe_saliency, api_names=("saliency",), extract_options=EXTRACT_OPTIONS,
    knobs=(Knob("thresh", float, "a cell is salient above this (the share per image is reported)", 0.0, 1.0, 0.005,
                web=True),
           Knob("batch_size", int, "images per network batch", 1),
           Knob("cmap", "choice", "colormap of the saliency images",
                choices=("viridis", "inferno", "magma", "turbo", "gray"), stage="export"))))


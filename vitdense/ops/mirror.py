"""Test-time mirroring for correspondences: tell an object facing the other way from a mirror.

ViT descriptors encode which way an object faces: a left-facing dog's eye does not match a
right-facing dog's eye well, and log-binned descriptors (which pool a fixed spatial layout)
even less. Following the adaptive pose alignment of GeoAware-SC (Zhang et al., "Telling Left
from Right", CVPR 2024), the target image is also described mirrored, and the orientation
whose descriptors fit the source better is kept:

1. :func:`mirrored_field`: descriptors of the mirrored target, read back at the mirrored
   position of every target cell (bilinear, exact geometry), so the field lives on the target's
   own grid: every answer, similarity map and best buddy stays in the target's pixels and no
   coordinate has to be mapped back;
2. :func:`choose_orientation`: the mean, over the source's cells, of each cell's best cosine
   similarity in the target (an instance-matching score); the mirrored field is kept when it
   beats the plain one by more than ``margin``. The margin keeps near-symmetric views (frontal
   faces), where the two scores are a coin toss, in their own orientation: mirroring those
   swaps left and right.

The margin and the default on/off per model family are measured (``vitdense.defaults``,
README "Correspondence defaults"); ``bench/study_defaults.py`` reproduces them.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vitdense.ops.clustering import l2_normalize
from vitdense.stops import stop_point

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = ["FLIP_MARGIN", "mirrored_field", "orientation_score", "choose_orientation", "extract_oriented"]

#: mean best-similarity gain the mirrored target needs to be kept (cosine units; study half of
#: bench/data/semantic_kp, README "Correspondence defaults")
FLIP_MARGIN = 0.015


def mirrored_field(d_mirrored: "ImageDescriptors", geometry: Any) -> "ImageDescriptors":
    """Descriptors of the mirrored image (``d_mirrored``, extracted from ``image[:, ::-1]``) on
    the grid of the unmirrored image (``geometry``): row ``i`` is the mirrored image's descriptor
    at the mirror of cell ``i``'s centre, ``(y, W0 - x)``. Returns T x D unit rows."""
    centres = np.asarray(geometry.cell_centers(), dtype=np.float64).reshape(-1, 2)      # T x 2 (y, x)
    gy, gx = d_mirrored.geometry._grid_coords(centres[:, 0], float(geometry.orig_size[1]) - centres[:, 1])
    h, w = d_mirrored.geometry.grid
    src = l2_normalize(d_mirrored.descs.float()).t().reshape(1, -1, h, w)              # 1 x D x h x w
    pos = torch.from_numpy(np.stack([2 * gx / max(w - 1, 1) - 1, 2 * gy / max(h - 1, 1) - 1], axis=-1))
    with torch.no_grad():
        out = torch.nn.functional.grid_sample(src, pos.float().to(src.device).reshape(1, 1, -1, 2),
                                              mode="bilinear", padding_mode="border", align_corners=True)
        descs = l2_normalize(out[0, :, 0].t())                                          # T x D
    return dataclasses.replace(d_mirrored, descs=descs.to(d_mirrored.descs.dtype), geometry=geometry,
                               saliency=None, params={**dict(d_mirrored.params or {}), "mirrored": True})


def orientation_score(source: torch.Tensor, target: torch.Tensor, chunk: int | None = None) -> float:
    """Mean over the rows of ``source`` (T1 x D) of the best cosine similarity in ``target``
    (T2 x D), in row chunks (the T1 x T2 matrix is never held at once)."""
    a, b = l2_normalize(source.float()), l2_normalize(target.float().to(source.device)).t()
    step = chunk or max(1, (1 << 24) // max(b.shape[1], 1))
    best = []
    with torch.no_grad():
        for s in range(0, a.shape[0], step):
            stop_point()
            best.append((a[s:s + step] @ b).max(dim=1).values)
    return float(torch.cat(best).mean())


def choose_orientation(d1: "ImageDescriptors", d2: "ImageDescriptors", d2_mirrored: "ImageDescriptors",
                       margin: float = FLIP_MARGIN) -> tuple["ImageDescriptors", bool]:
    """``(d2 or its mirrored field, mirrored?)``: the mirrored field (:func:`mirrored_field` of
    ``d2_mirrored``) when its :func:`orientation_score` against ``d1`` beats ``d2``'s by more
    than ``margin``. The returned descriptors keep ``d2``'s saliency and geometry."""
    field = mirrored_field(d2_mirrored, d2.geometry)
    plain, mirrored = orientation_score(d1.descs, d2.descs), orientation_score(d1.descs, field.descs)
    if mirrored > plain + margin:
        return dataclasses.replace(field, saliency=d2.saliency, params={**field.params,
                                   "orientation_scores": (plain, mirrored)}), True
    return d2, False


def extract_oriented(extractor: "Extractor", image1: Any, image2: Any, margin: float = FLIP_MARGIN,
                     **knobs: Any) -> tuple["ImageDescriptors", "ImageDescriptors", bool]:
    """``extractor.extract`` of both images and of image 2 mirrored (``knobs`` as for
    :meth:`~vitdense.features.extractor.Extractor.extract`), then :func:`choose_orientation`."""
    from vitdense.features.images import load_image
    rgb2 = np.asarray(load_image(image2))
    d1, d2, d2m = extractor.extract([image1, rgb2, np.ascontiguousarray(rgb2[:, ::-1])], **knobs)
    d2, flipped = choose_orientation(d1, d2, d2m, margin)
    return d1, d2, flipped

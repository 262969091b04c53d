"""Similarity inspection (the official ``inspect_similarity.py``).

For one query descriptor of image A (the cell under a chosen pixel, or the CLS token), the cosine
similarity to every patch descriptor of image A and of image B, and the ``top_n`` most similar
patches in each image with their original-pixel coordinates.
Defaults follow the official script: layer 11, no binning, ``top_n=1``; the facet is the model's
default (``facet=None``: the paper's ``key`` for DINO v1, ``token`` for DINOv2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vitdense.apps.correspondences import match_points, point_descriptors
from vitdense.errors import ParameterError, check_int
from vitdense.features.descriptors import check_descriptor_set
from vitdense.ops.clustering import l2_normalize

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = ["SimilarityResult", "inspect_similarity", "inspect_similarity_descriptors"]


@dataclass
class SimilarityResult:
    """Cosine-similarity maps of one query descriptor over images A and B.

    Attributes:
        query_point: ``(y, x)`` the chosen pixel of A as given (original pixels); None for CLS.
        query_cell_point: ``(y, x)`` centre of the query cell in A's original pixels; None for CLS.
        query_index: flat index of the query cell in A's grid; None for CLS.
        match_b: ``(y, x)`` where the query lands in B (original pixels), answered as the demo's
            clicks are (sub-cell soft-argmax when ``refine``); None for CLS.
        map_a: h_a x w_a float32, cosine similarity of the query to every patch of A, in [-1, 1].
        map_b: h_b x w_b float32, the same over B.
        top_a_points: n x 2 float64 ``(y, x)`` original pixels of A's n most similar patches
            (descending similarity; for a patch query the first is the query cell itself).
        top_a_similarity: n float64; top_a_indices: n int64 flat cell indices.
        top_b_points, top_b_similarity, top_b_indices: the same for B.
        geometry_a, geometry_b: the two images' :class:`Geometry` (for upsampling the maps).
        params: extraction parameters and ``top_n``.
    """

    query_point: tuple[float, float] | None
    query_cell_point: tuple[float, float] | None
    query_index: int | None
    match_b: tuple[float, float] | None
    map_a: np.ndarray
    map_b: np.ndarray
    top_a_points: np.ndarray
    top_a_similarity: np.ndarray
    top_a_indices: np.ndarray
    top_b_points: np.ndarray
    top_b_similarity: np.ndarray
    top_b_indices: np.ndarray
    geometry_a: "Geometry"
    geometry_b: "Geometry"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cls(self) -> bool:
        return self.query_index is None

    def upsampled_maps(self, mode: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
        """``(map_a H0a x W0a, map_b H0b x W0b)`` resized to the original image sizes."""
        return (np.asarray(self.geometry_a.upsample(self.map_a, mode=mode), dtype=np.float32),
                np.asarray(self.geometry_b.upsample(self.map_b, mode=mode), dtype=np.float32))


def _check_point(point: Any, size: tuple[int, int]) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in point)
    except (TypeError, ValueError):
        raise ParameterError(f"point={point!r} must be a (y, x) pair of numbers or None (CLS)") from None
    h0, w0 = size
    if not (math.isfinite(y) and math.isfinite(x) and 0 <= y < h0 and 0 <= x < w0):
        raise ParameterError(f"point={point!r} is outside image A: expected y in [0, {h0}), x in [0, {w0})")
    return y, x


def _top(sims: torch.Tensor, n: int, geometry: "Geometry") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vals, idx = torch.topk(sims, min(n, sims.numel()))
    idx_np = idx.cpu().numpy().astype(np.int64)
    pts = np.asarray(geometry.cell_centers(), dtype=np.float64)[idx_np]
    return pts, vals.double().cpu().numpy(), idx_np


def inspect_similarity_descriptors(da: "ImageDescriptors", db: "ImageDescriptors | None" = None,
                                   point: tuple[float, float] | None = None, *,
                                   top_n: int = 1, refine: bool = True) -> SimilarityResult:
    """Similarity of A's descriptor at ``point`` (or A's CLS when None) to A's and B's patches.

    Args:
        da: descriptors of image A (T_a x D); ``da.cls`` is needed for a CLS query (unbinned, so
            the patch descriptors must be unbinned too).
        db: descriptors of image B (T_b x D); None uses A itself.
        point: ``(y, x)`` in A's original pixels; None queries the CLS token.
        top_n: number of most similar patches reported per image (>= 1; capped at T).
        refine: True (default): the query is A's descriptor interpolated at the exact point and
            ``match_b`` is refined below the cell, as click-to-correspond answers
            (:func:`vitdense.apps.correspondences.match_points`); False: the query cell's descriptor and
            the best cell's centre (the paper's rule).
    """
    descs_a = check_descriptor_set(da, "da")[0]
    db = da if db is None else db
    descs_b = check_descriptor_set(db, "db")[0]
    if descs_a.shape[1] != descs_b.shape[1]:
        raise ParameterError(f"da and db differ in descriptor dimension: {descs_a.shape[1]} vs "
                             f"{descs_b.shape[1]} (extract both with the same layer/facet/bin)")
    top_n = check_int("top_n", top_n, 1)
    if point is None:
        if da.cls is None:
            raise ParameterError("point=None queries the CLS token: extract A with include_cls=True")
        if da.cls.reshape(-1).shape[0] != descs_a.shape[1]:
            raise ParameterError("point=None (CLS query) needs unbinned descriptors: the CLS "
                                 "descriptor is never binned (use bin=False)")
        yx, cell_point, qi = None, None, None
    else:
        yx = _check_point(point, tuple(da.geometry.orig_size))
        qi = int(da.geometry.pixel_to_cell(*yx))
        c = da.geometry.cell_to_pixel(qi)
        cell_point = (float(c[0]), float(c[1]))
    with torch.no_grad():
        a = l2_normalize(descs_a)
        b = a if db is da else l2_normalize(descs_b.to(a.device))
        match_b = None
        if qi is None:
            q = l2_normalize(da.cls.reshape(1, -1).to(a.device))[0]
            sb = b @ q
        else:
            q = (point_descriptors(a, da.geometry, np.array([yx]))[0] if refine else a[qi]).to(a.dtype)
            answers, sims, _ = match_points(a, da.geometry, b, db.geometry, [yx], refine)
            sb, match_b = sims[0].to(a.dtype), (float(answers[0, 0]), float(answers[0, 1]))
        sa = a @ q
        top_a = _top(sa, top_n, da.geometry)
        top_b = _top(sb, top_n, db.geometry)
    params = {**dict(getattr(da, "params", {}) or {}), "top_n": top_n, "refine": refine}
    return SimilarityResult(
        query_point=yx, query_cell_point=cell_point, query_index=qi, match_b=match_b,
        map_a=sa.reshape(tuple(da.grid)).float().cpu().numpy(),
        map_b=sb.reshape(tuple(db.grid)).float().cpu().numpy(),
        top_a_points=top_a[0], top_a_similarity=top_a[1], top_a_indices=top_a[2],
        top_b_points=top_b[0], top_b_similarity=top_b[1], top_b_indices=top_b[2],
        geometry_a=da.geometry, geometry_b=db.geometry, params=params)


def inspect_similarity(extractor: "Extractor", image_a: Any, image_b: Any = None,
                       point: tuple[float, float] | None = None, *, top_n: int = 1,
                       load_size: int | None = 224, layer: int = 11, facet: str | None = None,
                       bin: bool = False, hierarchy: int = 2,
                       stride: int | None = None, refine: bool = True) -> SimilarityResult:
    """Extract A (and B; None: A itself) and run :func:`inspect_similarity_descriptors`.

    ``stride=None`` / ``facet=None`` are the model's defaults (half the patch; key / token).
    A CLS query (``point=None``) needs ``bin=False``.
    """
    top_n = check_int("top_n", top_n, 1)
    if point is None and bin:
        raise ParameterError("point=None (CLS query) needs bin=False: the CLS descriptor is not binned")
    images = [image_a] if image_b is None else [image_a, image_b]
    ds = extractor.extract(images, layer=layer, facet=facet, stride=stride,
                           load_size=load_size, bin=bin, hierarchy=hierarchy,
                           include_cls=point is None)
    return inspect_similarity_descriptors(ds[0], ds[1] if len(ds) > 1 else None, point, top_n=top_n,
                                          refine=refine)

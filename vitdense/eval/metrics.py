"""Evaluation metrics for users' own data (the paper's Sec. 4 measures).

* Co-segmentation (binary masks): :func:`jaccard` (intersection over union of the foreground) and
  :func:`precision`, which in the co-segmentation literature the paper follows (Rubinstein et al.
  2013, and the paper's Table 1) is the fraction of correctly labelled pixels, foreground AND
  background, i.e. pixel accuracy (not the classification "precision" TP / (TP + FP)).
* Part co-segmentation: :func:`nmi` and :func:`ari` between predicted part labels and ground-truth
  part / keypoint labels, optionally ignoring background / unlabelled values.
* Correspondences: :func:`pck`, the Percentage of Correct Keypoints at ``alpha``.

Masks are accepted as bool arrays or numeric arrays (nonzero = foreground, so 0/1 and 0/255
masks both work). Every function takes one image's data; average over a data set yourself.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vitdense.errors import ParameterError, check_range

__all__ = ["jaccard", "precision", "pixel_accuracy", "nmi", "ari", "pck"]


def _masks(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ParameterError(f"pred and gt masks differ in shape: {p.shape} vs {g.shape}")
    if p.size == 0:
        raise ParameterError("pred and gt masks are empty")
    for name, m in (("pred", p), ("gt", g)):
        if m.dtype != bool and not np.issubdtype(m.dtype, np.number):
            raise ParameterError(f"{name} mask must be bool or numeric, got dtype {m.dtype}")
        if np.issubdtype(m.dtype, np.floating) and not np.isfinite(m).all():
            raise ParameterError(f"{name} mask contains NaN or inf")
    return p.astype(bool), g.astype(bool)


def jaccard(pred: Any, gt: Any) -> float:
    """Jaccard index ``|P & G| / |P | G|`` of two binary masks (same shape), in [0, 1].

    Two empty foregrounds count as a perfect match (1.0).
    """
    p, g = _masks(pred, gt)
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def precision(pred: Any, gt: Any) -> float:
    """Co-segmentation "precision": fraction of pixels whose fg/bg label is correct, in [0, 1].

    ``(TP + TN) / N`` over all N pixels (pixel accuracy), as in the co-segmentation benchmarks the
    paper reports on; not TP / (TP + FP).
    """
    p, g = _masks(pred, gt)
    return float(np.count_nonzero(p == g)) / p.size


pixel_accuracy = precision


def _labels(pred: Any, gt: Any, ignore: int | Sequence[int] | None,
            mask: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ParameterError(f"pred and gt label arrays differ in shape: {p.shape} vs {g.shape}")
    p, g = p.reshape(-1), g.reshape(-1)
    keep = np.ones(g.shape, dtype=bool)
    if ignore is not None:
        keep &= ~np.isin(g, np.atleast_1d(np.asarray(ignore)))
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != np.asarray(gt).shape:
            raise ParameterError(f"mask shape {m.shape} differs from the labels' {np.asarray(gt).shape}")
        keep &= m.reshape(-1)
    if not keep.any():
        raise ParameterError("no labelled element left to evaluate (check ignore / mask)")
    return p[keep], g[keep]


def nmi(pred: Any, gt: Any, ignore: int | Sequence[int] | None = None, mask: Any = None) -> float:
    """Normalised mutual information (arithmetic normalisation) between label arrays, in [0, 1].

    Args:
        pred: predicted part labels (any shape, e.g. an H x W part map, or labels sampled at
            keypoints); gt: ground-truth labels of the same shape.
        ignore: gt label value(s) to leave out (e.g. 0 for background, -1 for unlabelled).
        mask: optional bool array (same shape): evaluate only where True.
    """
    from sklearn.metrics import normalized_mutual_info_score
    p, g = _labels(pred, gt, ignore, mask)
    return float(normalized_mutual_info_score(g, p))


def ari(pred: Any, gt: Any, ignore: int | Sequence[int] | None = None, mask: Any = None) -> float:
    """Adjusted Rand index between label arrays (1 = identical partitions, ~0 = chance).

    Same arguments as :func:`nmi`.
    """
    from sklearn.metrics import adjusted_rand_score
    p, g = _labels(pred, gt, ignore, mask)
    return float(adjusted_rand_score(g, p))


def pck(pred_points: Any, gt_points: Any, alpha: float = 0.1, *, reference: str = "bbox",
        bbox: Sequence[float] | None = None, image_size: Sequence[int] | None = None) -> float:
    """Percentage of Correct Keypoints: fraction of points within ``alpha * L`` of the truth.

    Args:
        pred_points, gt_points: K x 2 ``(y, x)`` pixel coordinates; rows where gt is NaN are
            skipped (unlabelled keypoints).
        alpha: threshold factor, > 0.
        reference: ``"bbox"``: L = max side of ``bbox``; ``"image"``: L = max side of ``image_size``.
        bbox: ``(y0, x0, y1, x1)`` object bounding box (needed for ``reference="bbox"``).
        image_size: ``(H, W)`` (needed for ``reference="image"``).

    Returns:
        Fraction in [0, 1]; a point exactly at distance ``alpha * L`` counts as correct.
    """
    p = np.asarray(pred_points, dtype=np.float64)
    g = np.asarray(gt_points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape != g.shape:
        raise ParameterError(f"pred_points and gt_points must both be K x 2, got {p.shape} and {g.shape}")
    check_range("alpha", float(alpha), 0.0, None, low_inclusive=False)
    if reference == "bbox":
        if bbox is None or len(bbox) != 4:
            raise ParameterError("reference='bbox' needs bbox=(y0, x0, y1, x1)")
        y0, x0, y1, x1 = (float(v) for v in bbox)
        size = max(y1 - y0, x1 - x0)
    elif reference == "image":
        if image_size is None or len(image_size) != 2:
            raise ParameterError("reference='image' needs image_size=(H, W)")
        size = float(max(image_size))
    else:
        raise ParameterError(f"reference={reference!r} must be 'bbox' or 'image'")
    if not size > 0:
        raise ParameterError(f"the reference size must be positive, got {size}")
    valid = np.isfinite(g).all(axis=1)
    if not valid.any():
        raise ParameterError("no ground-truth point is labelled (all NaN)")
    dist = np.linalg.norm(p[valid] - g[valid], axis=1)      # NaN predictions count as wrong
    thr = alpha * size * (1 + 1e-12)                       # "exactly at" survives rounding
    return float(np.count_nonzero(dist <= thr)) / int(valid.sum())

"""Robust foreground votes of co-segmentation (beyond the paper's fixed-threshold rule).

The paper's rule (:func:`vitdense.apps.cosegmentation.cluster_votes`): image i votes for cluster c when
c's mean saliency in i exceeds one absolute ``thresh``; c is foreground when ``votes_percentage`` of
*all* images vote for it. On sets of different instances, scales and poses the clusters split by
instance and scale (a close-up's fur and a small running cheetah's fur are different clusters), so
no cluster is present in 75% of the images and whole sets come out empty. This module adds:

- ``presence`` votes: the percentage is taken over the images where the cluster is present (at
  least ``min_presence`` of their cells), and a cluster must be voted for in at least
  ``min_images`` images (so an object seen in one image only is never "common");
- ``relative`` thresholds: each image votes against its own saliency distribution (its Otsu
  threshold) instead of one absolute value;
- a per-image fallback: an image left with no foreground cell although its saliency shows a clear
  object gets the clusters salient in it, unless the set's own measure calls it an outlier (its
  salient descriptors are further from the set's foreground than any inlier's are).

Everything is vectorised over cells (one ``bincount`` per image) and works on the grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

#: vote modes: "absolute" (the paper's), "relative" (each image's Otsu threshold)
THRESH_MODES = ("absolute", "relative")
#: vote counts: "all" images (the paper's), or the images where the cluster is "present"
VOTE_MODES = ("all", "present")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape, in [0, 1]): maximises the between-class variance."""
    v = np.asarray(values, np.float64).ravel()
    hist, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    p = hist / max(hist.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    w1 = 1.0 - w0
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * w1, 1e-12)
    between[(w0 <= 0) | (w1 <= 0)] = -1.0
    if between.max() <= 0:  # one value (or one bin): nothing to split, nothing lies above
        return float(v.max()) if v.size else 1.0
    best = np.flatnonzero(between >= between.max() - 1e-12)  # empty bins make a plateau: take its middle
    return float(edges[int(round(best.mean())) + 1])


def cluster_stats(labels: Sequence[np.ndarray], saliency: Sequence[np.ndarray], k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per image and cluster: the share of the image's cells (N x k) and their mean saliency (N x k)."""
    share = np.zeros((len(labels), k))
    mean = np.zeros((len(labels), k))
    for i, (lab, sal) in enumerate(zip(labels, saliency)):  # one bincount per image
        lab = np.asarray(lab).ravel()
        counts = np.bincount(lab, minlength=k)[:k]
        sums = np.bincount(lab, weights=np.asarray(sal, np.float64).ravel(), minlength=k)[:k]
        share[i] = counts / max(lab.size, 1)
        mean[i] = np.divide(sums, counts, out=np.zeros(k), where=counts > 0)
    return share, mean


def image_thresholds(saliency: Sequence[np.ndarray], thresh: float, mode: str) -> np.ndarray:
    """N vote thresholds: ``thresh`` for every image ("absolute"), or each image's Otsu threshold of
    its saliency, never below ``thresh`` ("relative")."""
    if mode == "absolute":
        return np.full(len(saliency), float(thresh))
    return np.array([max(float(thresh), otsu_threshold(s)) for s in saliency])


@dataclass
class Votes:
    """Votes of a set: ``votes`` (k ints), ``needed`` (k ints: votes each cluster needs),
    ``salient`` (sorted foreground cluster ids), ``voted`` (N x k bool), ``present`` (N x k bool)."""
    votes: np.ndarray
    needed: np.ndarray
    salient: np.ndarray
    voted: np.ndarray
    present: np.ndarray


def count_votes(labels: Sequence[np.ndarray], saliency: Sequence[np.ndarray], k: int, *, thresh: float,
                votes_percentage: float, thresh_mode: str = "absolute", vote_mode: str = "all",
                min_presence: float = 0.01, min_images: int = 2) -> Votes:
    """Foreground clusters by saliency votes of the images ``labels`` / ``saliency`` (h x w each).

    ``vote_mode="all"`` with ``thresh_mode="absolute"`` is the paper's rule exactly (a cluster absent
    from an image gets no vote from it; ``ceil(votes_percentage% of N)`` votes needed).
    """
    share, mean = cluster_stats(labels, saliency, k)
    n = len(labels)
    thr = image_thresholds(saliency, thresh, thresh_mode)
    voted = (share > 0) & (mean > thr[:, None])
    if vote_mode == "all":
        present = share > 0
        needed = np.full(k, _needed(n, votes_percentage))
    else:
        present = share >= min_presence
        voted &= present
        needed = np.array([max(_needed(int(c), votes_percentage), min(int(min_images), n))
                           for c in present.sum(0)])
    votes = voted.sum(0)
    salient = np.flatnonzero((votes >= needed) & (votes > 0)).astype(np.int64)
    return Votes(votes.astype(np.int64), needed.astype(np.int64), salient, voted, present)


def _needed(num: int, votes_percentage: float) -> int:
    return int(math.ceil(num * float(votes_percentage) / 100.0 - 1e-9))


def fallback_cells(normed: Sequence[torch.Tensor], labels: Sequence[np.ndarray], saliency: Sequence[np.ndarray],
                   fg_cells: Sequence[np.ndarray], k: int, *, thresh: float, contrast: float = 3.0,
                   outlier_margin: float = 0.1) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per-image fallback against empty masks.

    normed: per image T x D L2-normalised descriptors; labels: T cluster ids; saliency: T values;
    fg_cells: T bool foreground cells from the set's votes. An image with no foreground cell gets
    the cells of its clusters whose mean saliency exceeds its Otsu threshold (and ``thresh``), when
    (a) its saliency shows a clear object: mean saliency above the Otsu threshold at least
    ``contrast`` x the mean below, and (b) it is not an outlier by the set's measure: the cosine
    similarity of its salient cells' mean descriptor to the set's foreground mean descriptor is at
    least the lowest such similarity among the images that have foreground, minus ``outlier_margin``.
    Returns (new T bool cells per image, N bool "fallback applied", N float similarities (NaN where
    not computed)).
    """
    n = len(normed)
    out = [np.asarray(f, bool).copy() for f in fg_cells]
    applied = np.zeros(n, bool)
    sims = np.full(n, np.nan)
    have = [i for i in range(n) if out[i].any()]
    if not have or len(have) == n:
        return out, applied, sims
    fg_mean = torch.cat([normed[i][torch.from_numpy(out[i]).to(normed[i].device)] for i in have]).mean(0)
    fg_mean = fg_mean / fg_mean.norm().clamp_min(1e-12)

    def sim(i: int, cells: np.ndarray) -> float:
        m = normed[i][torch.from_numpy(cells).to(normed[i].device)].mean(0)
        return float(m @ fg_mean / m.norm().clamp_min(1e-12))

    for i in have:
        sims[i] = sim(i, out[i])
    floor = float(np.nanmin(sims)) - float(outlier_margin)
    for i in range(n):
        if out[i].any():
            continue
        s = np.asarray(saliency[i], np.float64).ravel()
        t = max(float(thresh), otsu_threshold(s))
        above, below = s[s > t], s[s <= t]
        if above.size == 0 or below.size == 0 or above.mean() < contrast * max(below.mean(), 1e-6):
            continue
        share, mean = cluster_stats([labels[i]], [s], k)
        cand = np.isin(np.asarray(labels[i]).ravel(), np.flatnonzero((share[0] > 0) & (mean[0] > t)))
        if not cand.any():
            continue
        sims[i] = sim(i, cand)
        if sims[i] >= floor:
            out[i] = cand
            applied[i] = True
    return out, applied, sims

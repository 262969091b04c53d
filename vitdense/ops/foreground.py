"""The foreground pipeline shared by co-segmentation, part co-segmentation and video parts.

Saliency maps that vote, the stage-1 clustering of a set into clusters with their saliency votes
(foreground = clusters enough images find salient), and the part unaries (distances of descriptors
to part centroids and to the nearest background centroid). Public, so that
:mod:`vitdense.apps.cosegmentation`, :mod:`vitdense.apps.parts` and :mod:`vitdense.apps.video`
build on one implementation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitdense.errors import ParameterError
from vitdense.ops.clustering import (ElbowResult, elbow_kmeans, row_norms, sample_rows, small_work_threads,
                                     squared_distances)
from vitdense.ops.host import to_host
from vitdense.ops.voting import count_votes, fallback_cells

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = ["FAR", "ForegroundClusters", "cluster_votes", "extract_with_saliency", "foreground_clusters",
           "part_unaries", "saliency_maps", "votes_needed"]

#: squared distance used for "background" when every stage-1 cluster is foreground (unit vectors: max 4)
FAR = 4.0


def saliency_maps(descs: Sequence["ImageDescriptors"],
                   saliency: Sequence[np.ndarray | torch.Tensor] | None) -> list[np.ndarray]:
    """Per image h x w float32 saliency (given, or ``descs[i].saliency``), resized to the grid."""
    if saliency is not None and len(saliency) != len(descs):
        raise ParameterError(f"saliency has {len(saliency)} maps for {len(descs)} images: give one per image")
    maps = [d.saliency if saliency is None else saliency[i] for i, d in enumerate(descs)]
    for i, s in enumerate(maps):
        if s is None:
            raise ParameterError(f"image {i} has no saliency map: extract with saliency=True or pass saliency=")
    out = []
    for i, (d, t) in enumerate(zip(descs, to_host(maps))):
        t = t.float()
        if t.ndim == 1 and t.numel() == d.grid[0] * d.grid[1]:
            t = t.reshape(d.grid)
        if t.ndim != 2:
            raise ParameterError(f"saliency[{i}] has shape {tuple(t.shape)}: expected an h x w map")
        if tuple(t.shape) != tuple(d.grid):
            t = F.interpolate(t[None, None], size=tuple(d.grid), mode="nearest-exact")[0, 0]
        out.append(t.numpy().astype(np.float32))
    return out


def votes_needed(num_voters: int, votes_percentage: float) -> int:
    """``ceil(num_voters * votes_percentage / 100)`` (robust to float round-off)."""
    return int(math.ceil(num_voters * float(votes_percentage) / 100.0 - 1e-9))


def cluster_votes(labels: Sequence[np.ndarray], saliency: Sequence[np.ndarray], k: int,
                  thresh: float) -> np.ndarray:
    """Votes per cluster: image i votes for cluster c when the mean saliency of its cells labelled c
    exceeds ``thresh`` (clusters absent from the image get no vote). Returns k ints."""
    votes = np.zeros(k, np.int64)
    for lab, sal in zip(labels, saliency):  # one bincount per image, vectorised over cells
        lab = np.asarray(lab).ravel()
        counts = np.bincount(lab, minlength=k)
        sums = np.bincount(lab, weights=np.asarray(sal, np.float64).ravel(), minlength=k)
        mean = np.divide(sums, counts, out=np.zeros(k), where=counts > 0)
        votes += (counts > 0) & (mean > thresh)
    return votes


@dataclass
class ForegroundClusters:
    """Stage 1: the elbow clustering of a set and its saliency votes."""
    elbow: ElbowResult
    labels: list[np.ndarray]      # per clustered image, T int64
    votes: np.ndarray
    votes_needed: int
    salient: np.ndarray
    fg_cells: list[np.ndarray] = field(default_factory=list)  # per clustered image, T bool foreground cells
    fallback: np.ndarray | None = None                          # per voter: the per-image fallback applied


def foreground_clusters(normed: Sequence[torch.Tensor], saliency: Sequence[np.ndarray], num_voters: int, *,
                        elbow: float, thresh: float, votes_percentage: float, sample_interval: int,
                        max_clusters: int, n_init: int, max_iter: int, seed: int, thresh_mode: str = "absolute",
                        vote_mode: str = "all", fallback: bool = False) -> ForegroundClusters:
    """Elbow k-means of all images' L2-normalised descriptors (``T_i x D`` each) and saliency votes.

    Only the first ``num_voters`` images vote (the rest, e.g. crop augmentations, are clustered only).
    ``thresh_mode`` / ``vote_mode`` / ``fallback``: see :mod:`vitdense.ops.voting` (the defaults are the
    paper's rule).
    """
    full = torch.cat(list(normed), dim=0)
    train = sample_rows(list(normed), sample_interval)
    el = elbow_kmeans(train, full, elbow=elbow, max_clusters=max_clusters, n_init=n_init, max_iter=max_iter,
                      seed=seed)
    sizes = [int(t.shape[0]) for t in normed]
    labels = [x.numpy() for x in to_host(list(torch.split(el.labels, sizes)))]
    voters = [s.ravel() for s in saliency[:num_voters]]
    v = count_votes(labels[:num_voters], voters, el.k, thresh=thresh, votes_percentage=votes_percentage,
                    thresh_mode=thresh_mode, vote_mode=vote_mode)
    fg = [np.isin(lab, v.salient) for lab in labels]
    applied = None
    if fallback:
        fg[:num_voters], applied, _ = fallback_cells(normed[:num_voters], labels[:num_voters], voters,
                                                     fg[:num_voters], el.k, thresh=thresh)
    need = int(v.needed.min()) if v.needed.size else votes_needed(num_voters, votes_percentage)
    return ForegroundClusters(el, labels, v.votes, need, v.salient, fg, applied)


def extract_with_saliency(extractor: "Extractor", images: Sequence[Image.Image], *, load_size: int | None,
                          layer: int | Sequence[int], facet: str, bin: bool, stride: int | None, include_cls: bool,
                          low_res_saliency_maps: bool, batch_size: int = 8
                          ) -> tuple[list["ImageDescriptors"], list[np.ndarray]]:
    """Descriptors plus the saliency maps that vote, as the official code computes them.

    ``low_res_saliency_maps``: saliency from a second pass at stride = patch size and half the load
    size (the official low-resolution maps), resized to the descriptor grid with nearest neighbour;
    otherwise the saliency of the descriptor pass itself. Returns (descs, h x w saliency maps).
    """
    descs = extractor.extract(images, layer=layer, facet=facet, stride=stride, load_size=load_size, bin=bin,
                              include_cls=include_cls, saliency=not low_res_saliency_maps,
                              batch_size=batch_size)
    if low_res_saliency_maps:
        low = None if load_size is None else max(extractor.spec.patch_size, int(load_size) // 2)
        sal_descs = extractor.extract(images, layer=extractor.spec.depth - 1, facet="key",
                                      stride=extractor.spec.patch_size, load_size=low, saliency=True,
                                      batch_size=batch_size)
        sal = [s.saliency for s in sal_descs]
    else:
        sal = [d.saliency for d in descs]
    return descs, saliency_maps(descs, sal)


def part_unaries(x: torch.Tensor, parts: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """T x (1 + K) squared distances of the rows of ``x`` to [nearest background centroid, parts]
    (on ``x``'s device; ``FAR`` for background when there is no background centroid)."""
    with small_work_threads(x):
        x_sq = row_norms(x)
        d_parts = squared_distances(x, parts, x_sq)
        if background.shape[0] == 0:
            d_bg = torch.full((x.shape[0], 1), FAR, dtype=x.dtype, device=x.device)
        else:
            d_bg = squared_distances(x, background, x_sq).min(dim=1, keepdim=True).values
    return torch.cat([d_bg, d_parts], dim=1)

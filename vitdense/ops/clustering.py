"""Seeded, vectorised k-means and the elbow rule of the paper's co-segmentation.

Everything works on ``torch`` float32 tensors of row vectors (``N x D``) and is deterministic for
a given ``seed``. The official code uses ``faiss.Kmeans(niter=300, nredo=10)``; here each restart is
k-means++ seeded Lloyd iterations stopped at convergence (assignments unchanged), the best of
``n_init`` restarts (lowest training inertia) is kept. Distances are computed in chunks, so no
``N x N`` matrix is ever built (only ``chunk x k``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from vitdense.errors import ParameterError, check_range
from vitdense.stops import stop_point

DEFAULT_CHUNK = 32768  # rows per distance block in :func:`assign` (chunk x k floats)
#: k-means of at most this many values (N x D) on an accelerator runs on the CPU: its restarts and
#: Lloyd iterations are thousands of launch-bound ops, each ending in a host sync on a GPU (the
#: 10-image co-segmentation's "other" time on an H200, README "GPU"); the result is moved back
SMALL_ON_HOST = 2_000_000


def _as_tensor(x: torch.Tensor | np.ndarray, name: str = "x") -> torch.Tensor:
    """``N x D`` array/tensor -> contiguous float32 CPU-or-same-device tensor."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ParameterError(f"{name} has shape {tuple(t.shape)}: expected a 2-D N x D array")
    return t.to(torch.float32).contiguous()


@contextlib.contextmanager
def small_work_threads(x: torch.Tensor, max_elements: int = 4_000_000) -> Iterator[None]:
    """Run torch CPU ops on one thread while working on a small ``x`` (restored afterwards).

    Lloyd iterations on a few hundred rows are thousands of tiny ops; on a loaded machine every
    multi-threaded op waits for a descheduled worker, which made them ~100x slower than on one thread
    (measured: 3 s vs 0.03 s for an elbow sweep of 130 x 384 points on 2 busy cores). The thread
    count is process-wide, so a concurrent torch call elsewhere runs on one thread meanwhile.
    """
    if x.device.type != "cpu" or x.numel() > max_elements or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def l2_normalize(x: torch.Tensor | np.ndarray, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` (``N x D``) scaled to unit L2 norm (zero rows stay zero), float32."""
    t = _as_tensor(x)
    return t / t.norm(dim=1, keepdim=True).clamp_min(eps)


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """``N x 1`` squared L2 norms of the rows of ``x`` (N x D), as :func:`squared_distances` needs them."""
    return (x * x).sum(1, keepdim=True)


def squared_distances(x: torch.Tensor, centroids: torch.Tensor,
                      x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``N x k`` squared Euclidean distances between rows of ``x`` (N x D) and ``centroids`` (k x D).

    ``x_sq``: :func:`row_norms` of ``x`` when the caller has them (repeated calls on one ``x``);
    the only N x D work left is then the product. The product is doubled after the GEMM (N x k,
    exact in floating point), not ``x`` before it (an N x D copy).
    """
    x_sq = row_norms(x) if x_sq is None else x_sq
    d = x_sq - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(1)[None, :]
    return d.clamp_min_(0.0)


def assign(x: torch.Tensor | np.ndarray, centroids: torch.Tensor | np.ndarray,
           chunk: int = DEFAULT_CHUNK, x_sq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row.

    ``x``: N x D, ``centroids``: k x D. Returns ``(labels, sqdist)``: N int64 labels in [0, k) and
    N float32 squared distances to that centroid. Processed in blocks of ``chunk`` rows.
    ``x_sq``: ``row_norms(x)`` (N x 1) when the caller assigns the same ``x`` repeatedly.
    """
    x = _as_tensor(x, "x")
    c = _as_tensor(centroids, "centroids").to(x.device)
    if x.shape[1] != c.shape[1]:
        raise ParameterError(f"x has D={x.shape[1]} but centroids have D={c.shape[1]}: they must match")
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dists = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], chunk):
        rows = slice(start, start + chunk)
        d, i = squared_distances(x[rows], c, None if x_sq is None else x_sq[rows]).min(dim=1)
        labels[rows] = i
        dists[rows] = d
    return labels, dists


@dataclass
class KMeansResult:
    """Output of :func:`kmeans`.

    centroids: k x D float32 (means of their members; not re-normalised).
    labels: N int64 training-set assignments. inertia: sum of squared distances of the training
    rows to their centroid. n_iter: Lloyd iterations of the kept restart.
    """
    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int


def _kmeanspp(x: torch.Tensor, x_sq: torch.Tensor, k: int, gen: torch.Generator,
              local_trials: int = 1) -> torch.Tensor:
    """k-means++ seeding: k x D initial centroids chosen among the rows of ``x``.

    ``local_trials > 1`` is greedy k-means++ (as scikit-learn): each step draws that many
    candidates and keeps the one that lowers the potential most. ``x_sq``: ``row_norms(x)``.
    """
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [x[first]]
    closest = squared_distances(x, x[first:first + 1], x_sq)[:, 0]
    for _ in range(1, k):  # k <= a few tens: a loop over centroids, not over points
        stop_point()
        total = float(closest.sum())
        if total <= 0.0:  # all points coincide with chosen centres: pick uniformly
            idx = int(torch.randint(n, (1,), generator=gen))
            new = squared_distances(x, x[idx:idx + 1], x_sq)[:, 0]
        else:
            probs = closest.cpu() / total
            cand = (torch.multinomial(probs, 1, generator=gen) if local_trials == 1 else  # as before
                    torch.multinomial(probs, local_trials, replacement=True, generator=gen)).to(x.device)
            trial = torch.minimum(closest[None], squared_distances(x, x[cand], x_sq).T)  # trials x n
            best = int(trial.sum(dim=1).argmin())
            idx, new = int(cand[best]), trial[best]
        centers.append(x[idx])
        closest = torch.minimum(closest, new)
    return torch.stack(centers)


def _lloyd(x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor,
           max_iter: int) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Lloyd iterations until assignments stop changing (or ``max_iter``); ``x_sq``: ``row_norms(x)``."""
    k = centroids.shape[0]
    labels = None
    it = 0
    for it in range(1, max_iter + 1):
        stop_point()
        new_labels, d = assign(x, centroids, x_sq=x_sq)
        if labels is not None and torch.equal(new_labels, labels):
            return centroids, new_labels, float(d.sum()), it  # converged: this assignment is final
        labels = new_labels
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        empty = counts == 0
        centroids = sums / counts.clamp_min(1.0)[:, None]
        if bool(empty.any()):  # re-seed empty clusters with the worst-fitted points (deterministic)
            far = torch.argsort(d, descending=True)[: int(empty.sum())]
            centroids[empty] = x[far]
    labels, d = assign(x, centroids, x_sq=x_sq)  # max_iter reached: assign to the last update
    return centroids, labels, float(d.sum()), it


def kmeans(x: torch.Tensor | np.ndarray, k: int, *, n_init: int = 10, max_iter: int = 300,
           seed: int = 0, local_trials: int = 1) -> KMeansResult:
    """k-means of the rows of ``x`` (N x D) into ``k`` clusters; best of ``n_init`` seeded restarts.

    ``local_trials``: candidates per k-means++ step (1: plain k-means++; more: greedy).

    A small ``x`` on an accelerator is clustered on the CPU (:data:`SMALL_ON_HOST`): the same
    result as on the CPU, without a host sync per iteration.

    Raises :class:`ParameterError` when ``k`` is not in ``[1, N]``.
    """
    x = _as_tensor(x, "x")
    n = x.shape[0]
    if not isinstance(k, (int, np.integer)) or k < 1 or k > n:
        raise ParameterError(f"k={k!r} is out of range: expected an integer in [1, {n}] (the number of points)")
    if int(n_init) < 1:
        raise ParameterError(f"n_init={n_init!r} is out of range: expected an integer >= 1")
    if int(max_iter) < 1:
        raise ParameterError(f"max_iter={max_iter!r} is out of range: expected an integer >= 1")
    if x.device.type != "cpu" and x.numel() <= SMALL_ON_HOST:
        r = kmeans(x.cpu(), k, n_init=n_init, max_iter=max_iter, seed=seed, local_trials=local_trials)
        return KMeansResult(r.centroids.to(x.device), r.labels.to(x.device), r.inertia, r.n_iter)
    gen = torch.Generator().manual_seed(int(seed))
    best: KMeansResult | None = None
    restarts = 1 if k == 1 else int(n_init)  # k = 1 has a unique solution (the mean)
    with small_work_threads(x):
        x_sq = row_norms(x)
        for _ in range(restarts):
            init = _kmeanspp(x, x_sq, int(k), gen, int(local_trials))
            c, lab, inertia, it = _lloyd(x, x_sq, init, int(max_iter))
            if best is None or inertia < best.inertia - 1e-9:
                best = KMeansResult(c, lab, inertia, it)
    assert best is not None
    return best


@dataclass
class ElbowResult:
    """Output of :func:`elbow_kmeans`.

    k: the chosen number of clusters. centroids: k x D. labels: N_all int64 assignments of the
    *full* set. sqdist: N_all squared distances to the assigned centroid. objectives: mean squared
    distance of the full set for every k tried (``objectives[i]`` is for k = i + 1).
    """
    k: int
    centroids: torch.Tensor
    labels: torch.Tensor
    sqdist: torch.Tensor
    objectives: list[float] = field(default_factory=list)


def elbow_kmeans(train: torch.Tensor | np.ndarray, full: torch.Tensor | np.ndarray, *, elbow: float = 0.975,
                 max_clusters: int = 14, n_init: int = 10, max_iter: int = 300, seed: int = 0) -> ElbowResult:
    """The official elbow loop: k = 1, 2, ... ``max_clusters`` trained on ``train`` (n x D).

    After each k the mean squared distance of every row of ``full`` (N x D) to its nearest centroid
    is computed; the loop stops at the first k whose value exceeds ``elbow`` x that of k - 1, and,
    exactly like the official code, *that* k (the first one that did not pay off) is returned. k never
    exceeds the number of training rows.
    """
    check_range("elbow", elbow, 0.0, 1.0, low_inclusive=False)
    if int(max_clusters) < 1:
        raise ParameterError(f"max_clusters={max_clusters!r} is out of range: expected an integer >= 1")
    train = _as_tensor(train, "train")
    full = _as_tensor(full, "full")
    if train.shape[0] < 1:
        raise ParameterError("train has no rows: at least one descriptor is needed to cluster")
    k_max = min(int(max_clusters), train.shape[0])
    objectives: list[float] = []
    result: ElbowResult | None = None
    with small_work_threads(full, max_elements=16_000_000):
        full_sq = row_norms(full)
        for k in range(1, k_max + 1):
            km = kmeans(train, k, n_init=n_init, max_iter=max_iter, seed=seed + k)
            labels, d = assign(full, km.centroids, x_sq=full_sq)
            objectives.append(float(d.mean()))
            result = ElbowResult(k, km.centroids, labels, d, objectives)
            if len(objectives) > 1 and (objectives[-1] > elbow * objectives[-2] or objectives[-2] <= 1e-12):
                break
    assert result is not None
    result.objectives = list(objectives)
    return result


def sample_rows(blocks: list[torch.Tensor], interval: int) -> torch.Tensor:
    """Every ``interval``-th row (starting at row 0) of each ``T_i x D`` block, concatenated."""
    if int(interval) < 1:
        raise ParameterError(f"sample_interval={interval!r} is out of range: expected an integer >= 1")
    return torch.cat([b[:: int(interval)] for b in blocks], dim=0)


def relabel_by_size(labels: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """Permutation ``perm`` (k ints) such that ``perm[old]`` is the rank of cluster ``old`` by size
    (0 = largest; ties broken by the old id), so labels can be made order-independent."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=k)[:k]
    order = np.lexsort((np.arange(k), -counts))  # largest first, then lower id
    perm = np.empty(k, dtype=np.int64)
    perm[order] = np.arange(k)
    return perm


def sample_rows_balanced(blocks: list[torch.Tensor], interval: int) -> torch.Tensor:
    """As many rows from every non-empty ``T_i x D`` block: ``m = ceil(sum_i ceil(T_i / interval) / n)``
    evenly spaced rows each (repeated when a block has fewer), concatenated (n * m x D).

    Gives every image the same weight in k-means whatever its object's size on the grid: a whole
    animal small in the frame counts as much as a close-up of its head.
    """
    if int(interval) < 1:
        raise ParameterError(f"sample_interval={interval!r} is out of range: expected an integer >= 1")
    blocks = [b for b in blocks if b.shape[0] > 0]
    if not blocks:
        raise ParameterError("no rows to sample: every block is empty")
    m = max(1, -(-sum(-(-b.shape[0] // int(interval)) for b in blocks) // len(blocks)))
    picks = [b[torch.linspace(0, b.shape[0] - 1, m, device=b.device).round().long()] for b in blocks]
    return torch.cat(picks, dim=0)

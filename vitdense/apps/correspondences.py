"""Point correspondences between two images from best buddies of ViT descriptors.

Follows the official ``correspondences.py`` (``find_correspondences``) of Amir et al. 2021:

1. binned descriptors of layer 9 (log-binning, hierarchy 2) of both images; the facet is the
   model's default (``facet=None``: the paper's ``key`` for DINO v1, ``token`` for DINOv2, whose
   keys mostly encode position). Binning stays on by default: on the bundled DINOv2 it raises
   the PCK@0.02 of all best buddies on scikit-image's ``stereo_motorcycle`` pair from 0.83 to
   0.89 (token facet, load 224, stride 7);
2. *best buddies*: mutual nearest neighbours under cosine similarity, found in row chunks with a
   running column-wise maximum (the ``T1 x T2`` similarity matrix is never held at once);
3. keep pairs whose patches are foreground in both images (saliency ``> thresh``). The official
   code tests image 2's foreground through a scatter of ``nn21`` over image 2's foreground patches
   (a quirk: it also keeps a pair whose image-2 patch is background when some other foreground
   patch of image 2 has the same nearest neighbour); here the test is the direct one:
   ``fg1[i] and fg2[nn12[i]]``;
4. k-means (``num_pairs`` clusters, seeded) on the L2-normalised concatenation
   ``[desc1_i, desc2_nn(i)]`` of each pair; in every cluster the pair of highest mean saliency wins.
   The official code uses scikit-learn's ``KMeans(random_state=0)``; here the project's torch
   k-means (:func:`vitdense.ops.clustering.kmeans`, k-means++ then Lloyd) runs on the descriptors'
   device, so on a GPU nothing but the K chosen indices comes back (same selection quality:
   ``bench/bench_selection.py``).

Points are returned in ORIGINAL-image pixel coordinates ``(y, x)`` (patch centres
``i * stride + patch // 2`` in the resized image, mapped back through :class:`Geometry`).

:class:`PointMatcher` answers click-to-correspond queries on cached descriptors.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from vitdense.errors import ParameterError, check_int, check_range
from vitdense.features.descriptors import check_descriptor_set
from vitdense.ops.clustering import kmeans, l2_normalize, small_work_threads
from vitdense.stops import stop_point

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = [
    "Correspondences", "PointMatch", "PointMatcher", "best_buddies", "extract_pair",
    "find_correspondences", "find_correspondences_descriptors", "match_points",
    "REFINE_RADIUS", "REFINE_TEMPERATURE",
]

# Sub-cell refinement of a match: soft-argmax of the similarity map over the
# (2 * REFINE_RADIUS + 1)^2 cells around the best one, softmax temperature REFINE_TEMPERATURE
# (cosine units). Radius 2 cells at the default stride (half the patch) spans one patch on each
# side: the window matched to the patch size (study half of bench/data/semantic_kp and warped
# pairs, README "Correspondence defaults"; radius 1 before).
REFINE_RADIUS = 2
REFINE_TEMPERATURE = 0.02

# Similarity entries per chunk when ``chunk=None`` (16 M float32 = 64 MB).
_CHUNK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- result dataclasses
@dataclass
class Correspondences:
    """K corresponding point pairs between image 1 and image 2 (K <= ``num_pairs``).

    All points are ``(y, x)`` float pixel coordinates in the ORIGINAL images (centres of the
    matched descriptor cells); row ``k`` of ``points1`` corresponds to row ``k`` of ``points2``.
    Pairs are sorted by decreasing ``saliency`` (the ranking used to pick them).

    Attributes:
        points1: K x 2 float64, ``(y, x)`` in image 1's original pixels.
        points2: K x 2 float64, ``(y, x)`` in image 2's original pixels.
        similarity: K float64, cosine similarity of the two descriptors of each pair, in [-1, 1].
        saliency: K float64, mean of the two patches' saliency values, in [0, 1] (NaN when the
            descriptors carry no saliency map and ``thresh`` is None).
        indices1: K int64, flat (row-major) cell indices into image 1's descriptor grid.
        indices2: K int64, flat cell indices into image 2's grid.
        num_best_buddies: number of best-buddy pairs that passed the foreground filter (the
            candidates clustered by k-means).
        num_mutual: number of best-buddy pairs before the foreground filter.
        grid1, grid2: ``(h, w)`` descriptor grids; size1, size2: ``(H0, W0)`` original sizes.
        reason: None when K > 0, else a one-line explanation of the empty result.
        params: every parameter that produced the result (extraction and matching).
    """

    points1: np.ndarray
    points2: np.ndarray
    similarity: np.ndarray
    saliency: np.ndarray
    indices1: np.ndarray
    indices2: np.ndarray
    num_best_buddies: int
    num_mutual: int
    grid1: tuple[int, int]
    grid2: tuple[int, int]
    size1: tuple[int, int]
    size2: tuple[int, int]
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.points1.shape[0])

    @property
    def empty(self) -> bool:
        return len(self) == 0


@dataclass
class PointMatch:
    """Answer of :meth:`PointMatcher.query`: where a clicked pixel of the source image matches.

    "source" is the clicked image (image 1, or image 2 when ``reverse=True``), "target" the other.

    Attributes:
        query: ``(y, x)`` the clicked pixel, as given (source original pixels).
        source_point: ``(y, x)`` centre of the source cell nearest to the click (original pixels).
        point: ``(y, x)`` centre of the best-matching target cell (target original pixels).
        source_index, target_index: flat cell indices into the source / target grids.
        similarity: cosine similarity of the two cells' descriptors, in [-1, 1].
        is_best_buddy: True when the match is mutual (the target cell's nearest neighbour in the
            source image is the clicked cell).
        similarity_map: h x w float32, cosine similarity of the clicked cell to every target cell.
        target_geometry: the target image's :class:`Geometry` (grid <-> original pixels).
        reverse: True when the click was in image 2.
        cell_point: ``(y, x)`` centre of the best target cell; ``point`` differs from it when the
            answer is refined to sub-cell precision (see :func:`match_points`).
    """

    query: tuple[float, float]
    source_point: tuple[float, float]
    point: tuple[float, float]
    source_index: int
    target_index: int
    similarity: float
    is_best_buddy: bool
    similarity_map: np.ndarray
    target_geometry: "Geometry"
    reverse: bool = False
    cell_point: tuple[float, float] | None = None

    def upsampled_map(self, mode: str = "bilinear") -> np.ndarray:
        """``similarity_map`` resized to the target's original size: H0 x W0 float32."""
        return np.asarray(self.target_geometry.upsample(self.similarity_map, mode=mode),
                          dtype=np.float32)


# --------------------------------------------------------------------------- validation helpers

def _resolve_chunk(chunk: int | None, t2: int) -> int:
    if chunk is None:
        return max(1, _CHUNK_ELEMENTS // max(t2, 1))
    return check_int("chunk", chunk, 1)


def _check_knobs(num_pairs: Any, thresh: Any, chunk: Any, n_init: Any) -> int:
    """Validate the matching knobs up front; returns ``num_pairs`` as an int."""
    num_pairs = check_int("num_pairs", num_pairs, 1)
    if thresh is not None:
        if isinstance(thresh, bool) or not isinstance(thresh, (int, float, np.integer, np.floating)):
            raise ParameterError(f"thresh={thresh!r} must be a number in [0, 1] or None")
        check_range("thresh", float(thresh), 0.0, 1.0)
    if chunk is not None:
        check_int("chunk", chunk, 1)
    if not (n_init == "auto" or (isinstance(n_init, (int, np.integer)) and not isinstance(n_init, bool)
                                 and n_init >= 1)):
        raise ParameterError(f"n_init={n_init!r} must be 'auto' or an integer >= 1")
    return num_pairs


# --------------------------------------------------------------------------- point matching
def point_descriptors(unit: torch.Tensor, geometry: "Geometry", points: np.ndarray) -> torch.Tensor:
    """Descriptors at fractional positions: ``points`` K x 2 (y, x) original pixels -> K x D
    (bilinear over the four surrounding cells of the ``T x D`` grid ``unit``, re-normalised)."""
    h, w = geometry.grid
    gy, gx = geometry._grid_coords(points[:, 0], points[:, 1])
    gy = torch.from_numpy(np.clip(gy, 0, h - 1)).float().to(unit.device)
    gx = torch.from_numpy(np.clip(gx, 0, w - 1)).float().to(unit.device)
    y0, x0 = gy.floor().long().clamp(max=h - 1), gx.floor().long().clamp(max=w - 1)
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    fy, fx = (gy - y0)[:, None], (gx - x0)[:, None]
    out = (unit[y0 * w + x0] * (1 - fy) * (1 - fx) + unit[y0 * w + x1] * (1 - fy) * fx
           + unit[y1 * w + x0] * fy * (1 - fx) + unit[y1 * w + x1] * fy * fx)
    return l2_normalize(out)


def _soft_argmax(sims: torch.Tensor, best: torch.Tensor, grid: tuple[int, int], radius: int,
                 temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Fractional grid coordinates (K each) of the soft-argmax of ``sims`` (K x T) over the
    window of ``radius`` cells around ``best`` (K flat indices); cells off the grid are left out."""
    h, w = grid
    by, bx = best // w, best % w
    off = torch.arange(-radius, radius + 1, device=sims.device)
    ny = by[:, None, None] + off[None, :, None]                       # K x n x 1
    nx = bx[:, None, None] + off[None, None, :]                       # K x 1 x n
    valid = ((ny >= 0) & (ny < h)) & ((nx >= 0) & (nx < w))           # K x n x n
    idx = (ny.clamp(0, h - 1) * w + nx.clamp(0, w - 1)).reshape(len(best), -1)
    vals = sims.gather(1, idx).reshape(valid.shape)
    wgt = torch.softmax(torch.where(valid, vals / temperature, -torch.inf).reshape(len(best), -1), dim=1)
    wgt = wgt.reshape(valid.shape)
    fy = (wgt * ny.float()).sum(dim=(1, 2))
    fx = (wgt * nx.float()).sum(dim=(1, 2))
    return fy.cpu().numpy(), fx.cpu().numpy()


def match_points(source_unit: torch.Tensor, source_geometry: "Geometry", target_unit: torch.Tensor,
                 target_geometry: "Geometry", points: Any, refine: bool = True
                 ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Where ``points`` of the source image land in the target: the click-to-correspond rule.

    Args:
        source_unit: T1 x D L2-normalised source descriptors; target_unit: T2 x D, target.
        source_geometry, target_geometry: their grids' Geometry.
        points: K x 2 ``(y, x)`` in source original pixels.
        refine: False: the nearest source cell's descriptor, answered by the best target cell's
            centre (the paper's rule). True: the source descriptor is interpolated bilinearly at
            the exact point, and the answer is the soft-argmax of the similarity map over the
            cells around the best one (sub-cell precision; :data:`REFINE_RADIUS`,
            :data:`REFINE_TEMPERATURE`).

    Returns:
        ``(answers K x 2 float64 (y, x) target original pixels, sims K x T2, best K long)``.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if refine:
        q = point_descriptors(source_unit, source_geometry, pts)
    else:
        h, w = source_geometry.grid
        gy, gx = source_geometry._grid_coords(np.floor(pts[:, 0]) + 0.5, np.floor(pts[:, 1]) + 0.5)
        cells = np.clip(np.rint(gy), 0, h - 1) * w + np.clip(np.rint(gx), 0, w - 1)
        q = source_unit[torch.as_tensor(cells.astype(np.int64), device=source_unit.device)]
    # fp32 similarities whatever the storage (sessions keep fp16 unit rows: PointMatcher.compact)
    sims = q.float() @ target_unit.t().float()                                  # K x T2
    best = sims.argmax(dim=1)
    if refine:
        fy, fx = _soft_argmax(sims, best, tuple(target_geometry.grid), REFINE_RADIUS, REFINE_TEMPERATURE)
        answers = target_geometry.grid_to_pixel(fy, fx)
    else:
        answers = target_geometry.cell_to_pixel(best.cpu().numpy())
    return np.asarray(answers, dtype=np.float64).reshape(-1, 2), sims, best


# --------------------------------------------------------------------------- best buddies
def _mutual_nn(a: torch.Tensor, b: torch.Tensor, chunk: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest neighbours both ways for unit rows ``a`` (T1 x D) and ``b`` (T2 x D).

    Returns ``(mask T1 bool, nn12 T1 long, sim12 T1, nn21 T2 long, sim21 T2)``; one pass over
    row chunks of ``a`` keeps the running column maxima (first index wins ties).
    """
    t1, t2 = a.shape[0], b.shape[0]
    dev = a.device
    sim12 = torch.empty(t1, device=dev)
    nn12 = torch.empty(t1, dtype=torch.long, device=dev)
    sim21 = torch.full((t2,), -math.inf, device=dev)
    nn21 = torch.zeros(t2, dtype=torch.long, device=dev)
    bt = b.t()
    for start in range(0, t1, chunk):  # loop over chunks of rows, never over single tokens
        stop_point()
        s = a[start:start + chunk] @ bt                    # c x T2
        sim12[start:start + chunk], nn12[start:start + chunk] = s.max(dim=1)
        col_max, col_arg = s.max(dim=0)                    # T2
        better = col_max > sim21
        sim21 = torch.where(better, col_max, sim21)
        nn21 = torch.where(better, col_arg + start, nn21)
    mask = nn21[nn12] == torch.arange(t1, device=dev)
    return mask, nn12, sim12, nn21, sim21


def best_buddies(desc1: torch.Tensor, desc2: torch.Tensor, chunk: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best buddies (mutual nearest neighbours under cosine similarity).

    Args:
        desc1: T1 x D descriptors of image 1; desc2: T2 x D descriptors of image 2.
        chunk: rows of ``desc1`` per similarity block (None: about 16 M entries per block).

    Returns:
        ``(mask, nn12, sim12)``: ``mask`` T1 bool (row i is a best buddy), ``nn12`` T1 long
        (index of i's nearest neighbour in ``desc2``), ``sim12`` T1 float32 (its cosine similarity).
    """
    for name, d in (("desc1", desc1), ("desc2", desc2)):
        if not isinstance(d, torch.Tensor) or d.ndim != 2 or d.shape[0] == 0:
            raise ParameterError(f"{name} must be a non-empty T x D tensor")
    if desc1.shape[1] != desc2.shape[1]:
        raise ParameterError(f"desc1 and desc2 differ in dimension: {desc1.shape[1]} vs {desc2.shape[1]}")
    chunk = _resolve_chunk(chunk, desc2.shape[0])
    with torch.no_grad():
        mask, nn12, sim12, _, _ = _mutual_nn(l2_normalize(desc1), l2_normalize(desc2.to(desc1.device)), chunk)
    return mask, nn12, sim12


# --------------------------------------------------------------------------- correspondences
def _pick_per_cluster(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Index of the highest-``rank`` member of every (non-empty) cluster, vectorised."""
    order = np.lexsort((-rank, labels))            # by label, then rank descending
    first = np.ones(order.size, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    return order[first]


def _kmeans_labels(x: torch.Tensor, k: int, n_init: int | str) -> np.ndarray:
    """Seeded k-means labels of the rows of ``x`` (n x D), computed on ``x``'s device.

    ``n_init="auto"`` is one greedy k-means++ run (what scikit-learn's ``"auto"`` means). With fewer
    rows than half the dimensions (13,056-d binned pairs, a few hundred candidates) the rows are
    replaced by their coordinates in an orthonormal basis of their span: the same distances, so
    the same clustering, at a fraction of the cost.
    """
    x = x.float()
    restarts = 1 if n_init == "auto" else int(n_init)
    trials = 2 + int(math.log(k))    # greedy k-means++, as scikit-learn
    with small_work_threads(x, max_elements=1 << 25):  # CPU: one thread (small, busy machines)
        if x.shape[0] * 2 < x.shape[1]:  # fewer rows than dimensions: coordinates in their span
            x = torch.linalg.qr(x.T).R.T  # n x n, every pairwise distance unchanged (x = R^T Q^T)
        return kmeans(x, k, n_init=restarts, seed=0, local_trials=trials).labels.cpu().numpy()


def _empty(reason: str, d1: "ImageDescriptors", d2: "ImageDescriptors", num_mutual: int,
           params: dict[str, Any]) -> Correspondences:
    z2 = np.zeros((0, 2), dtype=np.float64)
    z = np.zeros(0, dtype=np.float64)
    zi = np.zeros(0, dtype=np.int64)
    return Correspondences(z2, z2.copy(), z, z.copy(), zi, zi.copy(), 0, num_mutual,
                           tuple(d1.grid), tuple(d2.grid), tuple(d1.geometry.orig_size),
                           tuple(d2.geometry.orig_size), reason, params)


def find_correspondences_descriptors(
    d1: "ImageDescriptors", d2: "ImageDescriptors", *, num_pairs: int = 10,
    thresh: float | None = 0.05, chunk: int | None = None, n_init: int | str = "auto",
    matcher: "PointMatcher | None" = None,
) -> Correspondences:
    """Correspondences from already-extracted descriptors (see the module docstring).

    Args:
        d1, d2: descriptors of the two images (same D); ``saliency`` is required unless
            ``thresh`` is None.
        num_pairs: number of pairs to return (>= 1); fewer best buddies return all of them.
        thresh: saliency threshold in [0, 1]; a pair is kept when both patches exceed it.
            None disables the foreground filter (pairs are then ranked by saliency when
            available, else by similarity).
        chunk: rows per similarity block (None: automatic).
        n_init: k-means restarts; ``"auto"`` is what the official call ``KMeans(n_clusters,
            random_state=0)`` means with scikit-learn >= 1.4 (one k-means++ run); older
            scikit-learn ran 10 (pass ``n_init=10`` for that).
        matcher: a :class:`PointMatcher` already built on ``d1``, ``d2``, whose normalised
            descriptors and nearest neighbours are reused (the web demo needs both).
    """
    num_pairs = _check_knobs(num_pairs, thresh, chunk, n_init)
    if thresh is not None and (d1.saliency is None or d2.saliency is None):
        raise ParameterError("thresh needs saliency maps: extract with saliency=True "
                             "(or pass thresh=None)")
    if matcher is None:
        matcher = PointMatcher(d1, d2, chunk)  # validates both, then one mutual-NN pass
    elif matcher.d1 is not d1 or matcher.d2 is not d2:
        raise ParameterError("matcher was built on other descriptors than d1, d2")
    desc1, desc2 = d1.descs, d2.descs
    params = {**dict(getattr(d1, "params", {}) or {}), "num_pairs": num_pairs, "thresh": thresh,
              "n_init": n_init}

    with torch.no_grad():
        dev = desc1.device
        mask, nn12, sim12 = matcher.best_buddy_mask1, matcher.nn12, matcher.sim12
        num_mutual = int(mask.sum())
        has_sal = d1.saliency is not None and d2.saliency is not None
        if has_sal:
            sal1 = d1.saliency.reshape(-1).float().to(dev)
            sal2 = d2.saliency.reshape(-1).float().to(dev)
        if thresh is not None:
            # direct foreground test (the official code's scatter over nn21 is a quirk)
            mask = mask & (sal1 > thresh) & (sal2 > thresh)[nn12]
        idx1 = torch.nonzero(mask, as_tuple=False)[:, 0]
        idx2 = nn12[idx1]
        n = int(idx1.numel())
        if n == 0:
            why = ("no mutual nearest neighbours" if num_mutual == 0 else
                   f"none of the {num_mutual} best buddies is foreground in both images "
                   f"(saliency > thresh={thresh})")
            return _empty(why, d1, d2, num_mutual, params)
        sims = sim12[idx1].double().cpu().numpy()
        sal = ((sal1[idx1] + sal2[idx2]) / 2).double().cpu().numpy() if has_sal else np.full(n, np.nan)
        rank = sal if has_sal else sims
        k = min(num_pairs, n)
        if k == n:
            chosen = np.arange(n)
        else:
            pairs = l2_normalize(torch.cat([desc1[idx1], desc2.to(dev)[idx2]], dim=1))
            chosen = _pick_per_cluster(_kmeans_labels(pairs, k, n_init), rank)
        chosen = chosen[np.argsort(-rank[chosen], kind="stable")]
        i1 = idx1.cpu().numpy()[chosen]
        i2 = idx2.cpu().numpy()[chosen]
    c1 = np.asarray(d1.geometry.cell_centers(), dtype=np.float64)
    c2 = np.asarray(d2.geometry.cell_centers(), dtype=np.float64)
    return Correspondences(
        points1=c1[i1], points2=c2[i2], similarity=sims[chosen], saliency=sal[chosen],
        indices1=i1.astype(np.int64), indices2=i2.astype(np.int64), num_best_buddies=n,
        num_mutual=num_mutual, grid1=tuple(d1.grid), grid2=tuple(d2.grid),
        size1=tuple(d1.geometry.orig_size), size2=tuple(d2.geometry.orig_size), reason=None,
        params=params)


def pair_defaults(extractor: "Extractor", layer: Any, bin: Any) -> tuple[Any, bool]:
    """``layer`` / ``bin`` None -> the correspondence defaults of the extractor's model
    (:func:`vitdense.defaults.task_defaults`; a table ``bin`` of None is the model's own)."""
    from vitdense.defaults import task_defaults
    table = task_defaults("correspondences", extractor.model_name)
    layer = table["layer"] if layer is None else layer
    bin = table["bin"] if bin is None else bin
    return layer, extractor.spec.default_bin if bin is None else bool(bin)


def extract_pair(extractor: "Extractor", image1: Any, image2: Any, *, load_size: int | None = 224,
                 layer: int | Sequence[int] | None = None, facet: str | None = None, bin: bool | None = None,
                 hierarchy: int = 2, stride: int | None = None, saliency: bool = True,
                 flip: bool | None = None) -> tuple["ImageDescriptors", "ImageDescriptors"]:
    """Descriptors of two images with the correspondence defaults: ``layer``, ``bin``, ``facet``,
    ``stride`` and ``flip`` None are the table's values for the model (``vitdense.defaults``: the
    paper's binned layer-9 keys for DINO v1; the measured values for DINOv2). ``flip``: image 2 is
    also described mirrored and the orientation that fits image 1 better is kept
    (:func:`vitdense.ops.mirror.extract_oriented`; image 2's descriptors stay on its own grid)."""
    layer, bin = pair_defaults(extractor, layer, bin)
    knobs = dict(layer=layer, facet=facet, stride=stride, load_size=load_size, bin=bin,
                 hierarchy=hierarchy, saliency=saliency)
    if pair_flip(extractor, flip):
        from vitdense.ops.mirror import extract_oriented
        d1, d2, _ = extract_oriented(extractor, image1, image2, **knobs)
        return d1, d2
    d1, d2 = extractor.extract([image1, image2], **knobs)
    return d1, d2


def pair_flip(extractor: "Extractor", flip: bool | None) -> bool:
    """``flip`` None -> the correspondence default of the extractor's model."""
    from vitdense.defaults import task_defaults
    return bool(task_defaults("correspondences", extractor.model_name)["flip"] if flip is None else flip)


def find_correspondences(extractor: "Extractor", image1: Any, image2: Any, *,
                         num_pairs: int = 10, thresh: float | None = 0.05,
                         load_size: int | None = 224, layer: int | Sequence[int] | None = None,
                         facet: str | None = None, bin: bool | None = None, hierarchy: int = 2,
                         stride: int | None = None, chunk: int | None = None,
                         n_init: int | str = "auto", flip: bool | None = None) -> Correspondences:
    """``num_pairs`` well-spread correspondences between two images.

    ``layer`` / ``bin`` / ``stride`` / ``facet`` / ``flip`` None are the correspondence defaults of the model
    (``vitdense.defaults.task_defaults("correspondences", model)``). Images: path / PIL / ndarray
    / bytes. See :func:`find_correspondences_descriptors` for the matching knobs.
    """
    _check_knobs(num_pairs, thresh, chunk, n_init)
    d1, d2 = extract_pair(extractor, image1, image2, load_size=load_size, layer=layer, facet=facet,
                          bin=bin, hierarchy=hierarchy, stride=stride, saliency=True, flip=flip)
    result = find_correspondences_descriptors(d1, d2, num_pairs=num_pairs, thresh=thresh,
                                              chunk=chunk, n_init=n_init)
    result.params["flip"] = pair_flip(extractor, flip)
    return result


# --------------------------------------------------------------------------- click queries
class PointMatcher:
    """Click-to-correspond on cached descriptors of two images.

    The constructor normalises both descriptor sets and computes the best-buddy structure once
    (both directions); :meth:`query` then costs one ``1 x D`` by ``D x T`` product. ``refine``
    (None: the correspondence default of ``vitdense.defaults``, on) answers clicks at sub-cell
    precision (:func:`match_points`).
    """

    def __init__(self, d1: "ImageDescriptors", d2: "ImageDescriptors", chunk: int | None = None,
                 refine: bool | None = None):
        desc1 = check_descriptor_set(d1, "d1", same_dim=False)[0]
        desc2 = check_descriptor_set(d2, "d2", same_dim=False)[0]
        if desc1.shape[1] != desc2.shape[1]:
            raise ParameterError(f"d1 and d2 differ in descriptor dimension: {desc1.shape[1]} vs "
                                 f"{desc2.shape[1]} (extract both with the same layer/facet/bin)")
        self.d1, self.d2 = d1, d2
        if refine is None:
            from vitdense.defaults import task_defaults
            refine = task_defaults("correspondences", d1.params.get("model"))["refine"]
        self.refine = bool(refine)
        with torch.no_grad():
            self._a = l2_normalize(desc1)
            self._b = l2_normalize(desc2.to(desc1.device))
            mask, nn12, sim12, nn21, _ = _mutual_nn(self._a, self._b, _resolve_chunk(chunk, self._b.shape[0]))
        self.best_buddy_mask1 = mask                        # T1 bool
        self.nn12, self.nn21 = nn12, nn21                    # T1, T2 long
        self.sim12 = sim12                                   # T1, cosine similarity to nn12
        self.best_buddy_mask2 = nn12[nn21] == torch.arange(nn21.numel(), device=nn21.device)

    def compact(self, dtype: torch.dtype = torch.float16) -> "PointMatcher":
        """Keep one copy of the descriptors: the normalised ones in ``dtype`` (a server holding many
        sessions; fp16 is half of fp32). ``d1`` / ``d2`` then carry these normalised copies, the raw
        descriptors are released; queries answer as before (similarities within ~1e-3)."""
        self._a, self._b = self._a.to(dtype), self._b.to(dtype)
        self.d1 = dataclasses.replace(self.d1, descs=self._a)
        self.d2 = dataclasses.replace(self.d2, descs=self._b)
        return self

    @classmethod
    def from_images(cls, extractor: "Extractor", image1: Any, image2: Any, **knobs: Any) -> "PointMatcher":
        """Extract both images with the correspondence defaults (see :func:`extract_pair`)."""
        knobs.setdefault("saliency", False)
        return cls(*extract_pair(extractor, image1, image2, **knobs))

    @property
    def unit_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit-normalised descriptor rows every query compares (T1 x D, T2 x D; image 2 in the
        orientation kept, in the ``compact`` dtype once compacted). Read-only: do not modify."""
        return self._a, self._b

    @property
    def num_best_buddies(self) -> int:
        return int(self.best_buddy_mask1.sum())

    def query(self, y: float, x: float, reverse: bool = False, refine: bool | None = None) -> PointMatch:
        """Match the pixel ``(y, x)`` (original pixels) of image 1 (image 2 if ``reverse``).

        ``refine`` None: the matcher's setting (see :func:`match_points`)."""
        src, dst = (self.d2, self.d1) if reverse else (self.d1, self.d2)
        qa, qb = (self._b, self._a) if reverse else (self._a, self._b)
        back = self.nn12 if reverse else self.nn21
        h0, w0 = src.geometry.orig_size
        for name, v, hi in (("y", y, h0), ("x", x, w0)):
            if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool) \
                    or not math.isfinite(v) or not 0 <= v < hi:
                raise ParameterError(f"{name}={v!r} is outside the image: expected a value in [0, {hi})")
        refine = self.refine if refine is None else bool(refine)
        i = int(src.geometry.pixel_to_cell(float(y), float(x)))
        with torch.no_grad():
            answer, sims, best = match_points(qa, src.geometry, qb, dst.geometry, [(float(y), float(x))], refine)
            sims, j = sims[0], int(best[0])
        centers_src = src.geometry.cell_to_pixel(i)
        centers_dst = dst.geometry.cell_to_pixel(j)
        return PointMatch(
            query=(float(y), float(x)),
            source_point=(float(centers_src[0]), float(centers_src[1])),
            point=(float(answer[0, 0]), float(answer[0, 1])),
            source_index=i, target_index=j, similarity=float(sims[j]),
            is_best_buddy=int(back[j]) == i,
            similarity_map=sims.reshape(tuple(dst.grid)).float().cpu().numpy(),
            target_geometry=dst.geometry, reverse=bool(reverse),
            cell_point=(float(centers_dst[0]), float(centers_dst[1])))

    def best_buddy_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All best buddies as flat index arrays ``(idx1 B, idx2 B)`` (no foreground filter)."""
        idx1 = torch.nonzero(self.best_buddy_mask1, as_tuple=False)[:, 0]
        return idx1.cpu().numpy(), self.nn12[idx1].cpu().numpy()


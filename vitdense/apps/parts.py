"""Part co-segmentation: common object parts across a set of images (the paper's Sec. 4.2).

Follows the official ``part_cosegmentation.py`` (``find_part_cosegmentation``):

1. stage 1 = co-segmentation's clustering and saliency votes (foreground clusters);
2. stage 2: k-means of the foreground descriptors into ``num_parts`` parts (or, with
   ``three_stages``, into k parts chosen by the elbow rule with ``elbow_second_stage``);
   every cell's unaries are its squared distances to the part centroids plus the distance to the
   nearest *background* centroid of stage 1, smoothed by a dense CRF at the load size;
3. (``three_stages``) only the stage-2 parts present in every original image are kept; the
   descriptors of those parts are clustered again into ``num_parts`` parts, and the distances to the
   dropped parts count as background (so non-common objects become background).

Optional ``num_crop_augmentations``: random 95% crops of every image and of its mirror image join
the clustering, but do not vote and are not returned. Background is label 0, parts are 1..num_parts,
numbered by decreasing size over the set; a label means the same part in every image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from vitdense.apps.cosegmentation import (
    STAGE1_KNOBS,
    CosegResult,
    assemble_result,
    grid_to_size,
    resized_rgb,
    validate_stage1,
)
from vitdense.apps.knobs import REQUIRED, VotedKnobs, keyword, keyword_signature, knob_parameters, positional, \
    settings_for, settings_parameters, split_options
from vitdense.errors import ParameterError, check_bool, check_range
from vitdense.features.descriptors import DescriptorSettings, check_descriptor_set
from vitdense.features.images import ImageLike, as_image_list, load_image
from vitdense.ops.clustering import (
    elbow_kmeans,
    kmeans,
    l2_normalize,
    relabel_by_size,
    sample_rows,
    sample_rows_balanced,
)
from vitdense.ops.crf import CRF_DEFAULTS, dense_crf
from vitdense.ops.foreground import extract_with_saliency, foreground_clusters, part_unaries, saliency_maps
from vitdense.ops.host import to_host
from vitdense.ops.refine import resize_labels, resolve_refiner, smooth_grid_unaries
from vitdense.stops import stop_point

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

#: largest accepted ``num_parts`` (the CRF's cost grows with the number of labels)
MAX_PARTS = 64
#: how the grid unaries are brought to the load size before the CRF ("nearest" as the official code)
UNARY_UPSAMPLING = "bilinear"
#: the knobs of stages 2 and 3, left out of the stage-1 result's params
STAGE2_PARAMS = ("num_parts", "three_stages", "elbow_second_stage", "crf", "crf_params", "balanced_parts")


#: the row of vitdense.defaults.TASK_DEFAULTS
TASK = "parts"


@dataclass(frozen=True)
class PartsKnobs(VotedKnobs):
    """Part co-segmentation's own knobs (the descriptor settings are a
    :class:`~vitdense.features.descriptors.DescriptorSettings`). None = the value of
    :func:`vitdense.defaults.task_defaults` ("parts") for the model (:meth:`resolved`).

    ``num_parts``; stage 1 as co-segmentation (``elbow``, ``thresh``, ``votes_percentage``,
    ``sample_interval``, the votes ``thresh_mode`` / ``vote_mode`` / ``fallback`` of
    :mod:`vitdense.ops.voting`); ``three_stages`` with ``elbow_second_stage`` (module docstring);
    ``crf`` and ``crf_params`` (overrides of :data:`vitdense.ops.crf.CRF_DEFAULTS`);
    ``balanced_parts``: every image gives the part k-means as many rows; k-means ``max_clusters``,
    ``n_init``, ``max_iter``, ``seed``; ``refiner``: the CRF's implementation, ``"auto"``
    (pydensecrf on the CPU, :mod:`vitdense.ops.refine`'s torch CRF on CUDA), ``"cpu"`` or ``"torch"``.

    Extraction knobs (read by :func:`part_cosegment_with` only): ``low_res_saliency_maps`` (see
    :class:`vitdense.apps.cosegmentation.CosegKnobs`), ``num_crop_augmentations`` (random 95% crops of
    every image and of its mirror image join the clustering), ``batch_size``.
    """

    TASK: ClassVar[str] = TASK
    EXTRACTION: ClassVar[tuple[str, ...]] = ("low_res_saliency_maps", "num_crop_augmentations", "batch_size")

    num_parts: int | None = None
    three_stages: bool = False
    elbow_second_stage: float = 0.94
    crf: bool | None = None
    crf_params: dict | None = None
    balanced_parts: bool | None = None
    num_crop_augmentations: int = 0


@dataclass
class PartsResult:
    """Result of :func:`part_cosegment` / :func:`part_cosegment_descriptors` for N images.

    Per-image lists (original images only, never augmentations), ``(H0, W0)`` the original size and
    ``(h, w)`` the descriptor grid:

    - ``part_maps``: H0 x W0 int64, 0 = background, 1..num_parts = parts (CRF-smoothed when
      ``crf_applied``); label p is the same part in every image.
    - ``grid_part_maps``: h x w int64 labels of the cells before the CRF (nearest of the part centroids
      and the nearest background centroid).
    - ``fg_masks``: H0 x W0 bool, ``part_maps > 0``.
    - ``grid_fg_masks``: h x w bool, the stage-1 foreground cells (co-segmentation clusters).
    - ``geometries``: the :class:`vitdense.features.extractor.Geometry` of each image.

    Set-level: ``num_parts`` (labels 1..num_parts exist; can be below the requested number when there
    were fewer foreground descriptors), ``part_centroids`` (num_parts x D float32, row p - 1 = part p,
    L2-normalised descriptor space), ``bg_centroids`` (B x D float32, the background centroids the
    labels were computed with: the non-salient stage-1 centroids, plus with ``three_stages`` the
    dropped stage-2 parts; 0 x D when the result is empty), ``part_fractions`` (num_parts floats:
    share of the foreground cells of the original images on the grid, decreasing), ``stage1`` (the
    co-segmentation :class:`CosegResult` of stage 1, unrefined masks), ``num_stage2_clusters`` (k of stage 2),
    ``common_parts`` (``three_stages`` only: the stage-2 cluster ids present in every image, else None),
    ``crf_applied``, ``reason`` (None, or why every part map is empty), ``notes`` (adjustments made,
    e.g. fewer parts than asked), ``params`` (every knob plus the descriptor parameters).
    """

    part_maps: list[np.ndarray]
    grid_part_maps: list[np.ndarray]
    fg_masks: list[np.ndarray]
    grid_fg_masks: list[np.ndarray]
    geometries: list["Geometry"]
    num_parts: int
    part_centroids: np.ndarray
    bg_centroids: np.ndarray
    part_fractions: np.ndarray
    stage1: CosegResult
    num_stage2_clusters: int = 0
    common_parts: np.ndarray | None = None
    crf_applied: bool = False
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.part_maps)


def validate_part_params(num_parts: int, elbow_second_stage: float, num_crop_augmentations: int) -> None:
    """Raise :class:`ParameterError` for a part co-segmentation knob out of range."""
    if not isinstance(num_parts, (int, np.integer)) or not 1 <= num_parts <= MAX_PARTS:
        raise ParameterError(f"num_parts={num_parts!r} is out of range: expected an integer in [1, {MAX_PARTS}]")
    check_range("elbow_second_stage", elbow_second_stage, 0.0, 1.0, low_inclusive=False)
    if not isinstance(num_crop_augmentations, (int, np.integer)) or num_crop_augmentations < 0:
        raise ParameterError(f"num_crop_augmentations={num_crop_augmentations!r} is out of range: "
                             "expected an integer >= 0")


def _check_crf_params(crf_params: dict | None) -> dict:
    params = dict(CRF_DEFAULTS)
    if crf_params:
        unknown = set(crf_params) - set(CRF_DEFAULTS)
        if unknown:
            raise ParameterError(f"unknown crf_params {sorted(unknown)}: expected some of {sorted(CRF_DEFAULTS)}")
        params.update(crf_params)
    params["iterations"] = int(params["iterations"])
    return params


def _cluster_parts(blocks: list[torch.Tensor], k: int | None, elbow: float, sample_interval: int,
                   max_clusters: int, n_init: int, max_iter: int, seed: int,
                   notes: list[str], balanced: bool = False) -> torch.Tensor:
    """k-means (fixed ``k``, or elbow when ``k`` is None) of the rows of ``blocks`` -> centroids K x D.

    Trained on every ``sample_interval``-th row of each block (all rows when that is fewer than k), or
    with ``balanced`` on the same number of rows from every block (:func:`sample_rows_balanced`).
    """
    full = torch.cat(blocks, dim=0)
    train = sample_rows_balanced(blocks, sample_interval) if balanced else sample_rows(blocks, sample_interval)
    if k is None:
        return elbow_kmeans(train, full, elbow=elbow, max_clusters=max_clusters, n_init=n_init,
                            max_iter=max_iter, seed=seed).centroids
    if train.shape[0] < k:
        train = full
    if train.shape[0] < k:
        notes.append(f"only {train.shape[0]} foreground descriptors: {train.shape[0]} parts instead of {k}")
        k = train.shape[0]
    return kmeans(train, k, n_init=n_init, max_iter=max_iter, seed=seed).centroids


def _smooth(unary: np.ndarray, geometry: "Geometry", rgb: np.ndarray | None, crf_params: dict,
            size: tuple[int, int] | None = None) -> np.ndarray:
    """T x C grid unaries -> labels: with ``rgb`` (the image at the load size, :func:`resized_rgb`), the
    dense CRF at the load size, resized (nearest) to ``size``; without, the grid argmin sampled at
    ``size`` (None: the grid itself)."""
    h, w = geometry.grid
    grid = unary.reshape(h, w, -1)
    if rgb is None:
        labels = grid.argmin(axis=2).astype(np.int64)
        return labels if size is None else grid_to_size(labels, geometry, size, mode="nearest").astype(np.int64)
    up = grid_to_size(grid, geometry, None, mode=UNARY_UPSAMPLING)  # H1 x W1 x C
    stop_point()
    labels = dense_crf(rgb, np.ascontiguousarray(up.transpose(2, 0, 1)), **crf_params)
    if size is None:
        return _at_cells(labels, geometry)
    if labels.shape == tuple(size):
        return labels
    return cv2.resize(labels.astype(np.int32), (int(size[1]), int(size[0])),
                      interpolation=cv2.INTER_NEAREST).astype(np.int64)


def _smooth_all(unaries: list[torch.Tensor], geometries: Sequence["Geometry"], rgbs: Sequence[np.ndarray | None],
                crf_params: dict, sizes: Sequence[tuple[int, int] | None], refiner: str) -> list[np.ndarray]:
    """:func:`_smooth` of several images (T_i x C energies); ``refiner="torch"``: the CRF of the images
    with pixels is one batch on the energies' device (:func:`vitdense.ops.refine.smooth_grid_unaries`)."""
    todo = [i for i, r in enumerate(rgbs) if r is not None] if refiner == "torch" else []
    out: list[np.ndarray | None] = [None] * len(unaries)
    if todo:
        smoothed = smooth_grid_unaries([unaries[i] for i in todo], [geometries[i] for i in todo],
                                       [rgbs[i] for i in todo], **crf_params)
        sized = to_host([lab if sizes[i] is None else resize_labels(lab, sizes[i]) for i, lab in zip(todo, smoothed)])
        for i, lab in zip(todo, sized):
            out[i] = _at_cells(lab.numpy(), geometries[i]) if sizes[i] is None else lab.numpy()
    for i in range(len(unaries)):
        if out[i] is None:
            out[i] = _smooth(unaries[i].cpu().numpy(), geometries[i], rgbs[i], crf_params, sizes[i])
    return out  # type: ignore[return-value]


def _at_cells(labels: np.ndarray, geometry: "Geometry") -> np.ndarray:
    """H1 x W1 load-size labels -> the h x w labels at the cell centres."""
    h, w = geometry.grid
    half = geometry.patch // 2
    ys = np.minimum(np.arange(h) * geometry.stride + half, labels.shape[0] - 1)
    xs = np.minimum(np.arange(w) * geometry.stride + half, labels.shape[1] - 1)
    return labels[np.ix_(ys, xs)]


def validate_parts_knobs(k: PartsKnobs) -> dict:
    """Raise :class:`ParameterError` for a resolved knob out of range; returns the CRF's parameters
    (:data:`vitdense.ops.crf.CRF_DEFAULTS` with ``k.crf_params`` applied)."""
    validate_stage1(k)
    validate_part_params(k.num_parts, k.elbow_second_stage, k.num_crop_augmentations)
    for name in ("three_stages", "crf", "balanced_parts", "low_res_saliency_maps"):
        check_bool(name, getattr(k, name))
    return _check_crf_params(k.crf_params)


@dataclass
class _Run:
    """One run as its steps read it: the original images first, then the augmentations."""

    knobs: PartsKnobs               # resolved
    crf_params: dict
    refiner: str
    n: int                          # original images
    normed: list[torch.Tensor]      # T_i x D, L2-normalised
    geoms: list["Geometry"]
    params: dict
    notes: list[str] = field(default_factory=list)

    def cluster(self, blocks: list[torch.Tensor], k: int | None) -> torch.Tensor:
        """:func:`_cluster_parts` with this run's knobs (k None: the second stage's elbow)."""
        kn = self.knobs
        return _cluster_parts(blocks, k, kn.elbow_second_stage, kn.sample_interval, kn.max_clusters,
                              notes=self.notes, balanced=kn.balanced_parts, **kn.pick("n_init", "max_iter", "seed"))

    def fg_maps(self, fg_cells: list[np.ndarray]) -> list[np.ndarray]:
        return [f.reshape(g.grid) for f, g in zip(fg_cells[:self.n], self.geoms[:self.n])]


def _check_inputs(descs: Sequence["ImageDescriptors"], images: Sequence[ImageLike] | None, extra: list,
                  extra_images: Sequence[ImageLike] | None, crf: bool) -> None:
    check_descriptor_set(list(descs) + extra if len(descs) else [])  # extras alone are no image set
    if crf and images is None:
        raise ParameterError("crf=True needs the original images: pass images= or set crf=False")
    if images is not None and len(images) != len(descs):
        raise ParameterError(f"images has {len(images)} entries for {len(descs)} descriptor sets: give one per image")
    if extra_images is not None and len(extra_images) != len(extra):
        raise ParameterError(f"extra_images has {len(extra_images)} entries for {len(extra)} extra_descs: "
                             "give one per extra descriptor set")


def _params(k: PartsKnobs, crf_params: dict, num_extra: int, descs: Sequence["ImageDescriptors"],
            extra_params: dict | None) -> dict:
    """``result.params``: the recorded knobs (``num_extra`` before the k-means ones), the descriptors'."""
    rec = {**k.recorded(), "crf_params": crf_params}
    head = list(rec)[:list(rec).index("max_clusters")]
    return {**{n: rec[n] for n in head}, "num_extra": num_extra, **{n: v for n, v in rec.items() if n not in head},
            "descriptors": dict(descs[0].params), **(extra_params or {})}


def _stage1(run: _Run, descs: Sequence["ImageDescriptors"], sal: list[np.ndarray]
            ) -> tuple[list[np.ndarray], CosegResult, torch.Tensor]:
    """Stage 1: foreground clusters (augmentations are clustered but do not vote) -> (per image the
    T_i bool foreground cells, the stage's :class:`CosegResult`, B x D background centroids: the
    clusters no image took as foreground; a fallback image's own clusters are not)."""
    n = run.n
    st = foreground_clusters(run.normed, sal, n, **run.knobs.pick(*STAGE1_KNOBS))
    stage1 = assemble_result(descs, sal, np.arange(n), st, np.ones(n, bool), None, None,
                             {k: v for k, v in run.params.items() if k not in STAGE2_PARAMS})
    fg_ids = np.unique(np.concatenate([lab[f] for lab, f in zip(st.labels, st.fg_cells)] + [st.salient]))
    return st.fg_cells, stage1, st.elbow.centroids[np.setdiff1d(np.arange(st.elbow.k), fg_ids)]


def _empty(run: _Run, stage1: CosegResult, fg_cells: list[np.ndarray], reason: str, k2: int = 0,
           common: np.ndarray | None = None) -> PartsResult:
    """A result without parts (every label 0) that says why."""
    none = np.zeros((0, run.normed[0].shape[1]), np.float32)
    geoms = run.geoms[:run.n]
    return PartsResult(
        part_maps=[np.zeros(g.orig_size, np.int64) for g in geoms],
        grid_part_maps=[np.zeros(g.grid, np.int64) for g in geoms],
        fg_masks=[np.zeros(g.orig_size, bool) for g in geoms], grid_fg_masks=run.fg_maps(fg_cells), geometries=geoms,
        num_parts=0, part_centroids=none, bg_centroids=none.copy(), part_fractions=np.zeros(0), stage1=stage1,
        num_stage2_clusters=k2, common_parts=common, crf_applied=False, reason=reason, notes=run.notes,
        params=run.params)


def _crf_images(run: _Run, images: Sequence[ImageLike] | None,
                extra_images: Sequence[ImageLike] | None) -> list[np.ndarray | None]:
    """The CRF's images at the load size, once (None without ``crf`` or without pixels); with
    ``three_stages`` the augmentations' too (stage 3 smooths them)."""
    if not run.knobs.crf:
        return [None] * run.n
    pool = list(images or []) + list(extra_images if extra_images is not None else [None] * (len(run.normed) - run.n))
    count = len(run.normed) if run.knobs.three_stages else run.n
    return [None if pool[i] is None else resized_rgb(pool[i], run.geoms[i]) for i in range(count)]


def _common_parts(run: _Run, parts2: torch.Tensor, bg1: torch.Tensor,
                  rgbs: list[np.ndarray | None]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stage 3's vote: the stage-2 cluster ids present in every original image after smoothing, and
    the smoothed h x w labels of every image (0 = background, c + 1 = stage-2 cluster c)."""
    smoothed = _smooth_all([part_unaries(x, parts2, bg1) for x in run.normed], run.geoms, rgbs, run.crf_params,
                           [None] * len(run.normed), run.refiner)
    votes = np.zeros(int(parts2.shape[0]) + 1, np.int64)
    for lab in smoothed[:run.n]:
        votes[np.unique(lab)] += 1
    return np.flatnonzero(votes[1:] == run.n), smoothed


def _final_result(run: _Run, parts: torch.Tensor, bg: torch.Tensor, rgbs: list[np.ndarray | None],
                  stage1: CosegResult, fg_cells: list[np.ndarray], k2: int,
                  common: np.ndarray | None) -> PartsResult:
    """Final labels: nearest centroid on the grid, CRF at the load size; parts renumbered by size."""
    n, geoms = run.n, run.geoms[:run.n]
    K = int(parts.shape[0])
    unaries_t = [part_unaries(run.normed[i], parts, bg) for i in range(n)]
    grid_maps = [u.numpy().argmin(axis=1).reshape(g.grid) for u, g in zip(to_host(unaries_t), geoms)]
    cells = np.concatenate([g.ravel() for g in grid_maps])
    counts = np.bincount(cells, minlength=K + 1)[1:]
    rank = relabel_by_size(cells[cells > 0] - 1, K)       # rank[old part id] = 0 for the largest part
    order = np.argsort(rank)                               # old part ids, largest first
    remap = np.concatenate([[0], rank + 1])
    part_maps = [remap[lab] for lab in _smooth_all(unaries_t, geoms, rgbs[:n], run.crf_params,
                                                   [g.orig_size for g in geoms], run.refiner)]
    reason = None
    if not any(m.any() for m in part_maps):
        reason = "every cell is nearer to a background centroid than to any part"
    return PartsResult(
        part_maps=part_maps, grid_part_maps=[remap[g] for g in grid_maps], fg_masks=[m > 0 for m in part_maps],
        grid_fg_masks=run.fg_maps(fg_cells), geometries=geoms, num_parts=K,
        part_centroids=parts[torch.from_numpy(order).to(parts.device)].detach().cpu().numpy(),
        bg_centroids=bg.detach().float().cpu().numpy(), part_fractions=counts[order] / max(int(counts.sum()), 1),
        stage1=stage1, num_stage2_clusters=k2, common_parts=common, crf_applied=bool(run.knobs.crf), reason=reason,
        notes=run.notes, params=run.params)


def part_cosegment_descriptors_with(descs: Sequence["ImageDescriptors"],
                                    saliency: Sequence[np.ndarray | torch.Tensor] | None,
                                    images: Sequence[ImageLike] | None, knobs: PartsKnobs | None = None, *,
                                    extra_descs: Sequence["ImageDescriptors"] | None = None,
                                    extra_images: Sequence[ImageLike] | None = None,
                                    extra_params: dict | None = None) -> PartsResult:
    """Part co-segmentation from already-extracted descriptors (no network pass).

    descs: one :class:`ImageDescriptors` per image (T_i x D). saliency: per image an h x w map (None:
    ``descs[i].saliency``). images: the original images, needed when ``crf``. knobs:
    :class:`PartsKnobs` (its extraction knobs are not read), resolved for the descriptors' model.
    extra_descs: descriptors that join every clustering but do not vote and are not returned (crop
    augmentations); extra_images: their pixels (optional; only the three-stage CRF uses them, without
    them their stage-2 labels are the plain nearest centroids). ``extra_params`` join
    ``result.params``. See :class:`PartsResult`.
    """
    k = (knobs or PartsKnobs()).resolved(descs[0].params.get("model") if len(descs) else None)
    crf_params = validate_parts_knobs(k)
    refiner = resolve_refiner(k.refiner, descs[0].descs.device if len(descs) else None)
    extra = list(extra_descs or [])
    _check_inputs(descs, images, extra, extra_images, k.crf)
    all_descs = list(descs) + extra
    run = _Run(k, crf_params, refiner, len(descs), [l2_normalize(d.descs.detach()) for d in all_descs],
               [d.geometry for d in all_descs], _params(k, crf_params, len(extra), descs, extra_params))
    fg_cells, stage1, bg1 = _stage1(run, descs, saliency_maps(descs, saliency))
    if not any(f.any() for f in fg_cells[:run.n]):
        return _empty(run, stage1, fg_cells, stage1.reason or "no foreground cluster")
    rgbs = _crf_images(run, images, extra_images)
    # stage 2: parts of the foreground descriptors
    parts2 = run.cluster([x[torch.from_numpy(f).to(x.device)] for x, f in zip(run.normed, fg_cells)],
                         None if k.three_stages else int(k.num_parts))
    k2 = int(parts2.shape[0])
    if not k.three_stages:
        return _final_result(run, parts2, bg1, rgbs, stage1, fg_cells, k2, None)
    # stage 3: the descriptors of the stage-2 parts common to every image, clustered again
    common, smoothed = _common_parts(run, parts2, bg1, rgbs)
    if common.size == 0:
        return _empty(run, stage1, fg_cells, "no stage-2 part is present in every image (three_stages): try "
                      "three_stages=False", k2, common)
    final_parts = run.cluster([x[torch.from_numpy(np.isin(lab.ravel(), common + 1)).to(x.device)]
                               for x, lab in zip(run.normed, smoothed)], int(k.num_parts))
    final_bg = torch.cat([bg1, parts2[np.setdiff1d(np.arange(k2), common)]], dim=0)
    return _final_result(run, final_parts, final_bg, rgbs, stage1, fg_cells, k2, common)


@keyword_signature(positional(("descs", "Sequence['ImageDescriptors']", REQUIRED),
                              ("saliency", "Sequence[np.ndarray | torch.Tensor] | None", None),
                              ("images", "Sequence[ImageLike] | None", None)),
                   knob_parameters(PartsKnobs, PartsKnobs.descriptor_names()),
                   keyword("extra_descs", "Sequence['ImageDescriptors'] | None", None),
                   keyword("extra_images", "Sequence[ImageLike] | None", None),
                   keyword("extra_params", "dict | None", None), returns="PartsResult")
def part_cosegment_descriptors(descs: Sequence["ImageDescriptors"],
                               saliency: Sequence[np.ndarray | torch.Tensor] | None = None,
                               images: Sequence[ImageLike] | None = None, **options: Any) -> PartsResult:
    """:func:`part_cosegment_descriptors_with` with the knobs as keywords (those of
    :class:`PartsKnobs` but its extraction knobs, plus ``extra_descs``, ``extra_images`` and
    ``extra_params``). ``None`` knobs take :func:`vitdense.defaults.task_defaults` ("parts") for the
    descriptors' model. See :class:`PartsResult`.
    """
    more = {name: options.pop(name, None) for name in ("extra_descs", "extra_images", "extra_params")}
    return part_cosegment_descriptors_with(descs, saliency, images, PartsKnobs.from_descriptor_options(**options),
                                           **more)


def crop_augmentations(images: Sequence[Image.Image], num: int, load_size: int | None, seed: int = 0,
                       fraction: float = 0.95) -> list[Image.Image]:
    """The official crop augmentations: for every image, ``num`` random crops of ``fraction`` of its
    (load-size) height and width, and ``num`` of its mirror image. Seeded; returns 2 * num * N images."""
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        if load_size is not None:
            W0, H0 = img.size
            s = load_size / min(W0, H0)
            img = img.resize((max(1, int(round(W0 * s))), max(1, int(round(H0 * s)))), Image.Resampling.LANCZOS)
        flipped = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        W, H = img.size
        ch, cw = int(H * fraction), int(W * fraction)
        for _ in range(num):
            for src in (img, flipped):
                y = int(rng.integers(0, H - ch + 1))
                x = int(rng.integers(0, W - cw + 1))
                out.append(src.crop((x, y, x + cw, y + ch)))
    return out


def part_cosegment_with(extractor: "Extractor", images: ImageLike | Sequence[ImageLike],
                        settings: DescriptorSettings | None = None, knobs: PartsKnobs | None = None) -> PartsResult:
    """Part co-segment a set of images (paths / PIL / arrays / bytes) with ``extractor``.

    ``settings``: the descriptor settings (None: :func:`vitdense.apps.knobs.settings_for` the task and
    the extractor's model); ``knobs``: :class:`PartsKnobs`, resolved for the extractor's model.
    Returns a :class:`PartsResult` with part maps at each original image's resolution.
    """
    settings = settings_for(TASK, extractor) if settings is None else settings.resolve(extractor.spec)
    k = (knobs or PartsKnobs()).resolved(extractor.model_name)
    validate_parts_knobs(k)
    check_bool("bin", settings.bin)
    pils = [load_image(im) for im in as_image_list(images)]
    ex_kw = dict(load_size=settings.load_size, layer=settings.layer, facet=settings.facet, bin=settings.bin,
                 stride=settings.stride, batch_size=k.batch_size)
    descs, sal = extract_with_saliency(extractor, pils, include_cls=False,
                                       low_res_saliency_maps=k.low_res_saliency_maps, **ex_kw)
    augs = crop_augmentations(pils, k.num_crop_augmentations, settings.load_size, k.seed) \
        if k.num_crop_augmentations else []
    extra = extractor.extract(augs, **ex_kw) if augs else []
    return part_cosegment_descriptors_with(descs, sal, pils, k, extra_descs=extra, extra_images=augs,
                                           extra_params=k.pick("low_res_saliency_maps", "num_crop_augmentations"))


@keyword_signature(positional(("extractor", "'Extractor'", REQUIRED),
                              ("images", "ImageLike | Sequence[ImageLike]", REQUIRED)),
                   settings_parameters(TASK), knob_parameters(PartsKnobs), returns="PartsResult")
def part_cosegment(extractor: "Extractor", images: ImageLike | Sequence[ImageLike], **options: Any) -> PartsResult:
    """Part co-segment a set of images (paths / PIL / arrays / bytes) with ``extractor``:
    :func:`part_cosegment_with` with the descriptor settings and :class:`PartsKnobs` as keywords.

    ``None`` knobs take :func:`vitdense.defaults.task_defaults` ("parts") for the extractor's model: the
    official code's for DINO v1, the values measured on real sets for DINOv2 (README); a facet the
    table leaves None is the model's default facet. Returns a :class:`PartsResult` with part maps at
    each original image's resolution.
    """
    given, knobs = split_options(options, PartsKnobs)
    return part_cosegment_with(extractor, images, settings_for(TASK, extractor, **given), knobs)

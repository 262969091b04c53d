"""Co-segmentation: one binary foreground mask per image of a set (the paper's Sec. 4.1).

Follows the official ``cosegmentation.py`` (``find_cosegmentation``):

1. key descriptors (layer 11, stride = the model's default, load size 224) of every image, L2-normalised;
2. k-means on every ``sample_interval``-th descriptor of each image for k = 1, 2, ... 14, stopping at
   the elbow (the mean squared distance of *all* descriptors for k exceeds ``elbow`` x that of k - 1);
   every descriptor goes to its nearest centroid;
3. each image votes for the clusters whose mean saliency in it exceeds ``thresh``; a cluster is
   foreground when at least ``ceil(votes_percentage% of the voting images)`` vote for it;
4. masks are the foreground cells, upsampled and refined with GrabCut at the load size, and
   returned at the resolution of the caller's original images.

:func:`cosegment` runs the network; :func:`cosegment_descriptors` re-clusters already-extracted
descriptors (e.g. from a cache) without it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitdense.apps.knobs import REQUIRED, VotedKnobs, keyword, keyword_signature, knob_parameters, positional, \
    settings_for, settings_parameters, split_options
from vitdense.errors import ParameterError, check_bool, check_range
from vitdense.features.descriptors import FACETS, DescriptorSettings, check_descriptor_set
from vitdense.features.images import ImageLike, as_image_list, load_image
from vitdense.ops.clustering import l2_normalize
from vitdense.ops.foreground import (  # noqa: F401 (re-exported)
    ForegroundClusters,
    cluster_votes,
    extract_with_saliency,
    foreground_clusters,
    saliency_maps,
    votes_needed,
)
from vitdense.ops.host import to_host
from vitdense.ops.refine import refine_masks, resize_labels, resolve_refiner
from vitdense.ops.voting import THRESH_MODES, VOTE_MODES
from vitdense.stops import stop_point

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor


@dataclass
class CosegResult:
    """Result of :func:`cosegment` / :func:`cosegment_descriptors` for N images.

    Per-image lists (index i = the i-th input image), with ``(H0, W0)`` the original image size and
    ``(h, w)`` its descriptor grid (``geometries[i].grid``):

    - ``masks``: H0 x W0 bool foreground masks (GrabCut-refined when ``refined[i]``); all False for
      outlier images and when ``reason`` is set.
    - ``grid_masks``: h x w bool, the foreground cells (clusters in ``salient_clusters``), unrefined.
    - ``labels``: h x w int64 cluster id of every cell in ``[0, num_clusters)``; -1 everywhere for
      outlier images (they are not clustered).
    - ``saliency``: h x w float32 saliency in [0, 1] that voted (the low-resolution maps resized with
      nearest neighbour when ``params["low_res_saliency_maps"]``).
    - ``geometries``: the :class:`vitdense.features.extractor.Geometry` of each image (grid <-> pixels).
    - ``refined``: whether GrabCut ran and succeeded for that image.

    Set-level fields: ``num_clusters`` (k chosen by the elbow), ``salient_clusters`` (sorted int ids
    of the foreground clusters), ``votes`` (num_clusters ints: how many voting images found each
    cluster salient), ``votes_needed`` (the threshold on votes), ``inliers`` (N bool; all True unless
    ``remove_outliers``), ``cls_similarity`` (N float cosine similarity of each CLS descriptor to the
    mean CLS, or None), ``elbow_objectives`` (mean squared distance for k = 1..num_clusters),
    ``centroids`` (num_clusters x D float32, in the L2-normalised descriptor space), ``reason``
    (None, or why every mask is empty), ``params`` (every knob plus the descriptor parameters).
    """

    masks: list[np.ndarray]
    grid_masks: list[np.ndarray]
    labels: list[np.ndarray]
    saliency: list[np.ndarray]
    geometries: list["Geometry"]
    refined: list[bool]
    num_clusters: int
    salient_clusters: np.ndarray
    votes: np.ndarray
    votes_needed: int
    inliers: np.ndarray
    cls_similarity: np.ndarray | None
    elbow_objectives: list[float]
    centroids: np.ndarray
    reason: str | None = None
    params: dict = field(default_factory=dict)
    fallback: np.ndarray | None = None  # N bool: the image's mask came from the per-image fallback

    @property
    def num_images(self) -> int:
        return len(self.masks)

    @property
    def is_empty(self) -> bool:
        """True when no image has any foreground pixel."""
        return not any(m.any() for m in self.masks)


#: the row of vitdense.defaults.TASK_DEFAULTS
TASK = "cosegmentation"
#: the knobs of stage 1 (:func:`vitdense.ops.foreground.foreground_clusters`), shared with the parts
STAGE1_KNOBS = ("elbow", "thresh", "votes_percentage", "sample_interval", "max_clusters", "n_init", "max_iter",
                "seed", "thresh_mode", "vote_mode", "fallback")


@dataclass(frozen=True)
class CosegKnobs(VotedKnobs):
    """Co-segmentation's own knobs (the descriptor settings are a
    :class:`~vitdense.features.descriptors.DescriptorSettings`). None = the value of
    :func:`vitdense.defaults.task_defaults` ("cosegmentation") for the model (:meth:`resolved`).

    ``elbow``, ``thresh``, ``votes_percentage``, ``sample_interval``: the paper's clustering and votes
    (module docstring); ``remove_outliers`` / ``outliers_thresh``: drop images whose CLS descriptor
    has a cosine similarity below this to the set's mean; ``refine``: GrabCut (or the torch CRF) on
    the masks; ``thresh_mode`` / ``vote_mode`` / ``fallback``: the robust votes of
    :mod:`vitdense.ops.voting`; ``max_clusters``, ``n_init``, ``max_iter``, ``seed``: k-means;
    ``refiner``: ``"auto"`` (GrabCut on the CPU; on CUDA :mod:`vitdense.ops.refine`'s dense CRF in
    torch), ``"cpu"`` or ``"torch"``.

    Extraction knobs (read by :func:`cosegment_with` only): ``outliers_facet`` (None compares the CLS
    descriptors of the descriptor pass, official; a facet name takes them from an extra pass of that
    facet at the last layer: on the bundled model the key CLS of every image is ~0.99 similar to the
    mean, while "token" separates outliers); ``low_res_saliency_maps`` (False: the official
    low-resolution pass only saved GPU memory, here the full-resolution saliency comes free with the
    descriptor pass, and on the bundled DINOv2 ViT-S/14 the low-resolution maps, an 8 x 8 grid at
    112 px, cut the mean Jaccard of a 10-image test set from 0.82 to 0.70); ``batch_size``.
    """

    TASK: ClassVar[str] = TASK
    EXTRACTION: ClassVar[tuple[str, ...]] = ("outliers_facet", "low_res_saliency_maps", "batch_size")

    remove_outliers: bool = False
    outliers_thresh: float = 0.7
    refine: bool | None = None
    outliers_facet: str | None = None


# ---------------------------------------------------------------------------------------------
# helpers shared with part co-segmentation
# ---------------------------------------------------------------------------------------------
def grid_to_size(grid_map: np.ndarray | torch.Tensor, geometry: "Geometry", size: tuple[int, int] | None = None,
                 mode: str = "nearest") -> np.ndarray:
    """An ``h x w`` (or ``h x w x C``) grid map -> ``H x W`` (x C) aligned with the image's pixels.

    ``size`` = (H, W) of the target raster; None = the resized (load-size) image. Every target pixel
    samples the map at its own patch-grid position (see :meth:`Geometry.upsample`).
    """
    target = tuple(geometry.resized_size) if size is None else (int(size[0]), int(size[1]))
    return dataclasses.replace(geometry, orig_size=target).upsample(grid_map, mode=mode)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H x W bool mask -> ``size`` (H', W') bool, bilinear on the 0/1 values thresholded at 0.5."""
    if tuple(mask.shape) == tuple(size):
        return mask.astype(bool)
    out = cv2.resize(mask.astype(np.float32), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return out >= 0.5


def resized_rgb(image: ImageLike, geometry: "Geometry") -> np.ndarray:
    """The caller's original image -> H1 x W1 x 3 uint8 at the load size of ``geometry`` (LANCZOS)."""
    pil = load_image(image)
    H0, W0 = geometry.orig_size
    if pil.size != (W0, H0):
        raise ParameterError(f"image of {pil.size[0]} x {pil.size[1]} pixels does not match its descriptors' "
                             f"original size {W0} x {H0}: pass the same images that were extracted")
    H1, W1 = geometry.resized_size
    if (H1, W1) != (H0, W0):
        pil = pil.resize((W1, H1), Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)


def grabcut_refine(image: np.ndarray, mask: np.ndarray, *, iterations: int = 5,
                   erosion: int = 7) -> tuple[np.ndarray, bool]:
    """GrabCut seeded by a coarse mask, as in the official code.

    image: H x W x 3 uint8 RGB; mask: H x W bool. The mask eroded by an ``erosion`` x ``erosion``
    square is sure foreground, the eroded complement sure background, the rest probable foreground.
    Returns ``(refined H x W bool, ok)``; on failure (empty/full mask, GrabCut error) the input mask
    and ``ok=False``.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any() or m.all():
        return m.copy(), False
    kernel = np.ones((erosion, erosion), np.uint8)
    m8 = m.astype(np.uint8)
    fg = cv2.erode(m8, kernel)
    bg = cv2.erode(1 - m8, kernel)
    gc = np.full(m.shape, cv2.GC_PR_FGD, np.uint8)
    gc[bg == 1] = cv2.GC_BGD
    gc[fg == 1] = cv2.GC_FGD
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation draws from OpenCV's global RNG: make it repeatable
    try:
        # GrabCut colour models are fitted in the image's channel order; BGR vs RGB does not matter
        cv2.grabCut(np.ascontiguousarray(image), gc, None, bgd_model, fgd_model, int(iterations),
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return m.copy(), False
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), True


def validate_coseg_params(elbow: float, thresh: float, votes_percentage: float, sample_interval: int,
                          outliers_thresh: float, max_clusters: int) -> None:
    """Raise :class:`ParameterError` for any co-segmentation knob out of range."""
    check_range("elbow", elbow, 0.0, 1.0, low_inclusive=False)
    check_range("thresh", thresh, 0.0, 1.0)
    check_range("votes_percentage", votes_percentage, 0.0, 100.0)
    if not isinstance(sample_interval, (int, np.integer)) or sample_interval < 1:
        raise ParameterError(f"sample_interval={sample_interval!r} is out of range: expected an integer >= 1")
    check_range("outliers_thresh", outliers_thresh, -1.0, 1.0)
    if not isinstance(max_clusters, (int, np.integer)) or max_clusters < 1:
        raise ParameterError(f"max_clusters={max_clusters!r} is out of range: expected an integer >= 1")


def validate_vote_modes(thresh_mode: str, vote_mode: str, fallback: bool) -> None:
    """Raise :class:`ParameterError` for an unknown vote mode (see :mod:`vitdense.ops.voting`)."""
    if thresh_mode not in THRESH_MODES:
        raise ParameterError(f"thresh_mode={thresh_mode!r} is unknown: expected one of {', '.join(THRESH_MODES)}")
    if vote_mode not in VOTE_MODES:
        raise ParameterError(f"vote_mode={vote_mode!r} is unknown: expected one of {', '.join(VOTE_MODES)}")
    check_bool("fallback", fallback)


def validate_stage1(k: Any) -> None:
    """:func:`validate_vote_modes` and :func:`validate_coseg_params` of resolved knobs (co-segmentation's
    or the parts' :class:`~vitdense.apps.knobs.VotedKnobs`)."""
    validate_vote_modes(k.thresh_mode, k.vote_mode, k.fallback)
    validate_coseg_params(k.elbow, k.thresh, k.votes_percentage, k.sample_interval,
                          getattr(k, "outliers_thresh", 0.0), k.max_clusters)


def outlier_flags(descs: Sequence["ImageDescriptors"], outliers_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """Inlier flags (N bool) and cosine similarities (N) of each CLS descriptor to the mean CLS."""
    if any(d.cls is None for d in descs):
        raise ParameterError("remove_outliers=True needs CLS descriptors: extract with include_cls=True")
    cls = torch.stack(to_host([d.cls.detach().float() for d in descs]))  # N x D, one copy off the device
    sim = F.cosine_similarity(cls, cls.mean(dim=0, keepdim=True), dim=1).numpy()
    return sim >= outliers_thresh, sim


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def cosegment_descriptors_with(descs: Sequence["ImageDescriptors"],
                               saliency: Sequence[np.ndarray | torch.Tensor] | None,
                               images: Sequence[ImageLike] | None, knobs: CosegKnobs | None = None, *,
                               extra_params: dict | None = None) -> CosegResult:
    """Co-segment a set from already-extracted descriptors (no network pass).

    descs: one :class:`ImageDescriptors` per image (T_i x D, same D). saliency: per image an h x w map
    in [0, 1] (any grid size: resized to the descriptor grid with nearest neighbour); None uses
    ``descs[i].saliency``. images: the original images (needed when ``refine``; used for GrabCut).
    knobs: :class:`CosegKnobs` (its extraction knobs are not read), resolved for the descriptors'
    model. ``extra_params`` join ``result.params``. See :class:`CosegResult`.
    """
    k = (knobs or CosegKnobs()).resolved(descs[0].params.get("model") if len(descs) else None)
    validate_stage1(k)
    check_descriptor_set(descs)
    refiner = resolve_refiner(k.refiner, descs[0].descs.device)
    if k.refine and images is None:
        raise ParameterError("refine=True needs the original images: pass images= or set refine=False")
    if images is not None and len(images) != len(descs):
        raise ParameterError(f"images has {len(images)} entries for {len(descs)} descriptor sets: give one per image")
    sal = saliency_maps(descs, saliency)
    n = len(descs)
    inliers, sims = outlier_flags(descs, k.outliers_thresh) if k.remove_outliers else (np.ones(n, bool), None)
    params = dict(k.recorded(), descriptors=dict(descs[0].params), **(extra_params or {}))
    idx = np.flatnonzero(inliers)
    if idx.size == 0:
        return CosegResult([np.zeros(d.geometry.orig_size, bool) for d in descs],
                           [np.zeros(d.grid, bool) for d in descs], [np.full(d.grid, -1, np.int64) for d in descs],
                           sal, [d.geometry for d in descs], [False] * n, 0, np.zeros(0, np.int64),
                           np.zeros(0, np.int64), 0, inliers, sims, [],
                           np.zeros((0, descs[0].descs.shape[1]), np.float32),
                           reason=f"every image is an outlier (CLS cosine similarity to the mean < "
                                  f"outliers_thresh={k.outliers_thresh})", params=params)
    normed = [l2_normalize(descs[i].descs.detach()) for i in idx]
    st = foreground_clusters(normed, [sal[i] for i in idx], len(idx), **k.pick(*STAGE1_KNOBS))
    return assemble_result(descs, sal, idx, st, inliers, sims, images if k.refine else None, params, refiner)


@keyword_signature(positional(("descs", "Sequence['ImageDescriptors']", REQUIRED),
                              ("saliency", "Sequence[np.ndarray | torch.Tensor] | None", None),
                              ("images", "Sequence[ImageLike] | None", None)),
                   knob_parameters(CosegKnobs, CosegKnobs.descriptor_names()),
                   keyword("extra_params", "dict | None", None), returns="CosegResult")
def cosegment_descriptors(descs: Sequence["ImageDescriptors"],
                          saliency: Sequence[np.ndarray | torch.Tensor] | None = None,
                          images: Sequence[ImageLike] | None = None, **options: Any) -> CosegResult:
    """:func:`cosegment_descriptors_with` with the knobs as keywords (those of :class:`CosegKnobs`
    but its extraction knobs, plus ``extra_params``). ``None`` knobs take the value of
    :func:`vitdense.defaults.task_defaults` for the descriptors' model; ``thresh_mode``, ``vote_mode``
    and ``fallback`` are the robust votes of :mod:`vitdense.ops.voting`. ``refiner``: how ``refine`` runs,
    ``"auto"`` (GrabCut on the CPU; on CUDA :mod:`vitdense.ops.refine`'s dense CRF in torch), ``"cpu"``
    (GrabCut) or ``"torch"`` (on the descriptors' device). See :class:`CosegResult`.
    """
    extra_params = options.pop("extra_params", None)
    return cosegment_descriptors_with(descs, saliency, images, CosegKnobs.from_descriptor_options(**options),
                                      extra_params=extra_params)


def assemble_result(descs: Sequence["ImageDescriptors"], sal: list[np.ndarray], idx: np.ndarray, st: ForegroundClusters,
                    inliers: np.ndarray, sims: np.ndarray | None, images: Sequence[ImageLike] | None,
                    params: dict, refiner: str = "cpu") -> CosegResult:
    """Stage-1 clustering of the images ``idx`` -> :class:`CosegResult` (refined when ``images``: GrabCut,
    or with ``refiner="torch"`` one batched dense CRF on the descriptors' device)."""
    geoms = [d.geometry for d in descs]
    labels = [np.full(d.grid, -1, np.int64) for d in descs]
    for j, i in enumerate(idx):
        labels[i] = st.labels[j].reshape(descs[i].grid)
    grid_masks = [np.zeros(d.grid, bool) for d in descs]
    for j, i in enumerate(idx):
        grid_masks[i] = st.fg_cells[j].reshape(descs[i].grid)
    reason = None
    if not any(g.any() for g in grid_masks):
        reason = (f"no cluster is salient in enough images: the best has {int(st.votes.max())} of the "
                  f"{st.votes_needed} votes needed; lower thresh={params.get('thresh')} or "
                  f"votes_percentage={params.get('votes_percentage')}")
    if images is not None and refiner == "torch":
        return _assemble(_refine_on_device(descs, grid_masks, images), grid_masks, labels, sal, geoms, st,
                         inliers, sims, reason, params, idx)
    masks, refined = [], []
    for i, (gm, g) in enumerate(zip(grid_masks, geoms)):
        stop_point()
        if not gm.any():
            masks.append(np.zeros(g.orig_size, bool))
            refined.append(False)
            continue
        ok = False
        if images is None:
            masks.append(grid_to_size(gm, g, g.orig_size, mode="nearest").astype(bool))
        else:
            coarse = grid_to_size(gm, g, None, mode="nearest").astype(bool)  # H1 x W1
            coarse, ok = grabcut_refine(resized_rgb(images[i], g), coarse)
            masks.append(resize_mask(coarse, g.orig_size))
        refined.append(ok)
    return _assemble((masks, refined), grid_masks, labels, sal, geoms, st, inliers, sims, reason, params, idx)


def _assemble(masks_refined: tuple[list[np.ndarray], list[bool]], grid_masks: list[np.ndarray],
              labels: list[np.ndarray], sal: list[np.ndarray], geoms: list["Geometry"], st: ForegroundClusters,
              inliers: np.ndarray, sims: np.ndarray | None, reason: str | None, params: dict,
              idx: np.ndarray) -> CosegResult:
    masks, refined = masks_refined
    return CosegResult(masks, grid_masks, labels, sal, geoms, refined, st.elbow.k, st.salient, st.votes,
                       st.votes_needed, inliers, sims, list(st.elbow.objectives),
                       st.elbow.centroids.detach().cpu().numpy(), reason=reason, params=params,
                       fallback=_per_image(st.fallback, idx, len(grid_masks)))


def _refine_on_device(descs: Sequence["ImageDescriptors"], grid_masks: list[np.ndarray],
                      images: Sequence[ImageLike]) -> tuple[list[np.ndarray], list[bool]]:
    """Coarse h x w grid masks -> H0 x W0 masks refined by one batched torch CRF at the load size."""
    geoms = [d.geometry for d in descs]
    todo = [i for i, gm in enumerate(grid_masks) if gm.any()]
    masks = [np.zeros(g.orig_size, bool) for g in geoms]
    if todo:
        device = descs[0].descs.device
        coarse = [torch.from_numpy(grid_to_size(grid_masks[i], geoms[i], None, mode="nearest").astype(bool))
                  for i in todo]
        refined = refine_masks([resized_rgb(images[i], geoms[i]) for i in todo], coarse, device)
        full = to_host([resize_labels(m, geoms[i].orig_size, mode="bilinear") for i, m in zip(todo, refined)])
        for i, m in zip(todo, full):
            masks[i] = m.numpy()
    return masks, [bool(gm.any()) for gm in grid_masks]


def _per_image(flags: np.ndarray | None, idx: np.ndarray, n: int) -> np.ndarray | None:
    if flags is None:
        return None
    out = np.zeros(n, bool)
    out[idx[: len(flags)]] = flags
    return out


def cosegment_with(extractor: "Extractor", images: Sequence[ImageLike], settings: DescriptorSettings | None = None,
                   knobs: CosegKnobs | None = None) -> CosegResult:
    """Co-segment a set of images (paths / PIL / arrays / bytes) with ``extractor``.

    ``settings``: the descriptor settings (None: :func:`vitdense.apps.knobs.settings_for` the task and
    the extractor's model); ``knobs``: :class:`CosegKnobs`, resolved for the extractor's model.
    Returns a :class:`CosegResult` with masks at each original image's resolution.
    """
    settings = settings_for(TASK, extractor) if settings is None else settings.resolve(extractor.spec)
    k = (knobs or CosegKnobs()).resolved(extractor.model_name)
    validate_stage1(k)
    for name, value in (("bin", settings.bin), ("remove_outliers", k.remove_outliers),
                        ("low_res_saliency_maps", k.low_res_saliency_maps), ("refine", k.refine)):
        check_bool(name, value)
    images = as_image_list(images)
    if k.outliers_facet is not None and k.outliers_facet not in FACETS:
        raise ParameterError(f"outliers_facet={k.outliers_facet!r} is unknown: expected None, key, query, value or token")
    pils = [load_image(im) for im in images]
    descs, sal = extract_with_saliency(extractor, pils, load_size=settings.load_size, layer=settings.layer,
                                       facet=settings.facet, bin=settings.bin, stride=settings.stride,
                                       include_cls=k.remove_outliers and k.outliers_facet is None,
                                       low_res_saliency_maps=k.low_res_saliency_maps, batch_size=k.batch_size)
    if k.remove_outliers and k.outliers_facet is not None:
        cls_descs = extractor.extract(pils, layer=extractor.spec.depth - 1, facet=k.outliers_facet,
                                      stride=extractor.spec.patch_size, load_size=settings.load_size,
                                      include_cls=True, batch_size=k.batch_size)
        descs = [dataclasses.replace(d, cls=c.cls) for d, c in zip(descs, cls_descs)]
    return cosegment_descriptors_with(descs, sal, pils, k, extra_params=k.pick("low_res_saliency_maps",
                                                                               "outliers_facet"))


@keyword_signature(positional(("extractor", "'Extractor'", REQUIRED), ("images", "Sequence[ImageLike]", REQUIRED)),
                   settings_parameters(TASK), knob_parameters(CosegKnobs), returns="CosegResult")
def cosegment(extractor: "Extractor", images: Sequence[ImageLike], **options: Any) -> CosegResult:
    """Co-segment a set of images (paths / PIL / arrays / bytes) with ``extractor``:
    :func:`cosegment_with` with the descriptor settings and :class:`CosegKnobs` as keywords.

    ``None`` knobs take :func:`vitdense.defaults.task_defaults` ("cosegmentation") for the extractor's
    model: the official code's for DINO v1, the values measured on real sets of different instances,
    scales and poses for DINOv2 (README); ``stride=None`` is the model's default stride, and a facet
    the table leaves None the model's default facet. Returns a :class:`CosegResult` with masks at
    each original image's resolution.
    """
    given, knobs = split_options(options, CosegKnobs)
    return cosegment_with(extractor, images, settings_for(TASK, extractor, **given), knobs)

"""Whole results -> pictures (results read by attribute; see the compute modules' dataclasses)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vitdense.draw.colors import point_colors
from vitdense.draw.maps import (
    as_rgb,
    heatmap_overlay,
    overlay_mask,
    overlay_parts,
    pca_images,
    top_heatmap,
)
from vitdense.draw.points import default_radius, draw_correspondences, draw_markers
from vitdense.errors import ParameterError

# --------------------------------------------------------------------------------------------
# whole results (read by attribute; see the compute modules' dataclasses)

def draw_cosegmentation(images: Sequence[Any], result: Any, color: Sequence[int] = (255, 40, 40),
                        alpha: float = 0.45) -> list[np.ndarray]:
    """A :class:`~vitdense.apps.cosegmentation.CosegResult` -> one mask overlay per image."""
    if len(images) != len(result.masks):
        raise ParameterError(f"{len(images)} images for a result of {len(result.masks)}")
    return [overlay_mask(im, m, color, alpha) for im, m in zip(images, result.masks)]


def draw_parts(images: Sequence[Any], result: Any, alpha: float = 0.55,
               background: str = "dim") -> list[np.ndarray]:
    """A :class:`~vitdense.apps.parts.PartsResult` -> one part overlay per image
    (part ``p`` has the same colour in every image)."""
    if len(images) != len(result.part_maps):
        raise ParameterError(f"{len(images)} images for a result of {len(result.part_maps)}")
    return [overlay_parts(im, pm, alpha, result.num_parts, background)
            for im, pm in zip(images, result.part_maps)]


def draw_correspondence_result(image1: Any, image2: Any, result: Any, lines: bool = True,
                               radius: int | None = None, separate: bool = False,
                               selected: int | None = None):
    """A :class:`~vitdense.apps.correspondences.Correspondences` -> side-by-side canvas (or two
    images); ``selected``: a pair whose line from A to B is drawn bold."""
    return draw_correspondences(image1, image2, result.points1, result.points2, lines=lines,
                                radius=radius, separate=separate, selected=selected)


def draw_point_match(image1: Any, image2: Any, matches: Sequence[Any], heatmap: bool = True,
                     alpha: float = 0.85, radius: int | None = None,
                     top: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Click-to-correspond: a list of :class:`~vitdense.apps.correspondences.PointMatch` -> the two
    images with marker ``i`` (own colour, number ``i + 1``) at the clicked cell and at its match.

    With ``heatmap`` the top ``top`` share of the last match's similarity map is coloured over its
    target image (:func:`~vitdense.draw.maps.top_heatmap`: the rest of the picture untouched).
    """
    a, b = as_rgb(image1), as_rgb(image2)
    if heatmap and matches:
        last = matches[-1]
        m = last.upsampled_map()
        if last.reverse:
            a = np.asarray(top_heatmap(a, m, top, peak=False, scale=False, alpha=alpha))
        else:
            b = np.asarray(top_heatmap(b, m, top, peak=False, scale=False, alpha=alpha))
    cols = point_colors(len(matches))
    pa = np.array([m.point if m.reverse else m.source_point for m in matches], float).reshape(-1, 2)
    pb = np.array([m.source_point if m.reverse else m.point for m in matches], float).reshape(-1, 2)
    r = radius or default_radius(max(a.shape, b.shape))
    return draw_markers(a, pa, cols, radius=r), draw_markers(b, pb, cols, radius=r)


def draw_transfer(images: Sequence[Any], result: Any, colors: Any = None, radius: int | None = None,
                  heat_point: int | None = None, alpha: float = 0.85, top: float = 0.05) -> list[np.ndarray]:
    """A :class:`~vitdense.apps.transfer.TransferResult` -> every image with the points: the clicked
    cells on the source, their matches on the others (point ``p`` in colour ``p``, numbered from 1).
    ``heat_point``: also colour the top ``top`` share of that point's similarity map under the
    markers (:func:`~vitdense.draw.maps.top_heatmap`)."""
    if len(images) != result.num_images:
        raise ParameterError(f"{len(images)} images for a result of {result.num_images}")
    cols = point_colors(result.num_points) if colors is None else colors
    out = []
    for n, img in enumerate(images):
        base = as_rgb(img)
        if heat_point is not None:
            base = np.asarray(top_heatmap(base, result.heatmaps[n][heat_point], top, alpha=alpha,
                                          geometry=result.geometries[n], peak=False, scale=False))
        out.append(draw_markers(base, result.matches[n], cols, radius=radius))
    return out


def draw_similarity(image_a: Any, image_b: Any, result: Any, alpha: float = 0.55,
                    cmap: str | None = None, shared_scale: bool = True,
                    top: float | None = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """A :class:`~vitdense.apps.similarity.SimilarityResult` -> (A, B) with the similarity maps over
    them, the query marked (white ring, unnumbered) in A and the top-n patches numbered.

    ``top``: only that top share of each map coloured, contrast stretched per map, with a colour
    scale (:func:`~vitdense.draw.maps.top_heatmap`, ``cmap`` default "heat"); None: the whole map
    blended with opacity ``alpha`` (``cmap`` default "inferno"), on one colour scale for both
    maps (their joint min..max) with ``shared_scale``, else per map.
    """
    a, b = as_rgb(image_a), as_rgb(image_b)
    ma, mb = result.upsampled_maps()
    if top is not None:
        a = top_heatmap(a, ma, top, cmap or "heat", peak=False)
        b = top_heatmap(b, mb, top, cmap or "heat", peak=False)
    else:
        lo = hi = None
        if shared_scale:
            lo = float(min(np.nanmin(ma), np.nanmin(mb)))
            hi = float(max(np.nanmax(ma), np.nanmax(mb)))
        a = heatmap_overlay(a, ma, alpha, cmap or "inferno", lo, hi)
        b = heatmap_overlay(b, mb, alpha, cmap or "inferno", lo, hi)
    r = default_radius(max(a.shape, b.shape))
    a = draw_markers(a, result.top_a_points, radius=r)
    b = draw_markers(b, result.top_b_points, radius=r)
    if result.query_point is not None:
        a = draw_markers(a, [result.query_point], [(255, 255, 255)], numbered=False,
                         radius=max(3, r // 2))
    return a, b


def draw_pca(result: Any, channels: Sequence[int] = (0, 1, 2),
             order: str = "nearest") -> list[np.ndarray]:
    """A :class:`~vitdense.apps.pca.PCAResult` -> RGB images (components ``channels``) at each
    original image size (``order``: "nearest" keeps the patch look, "bilinear" smooths)."""
    return pca_images(result.rgb(channels), geometries=result.geometries, order=order)


def draw_video_parts(frames: Sequence[Any], result: Any, alpha: float = 0.55,
                     background: str = "dim", mode: str = "bilinear",
                     label_maps: Sequence[Any] | None = None) -> list[np.ndarray]:
    """A :class:`~vitdense.apps.video.VideoPartsResult` -> annotated frames (part colours fixed
    across frames); ``mode`` is passed to ``result.label_map``.

    ``label_maps``: the frames' part maps when the caller already has them (e.g. to save them
    too), so that ``result.label_map`` is not computed twice; ``mode`` is then unused.
    """
    if len(frames) != result.num_frames:
        raise ParameterError(f"{len(frames)} frames for a result of {result.num_frames}")
    if label_maps is None:
        label_maps = [result.label_map(i, mode) for i in range(result.num_frames)]
    elif len(label_maps) != len(frames):
        raise ParameterError(f"{len(label_maps)} label maps for {len(frames)} frames")
    return [overlay_parts(f, m, alpha, result.num_parts, background)
            for f, m in zip(frames, label_maps)]

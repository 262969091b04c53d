"""Keypoint transfer across a set: points clicked on one image, matched on every other image.

DIFT's demo answers one click on a source image with its match and a heat map on every target
image; here each target gets a :class:`~vitdense.apps.correspondences.PointMatcher` (the pair matcher:
the same cell matching, the same refinement, the same mutual best-buddy test), built once from the
cached descriptors, so a click costs ``N - 1`` queries and never a network pass.

:func:`transfer_points` extracts the set; :func:`transfer_points_descriptors` works from cached
descriptors; :class:`SetMatcher` answers clicks one at a time (the web demo).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vitdense.apps.correspondences import PointMatch, PointMatcher
from vitdense.defaults import task_defaults
from vitdense.errors import ParameterError, check_int
from vitdense.features.descriptors import check_descriptor_set
from vitdense.features.images import ImageLike, as_image_list
from vitdense.ops.clustering import l2_normalize

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = ["TransferResult", "SetMatcher", "transfer_points", "transfer_points_descriptors", "source_index"]


@dataclass
class TransferResult:
    """Points of the source image and their matches on every image of the set.

    Shapes: ``N`` images, ``P`` points; coordinates ``(y, x)`` in each image's original pixels.
    The source's own row holds the clicked cells' centres, similarity 1 and ``mutual`` True.
    """

    source_index: int
    points: np.ndarray            # P x 2, the points as given (source pixels)
    matches: np.ndarray           # N x P x 2, the matched cell centres (refined as the pair matcher)
    similarity: np.ndarray        # N x P cosine similarity of the source cell and its match
    mutual: np.ndarray            # N x P bool: the match's nearest neighbour on the source is the clicked cell
    heatmaps: list[np.ndarray]    # N arrays P x h_n x w_n: similarity of each point's cell to every cell
    geometries: list["Geometry"]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.geometries)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def heatmap(self, image: int, point: int, mode: str = "bilinear") -> np.ndarray:
        """Point ``point``'s similarity over image ``image`` at its original size (H x W float32)."""
        return np.asarray(self.geometries[image].upsample(self.heatmaps[image][point], mode=mode), np.float32)

    def to_json(self, names: Sequence[str] | None = None) -> dict:
        """Every point and its match on every image ("x"/"y" in each image's pixels)."""
        names = list(names) if names is not None else [f"image_{i}" for i in range(self.num_images)]
        points = []
        for p in range(self.num_points):
            points.append({"id": p + 1, "source": {"x": float(self.points[p, 1]), "y": float(self.points[p, 0])},
                           "matches": [{"image": names[n], "x": round(float(self.matches[n, p, 1]), 2),
                                        "y": round(float(self.matches[n, p, 0]), 2),
                                        "similarity": round(float(self.similarity[n, p]), 4),
                                        "mutual": bool(self.mutual[n, p])}
                                       for n in range(self.num_images) if n != self.source_index]})
        return {"source": names[self.source_index], "source_index": self.source_index,
                "images": names, "coordinates": "pixels of each image as given (x right, y down)",
                "points": points}


def source_index(names: Sequence[str | Path], source: str | int) -> int:
    """Index of ``source`` (a file name, a stem or an index) among ``names``; one clear error else."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return check_int("source_index", source, 0, len(names) - 1)
    wanted = str(source)
    for key in (lambda n: Path(n).name, lambda n: Path(n).stem):
        hits = [i for i, n in enumerate(names) if key(str(n)) == Path(wanted).name]
        if len(hits) == 1:
            return hits[0]
    shown = ", ".join(Path(str(n)).name for n in names[:10]) + (", ..." if len(names) > 10 else "")
    raise ParameterError(f"the source image {wanted!r} is not in the set (images: {shown})")


def _check_points(points: Any, geometry: "Geometry") -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ParameterError("points must be one or more (y, x) pairs")
    h, w = geometry.orig_size
    for y, x in pts:
        if not (np.isfinite(y) and np.isfinite(x) and 0 <= y < h and 0 <= x < w):
            raise ParameterError(f"the point (x={x:g}, y={y:g}) is outside the source image "
                                 f"({w} x {h} pixels)")
    return pts


class SetMatcher:
    """Click-to-correspond from one source image to every other image of a set.

    Builds one :class:`PointMatcher` per target once (normalisation and best-buddy structure);
    :meth:`query` then answers a click with ``N - 1`` matrix-vector products.
    """

    def __init__(self, descs: Sequence["ImageDescriptors"], source_index: int, chunk: int | None = None):
        descs = list(descs)
        if len(descs) < 2:
            raise ParameterError(f"a set of {len(descs)} image(s) has nothing to transfer to: give at least 2 images")
        check_descriptor_set(descs)
        self.source_index = check_int("source_index", source_index, 0, len(descs) - 1)
        self.descs = descs
        src = descs[self.source_index]
        self.matchers = {t: PointMatcher(src, d, chunk=chunk) for t, d in enumerate(descs) if t != self.source_index}

    def query(self, y: float, x: float) -> dict[int, PointMatch]:
        """The match of pixel ``(y, x)`` of the source on every target, by image index."""
        _check_points([(y, x)], self.descs[self.source_index].geometry)
        return {t: m.query(float(y), float(x)) for t, m in self.matchers.items()}


def transfer_points_descriptors(descs: Sequence["ImageDescriptors"], source_index: int, points: Any,
                                matcher: SetMatcher | None = None) -> TransferResult:
    """Transfer ``points`` (P x 2, (y, x) source pixels) of image ``source_index`` to every image.

    ``matcher``: a :class:`SetMatcher` already built for these descriptors and source (reused).
    """
    descs = list(descs)
    if len(descs) < 2:
        raise ParameterError(f"a set of {len(descs)} image(s) has nothing to transfer to: give at least 2 images")
    matcher = matcher if matcher is not None else SetMatcher(descs, source_index)
    s = matcher.source_index
    src_geo = descs[s].geometry
    pts = _check_points(points, src_geo)
    src = l2_normalize(descs[s].descs.detach().float())
    n, p = len(descs), pts.shape[0]
    matches = np.zeros((n, p, 2))
    sim = np.ones((n, p), np.float32)
    mutual = np.ones((n, p), bool)
    heat = [np.zeros((p, *d.grid), np.float32) for d in descs]
    for k, (y, x) in enumerate(pts):
        cell = src_geo.pixel_to_cell(float(y), float(x))
        matches[s, k] = src_geo.cell_to_pixel(cell)
        for t, m in matcher.query(float(y), float(x)).items():
            matches[t, k] = m.point
            sim[t, k] = m.similarity
            mutual[t, k] = m.is_best_buddy
            heat[t][k] = m.similarity_map
        heat[s][k] = (src @ src[cell]).reshape(tuple(descs[s].grid)).float().cpu().numpy()  # self-similarity
    params = {**dict(descs[s].params or {}), "source_index": s, "num_points": p}
    return TransferResult(s, pts, matches, sim, mutual, heat, [d.geometry for d in descs], params)


def transfer_points(extractor: "Extractor", images: ImageLike | Sequence[ImageLike], source_index: int,
                    points: Any, *, load_size: int | None = 224, layer: int | None = None, facet: str | None = None,
                    bin: bool | None = None, hierarchy: int = 2, stride: int | None = None,
                    batch_size: int = 8, flip: bool | None = None) -> TransferResult:
    """Extract the set (descriptor options as :func:`vitdense.apps.correspondences.find_correspondences`:
    ``layer=None`` / ``bin=None`` / ``flip=None`` are the correspondences row of
    :mod:`vitdense.defaults` for the model, then the model's default) and transfer ``points`` of
    image ``source_index``. ``flip``: every target is also described mirrored and the orientation
    that fits the source better is kept (:func:`vitdense.ops.mirror.choose_orientation`)."""
    images = as_image_list(images)
    if len(images) < 2:
        raise ParameterError(f"a set of {len(images)} image(s) has nothing to transfer to: give at least 2 images")
    check_int("source_index", source_index, 0, len(images) - 1)
    table = task_defaults("correspondences", extractor.model_name)
    layer = table["layer"] if layer is None else layer
    if bin is None:
        bin = extractor.spec.default_bin if table.get("bin") is None else table["bin"]
    knobs = dict(layer=layer, facet=facet, stride=stride, load_size=load_size, bin=bin, hierarchy=hierarchy,
                 batch_size=batch_size)
    descs = extractor.extract(images, **knobs)
    if table["flip"] if flip is None else flip:
        from vitdense.features.images import load_image
        from vitdense.ops.mirror import choose_orientation
        targets = [t for t in range(len(images)) if t != source_index]
        mirrored = extractor.extract([np.asarray(load_image(images[t]))[:, ::-1].copy() for t in targets], **knobs)
        for t, m in zip(targets, mirrored):
            descs[t] = choose_orientation(descs[source_index], descs[t], m)[0]
    return transfer_points_descriptors(descs, source_index, points)

"""The registry's entries: one block per application (see :mod:`vitdense.apps.registry`).

Each block is the application's knobs (names, types, ranges, help; defaults come from
:mod:`vitdense.defaults` or the library's signatures), its exporter (the files of a result, one
layout for the command line's folders and the web demo's zips) and its one-line summary. Adding an
application: write its module and its test, then add a block here.

Export entries map a relative file name to a uint8 array (PNG), :class:`vitdense.export.Png`
(encoded PNG bytes), a dict/list (JSON), or bytes; :func:`vitdense.export.write_entries` /
:func:`vitdense.export.zip_entries` write them.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vitdense import draw
from vitdense.apps.correspondences import find_correspondences, find_correspondences_descriptors
from vitdense.apps.cosegmentation import cosegment, cosegment_descriptors
from vitdense.apps.parts import part_cosegment, part_cosegment_descriptors
from vitdense.apps.pca import pca, pca_descriptors
from vitdense.apps.registry import APPS, App, Inputs, Knob, get_app, register_app  # noqa: F401 (APPS, get_app re-exported)
from vitdense.apps.similarity import inspect_similarity, inspect_similarity_descriptors
from vitdense.apps.transfer import source_index, transfer_points, transfer_points_descriptors
from vitdense.apps.video import read_video, video_parts, video_parts_descriptors, write_video
from vitdense.features.descriptors import FACETS
from vitdense.ops.crf import CRF_DEFAULTS
from vitdense.ops.refine import REFINERS
from vitdense.ops.voting import THRESH_MODES, VOTE_MODES

# -- knobs shared by several applications (described once) ----------------------------------------
ELBOW = Knob("elbow", float, "elbow coefficient that sets the number of clusters: k-means stops adding "
             "clusters when the error drops by less than this ratio", 0.8, 0.999, 0.001, web=True)
THRESH = Knob("thresh", float, "saliency threshold of a foreground vote: an image votes for a cluster "
              "whose mean saliency exceeds this", 0.0, 0.5, 0.005, web=True)
VOTES = Knob("votes_percentage", float, "percentage of images that must vote for a salient cluster",
             0, 100, 5, web=True)
SAMPLE_INTERVAL = Knob("sample_interval", int, "cluster every n-th descriptor", 1)
LOW_RES = Knob("low_res_saliency_maps", bool, "saliency from a half-size, stride-patch pass")
MAX_CLUSTERS = Knob("max_clusters", int, "largest k tried by the elbow rule", 1)
N_INIT = Knob("n_init", int, "k-means restarts", 1)
MAX_ITER = Knob("max_iter", int, "k-means iterations", 1)
SEED = Knob("seed", int, "k-means (and augmentation) seed")
BATCH = Knob("batch_size", int, "images per network batch", 1)
KMEANS = (MAX_CLUSTERS, N_INIT, MAX_ITER, SEED, BATCH)
NUM_PARTS = Knob("num_parts", int, "number of parts (after a run, re-clustering reuses the cached "
                 "descriptors: no network pass)", 1, 10, 1, web=True)
CRF = Knob("crf", bool, "dense CRF smoothing of the part maps along image edges", web=True)
CRF_PARAMS = Knob("crf_params", "crf", "dense CRF " + ", ".join(CRF_DEFAULTS))
PART_KNOBS = (NUM_PARTS, THRESH, ELBOW, VOTES, SAMPLE_INTERVAL, LOW_RES,
              Knob("num_crop_augmentations", int, "random crop augmentations per image (and per mirror image)", 0),
              Knob("three_stages", bool, "third clustering stage that drops parts absent from some image"),
              Knob("elbow_second_stage", float, "elbow coefficient of the second stage (three stages)", 0, 1),
              CRF, *KMEANS, CRF_PARAMS)
#: the robust votes of vitdense.ops.voting (defaults per model in vitdense/defaults.py)
VOTE_KNOBS = (Knob("thresh_mode", "choice", "vote threshold: absolute (the paper's) or relative (each image's "
                   "Otsu threshold of its saliency)", choices=THRESH_MODES),
              Knob("vote_mode", "choice", "votes counted over all images (the paper's) or over the images where "
                   "a cluster is present", choices=VOTE_MODES),
              Knob("fallback", bool, "an image left empty gets its own salient clusters unless the set's "
                   "measure calls it an outlier"))
BALANCED_PARTS = Knob("balanced_parts", bool, "every image gives the part clustering as many descriptors "
                      "(a small object weighs as much as a close-up)")
REFINER = Knob("refiner", "choice", "where the refinement runs: auto (the batched torch dense CRF on CUDA, the "
               "CPU libraries elsewhere), cpu (GrabCut / pydensecrf) or torch", choices=REFINERS)
FLIP = Knob("flip", bool, "test-time mirroring: each target image is also described mirrored and the "
            "orientation that fits better is kept")


def _fraction(mask: np.ndarray) -> float:
    return float(np.asarray(mask, bool).mean())


def _size(img: np.ndarray) -> dict:
    return {"width": int(img.shape[1]), "height": int(img.shape[0])}


# -- co-segmentation ------------------------------------------------------------------------------
def export_cosegmentation(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None
                          ) -> dict[str, Any]:
    """masks/<stem>.png (0/255 at the image's size), overlays/, cutouts/, result.json."""
    entries: dict[str, Any] = {}
    rows = []
    for name, stem, img, mask, refined, inlier in zip(inputs.names, stems, inputs.images, result.masks,
                                                       result.refined, result.inliers):
        m = np.asarray(mask, bool)
        row = {"file": name, **_size(img), "mask": f"masks/{stem}.png", "overlay": f"overlays/{stem}.png",
               "cutout": f"cutouts/{stem}.png", "foreground_fraction": _fraction(m),
               "refined": bool(refined), "inlier": bool(inlier)}
        entries[row["mask"]] = m.astype(np.uint8) * 255
        entries[row["overlay"]] = draw.overlay_mask(img, m)
        entries[row["cutout"]] = draw.cutout(img, m)
        rows.append(row)
    entries["result.json"] = {**(meta or {}), "num_images": len(rows), "images": rows,
                              "num_clusters": int(result.num_clusters),
                              "salient_clusters": result.salient_clusters, "votes": result.votes,
                              "votes_needed": int(result.votes_needed), "reason": result.reason,
                              "params": result.params}
    return entries


def describe_cosegmentation(result: Any) -> str:
    fg = np.mean([np.asarray(m, bool).mean() for m in result.masks]) if len(result.masks) else 0.0
    return (f"{len(result.masks)} image(s), {result.num_clusters} clusters, mean foreground {fg:.1%}"
            + (f" ({result.reason})" if result.reason else ""))


register_app(App(
    id="cosegmentation", task="cosegmentation", title="Co-segmentation",
    summary="co-segmentation: a foreground mask per image of each set",
    description="Co-segment every set of images (paper Sec. 4.1).",
    input="set", run=cosegment, run_descriptors=cosegment_descriptors,
    export=export_cosegmentation, describe=describe_cosegmentation, min_images=2,
    api_names=("cosegmentation", "coseg_maps"),
    knobs=(THRESH, ELBOW, VOTES, SAMPLE_INTERVAL,
           Knob("remove_outliers", bool, "drop images whose CLS descriptor is far from the set's mean"),
           Knob("outliers_thresh", float, "CLS cosine similarity below which an image is an outlier", -1, 1),
           Knob("outliers_facet", "choice", "facet of the CLS descriptors compared by remove_outliers "
                "(automatic: the descriptors' own)", choices=FACETS),
           LOW_RES, Knob("refine", bool, "GrabCut refinement of the masks along image edges", web=True), REFINER,
           *VOTE_KNOBS, *KMEANS)))


# -- part co-segmentation -------------------------------------------------------------------------
def export_parts(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None
                 ) -> dict[str, Any]:
    """label_maps/<stem>.png (0 = background, p = part p), colors/ (RGBA), overlays/, result.json."""
    k = int(result.num_parts)
    entries: dict[str, Any] = {}
    rows = []
    for name, stem, img, pm in zip(inputs.names, stems, inputs.images, result.part_maps):
        pm = np.asarray(pm)
        counts = np.bincount(pm.ravel(), minlength=k + 1)
        row = {"file": name, **_size(img), "parts": f"label_maps/{stem}.png",
               "parts_color": f"colors/{stem}.png", "overlay": f"overlays/{stem}.png",
               "part_fractions": (counts[1:] / pm.size).round(5), "part_pixels": counts[1:],
               "foreground_fraction": _fraction(pm > 0)}
        entries[row["parts"]] = pm.astype(np.uint8)
        entries[row["parts_color"]] = draw.parts_rgba(pm, k)
        entries[row["overlay"]] = draw.overlay_parts(img, pm, num_parts=k)
        rows.append(row)
    entries["result.json"] = {**(meta or {}), "num_images": len(rows), "images": rows, "num_parts": k,
                              "part_fractions": np.round(result.part_fractions, 4),
                              "part_colors": draw.part_colors(max(k, 1))[:k],
                              "label_values": "0 = background, p = part p (1..num_parts)",
                              "crf_applied": result.crf_applied, "notes": list(result.notes or []),
                              "reason": result.reason, "params": result.params}
    return entries


def describe_parts(result: Any) -> str:
    return (f"{len(result.part_maps)} image(s), {result.num_parts} part(s)"
            + (f" ({result.reason})" if result.reason else ""))


register_app(App(
    id="parts", task="parts", title="Part co-segmentation",
    summary="part co-segmentation: common parts across each set",
    description="Part co-segment every set of images (paper Sec. 4.2); the same part has the same "
                "label in every image.",
    input="set", run=part_cosegment, run_descriptors=part_cosegment_descriptors,
    export=export_parts, describe=describe_parts, min_images=2,
    api_names=("parts", "recluster_parts", "part_view", "part_display", "parts_download"),
    api_aliases={"part_cosegmentation": "parts"}, web_first=("num_parts",),
    knobs=(*PART_KNOBS, *VOTE_KNOBS, BALANCED_PARTS, REFINER)))


# -- correspondences ------------------------------------------------------------------------------
def _xy(yx: Sequence[float]) -> dict:
    return {"x": round(float(yx[1]), 2), "y": round(float(yx[0]), 2)}


def export_correspondences(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None,
                           lines: bool = True, pictures: Sequence[Any] | None = None,
                           clicks: Sequence[dict] = (), overview: Any = None) -> dict[str, Any]:
    """correspondences.png (side by side), <stem>_points.png for both images, points.json.

    ``pictures``: the two per-image pictures as already drawn (the web demo's, with its clicks);
    ``overview``: the side-by-side picture as already drawn (arrays or PNG bytes);
    ``clicks``: click records added to points.json as they are.
    """
    im1, im2 = inputs.images
    if pictures is None:
        pictures = draw.draw_correspondence_result(im1, im2, result, separate=True)
    pairs = [{"id": i + 1, "a": _xy(p1), "b": _xy(p2), "point1": p1, "point2": p2,
              "similarity": round(float(s), 4), "saliency": None if not np.isfinite(sal) else round(float(sal), 4)}
             for i, (p1, p2, s, sal) in enumerate(zip(result.points1, result.points2, result.similarity,
                                                       result.saliency))]
    entries: dict[str, Any] = {
        "correspondences.png": draw.draw_correspondence_result(im1, im2, result, lines=lines)
        if overview is None else overview,
        f"{stems[0]}_points.png": pictures[0], f"{stems[1]}_points.png": pictures[1]}
    entries["points.json"] = {**(meta or {}), "image1": inputs.names[0], "image2": inputs.names[1],
                              "image_a": {"name": inputs.names[0], **_size(im1)},
                              "image_b": {"name": inputs.names[1], **_size(im2)},
                              "coordinates": "point1/point2: (y, x); a/b: x right, y down; pixels of the "
                                             "images as given",
                              "points1": result.points1, "points2": result.points2, "pairs": pairs,
                              "clicks": list(clicks), "num_best_buddies": int(result.num_best_buddies),
                              "num_mutual": int(result.num_mutual), "reason": result.reason,
                              "params": result.params}
    return entries


def describe_correspondences(result: Any) -> str:
    return (f"{len(result)} correspondence(s) from {result.num_best_buddies} best buddies"
            + (f" ({result.reason})" if result.reason else ""))


register_app(App(
    id="correspondences", task="correspondences", title="Correspondences",
    summary="point correspondences between the two images of each pair",
    description="Best-buddy correspondences (paper Sec. 4.3); a pair folder holds exactly 2 images. "
                "Points are (y, x) in original pixels; row k of points1 matches row k of points2.",
    input="pair", run=find_correspondences, run_descriptors=find_correspondences_descriptors,
    export=export_correspondences, describe=describe_correspondences, min_images=2, max_images=2,
    api_names=("correspondences", "match_point", "clear_points", "correspondences_download"),
    web_first=("num_pairs",),
    knobs=(Knob("num_pairs", int, "number of correspondences (best buddies are clustered into this many "
                "well-spread pairs)", 1, 50, 1, web=True),
           Knob("thresh", "float_or_none", "saliency threshold of both patches, or 'none' for no "
                "foreground filter", 0.0, 0.5, 0.005, web=True),
           Knob("n_init", "int_or_auto", "k-means restarts or 'auto'"),
           Knob("chunk", int, "rows per similarity block (default automatic)", 1), FLIP,
           Knob("lines", bool, "draw a line per pair in correspondences.png", stage="export"))))


# -- PCA ------------------------------------------------------------------------------------------
def export_pca(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None,
               channels: Sequence[int] = (0, 1, 2), components: bool = True, upsample: str = "nearest",
               pictures: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """pca/<stem>.png (components ``channels`` as RGB), components/<stem>_comp<k>.png, pca.json."""
    rgbs = draw.draw_pca(result, list(channels), order=upsample) if pictures is None else pictures
    entries: dict[str, Any] = {}
    rows = []
    lo = np.min([c.reshape(-1, c.shape[-1]).min(0) for c in result.components], axis=0)
    hi = np.max([c.reshape(-1, c.shape[-1]).max(0) for c in result.components], axis=0)
    for name, stem, rgb, comp, geo in zip(inputs.names, stems, rgbs, result.components, result.geometries):
        row = {"file": name, "pca": f"pca/{stem}.png"}
        entries[row["pca"]] = rgb
        if components:
            up = np.asarray(geo.upsample(comp, mode=upsample))  # H0 x W0 x n
            row["components"] = [f"components/{stem}_comp{k}.png" for k in range(comp.shape[-1])]
            for k, file in enumerate(row["components"]):
                entries[file] = draw.apply_colormap(up[..., k], "viridis", lo[k], hi[k])
        rows.append(row)
    entries["pca.json"] = {**(meta or {}), "images": rows, "channels": list(channels),
                           "explained_variance_ratio": result.explained_variance_ratio,
                           "explained_variance": result.explained_variance, "params": result.params}
    return entries


def describe_pca(result: Any) -> str:
    return (f"{len(result.components)} image(s), explained variance of components "
            + ", ".join(f"{v:.1%}" for v in result.explained_variance_ratio))


register_app(App(
    id="pca", task="pca", title="PCA", summary="PCA of the descriptors of each set, as RGB images",
    description="Joint PCA of the descriptors of the images of each set; components --channels as RGB "
                "at the image size, and each component (viridis, one scale per component over the set).",
    input="set", run=pca, run_descriptors=pca_descriptors, export=export_pca, describe=describe_pca,
    api_names=("pca",),
    knobs=(Knob("n_components", int, "number of principal components", 1),
           Knob("channels", "ints3", "components shown as R, G, B (negative indices count from the last)",
                stage="export"),
           Knob("components", bool, "also save every component as its own image", stage="export"),
           Knob("upsample", "choice", "how the patch maps are brought to the image size",
                choices=("nearest", "bilinear"), stage="export"))))


# -- similarity -----------------------------------------------------------------------------------
def export_similarity(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None,
                      cmap: str = "inferno") -> dict[str, Any]:
    """similarity_a.png, similarity_b.png (maps over A and B, top-n numbered), similarity.json."""
    a, b = inputs.images
    va, vb = draw.draw_similarity(a, b, result, cmap=cmap)
    summary = {**(meta or {}), "image_a": inputs.names[0], "image_b": inputs.names[1],
               "coordinates": "(y, x) original pixels", "query_point": result.query_point,
               "query_cell_point": result.query_cell_point, "query_is_cls": result.is_cls,
               "match_b": result.match_b,
               "top_a": [{"point": p, "similarity": s} for p, s in zip(result.top_a_points, result.top_a_similarity)],
               "top_b": [{"point": p, "similarity": s} for p, s in zip(result.top_b_points, result.top_b_similarity)],
               "params": result.params, "files": {"a": "similarity_a.png", "b": "similarity_b.png"}}
    return {"similarity_a.png": va, "similarity_b.png": vb, "similarity.json": summary}


def describe_similarity(result: Any) -> str:
    """One line of JSON: the query's cell centre and the top patches on A and B."""
    from vitdense.export import dumps
    return dumps({"query_cell_point": result.query_cell_point, "match_b": result.match_b,
                  "top_a": [{"point": p, "similarity": s} for p, s in zip(result.top_a_points, result.top_a_similarity)],
                  "top_b": [{"point": p, "similarity": s} for p, s in zip(result.top_b_points, result.top_b_similarity)]},
                 indent=None)


#: the one point order of the library and the command line: (y, x) in original pixels
POINT_ORDER = "(y, x) original pixels: y down from the top, x right from the left"


def _deprecated_point() -> type:
    """The argparse action of transfer's old ``--point X Y``: appends the point as (y, x) to ``yx``
    and says once on stderr to use ``--yx Y X``."""
    import argparse
    import sys

    class DeprecatedPoint(argparse.Action):
        said = False

        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
            if not self.said:
                print("warning: --point X Y is deprecated: use --yx Y X (the library's point order)", file=sys.stderr)
                self.said = True
            setattr(namespace, "yx", [*(getattr(namespace, "yx", None) or []), (values[1], values[0])])
    return DeprecatedPoint


def _similarity_options(p: Any) -> None:
    q = p.add_mutually_exclusive_group(required=True)
    # --point was always Y X here, the library's order: an alias, no warning
    q.add_argument("--yx", "--point", dest="yx", type=float, nargs=2, metavar=("Y", "X"),
                   help=f"query pixel in A, {POINT_ORDER} (--point: the same)")
    q.add_argument("--cls", action="store_true", help="query A's CLS descriptor instead of a point")


def _similarity_prepare(inputs: Inputs, options: dict) -> dict:
    return {"point": None if options.get("cls") else tuple(options["yx"])}


register_app(App(
    id="similarity", task="similarity", title="Similarity inspector",
    summary="similarity of one point's descriptor to every patch of A and B",
    description="Cosine similarity of the descriptor at --yx Y X of image A (or of A's CLS token with "
                "--cls) to every patch of A and of B (official inspect_similarity.py). Prints the most "
                "similar points as JSON; with --out also writes similarity_a.png, similarity_b.png and "
                "similarity.json.",
    input="images", run=inspect_similarity, run_descriptors=inspect_similarity_descriptors,
    export=export_similarity, describe=describe_similarity,
    min_images=1, max_images=2, api_names=("similarity", "similarity_point"),
    prepare=_similarity_prepare, prepare_options=("yx", "cls"), cli_options=_similarity_options,
    knobs=(Knob("top_n", int, "most similar patches reported per image", 1, 20, 1, web=True),
           Knob("refine", bool, "query the descriptor interpolated at the exact point and answer B "
                "below the cell, as clicks do (off: the query cell and the best cell's centre)"),
           Knob("cmap", "choice", "colormap of the similarity images",
                choices=("inferno", "viridis", "magma", "turbo", "gray"), stage="export"))))


# -- video ----------------------------------------------------------------------------------------
def export_video(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None,
                 format: str = "mp4", alpha: float = 0.55, save_labels: bool = True,
                 quality: int = 8) -> dict[str, Any]:
    """parts.<format> (the annotated clip), label_maps/frame_NNNN.png, result.json."""
    from vitdense.errors import check_range
    check_range("alpha", alpha, 0.0, 1.0)
    frames, fps = inputs.images, inputs.extra.get("fps") or 10.0
    maps = [result.label_map(i) for i in range(result.num_frames)]   # once: drawn and saved
    vis = draw.draw_video_parts(frames, result, alpha=alpha, label_maps=maps)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(vis, Path(tmp) / f"parts.{format}", fps, quality=quality)
        entries: dict[str, Any] = {clip.name: clip.read_bytes()}
    labels = []
    if save_labels:
        digits = max(4, len(str(len(frames))))
        labels = [f"label_maps/frame_{i:0{digits}d}.png" for i in range(len(maps))]
        entries.update({f: m.astype(np.uint8) for f, m in zip(labels, maps)})
    entries["result.json"] = {**(meta or {}), "source": inputs.source, "num_frames": result.num_frames,
                              "fps": fps, "frame_size": list(frames[0].shape[:2]),
                              "sampled_indices": result.sampled_indices, "num_parts": result.num_parts,
                              "part_colors": draw.part_colors(max(result.num_parts, 1))[:result.num_parts],
                              "label_values": "0 = background, p = part p (1..num_parts)",
                              "flicker": {"smoothed": result.flicker(), "unsmoothed": result.flicker(smoothed=False)},
                              "video": clip.name, "labels": labels, "reason": result.reason,
                              "params": result.params}
    return entries


def describe_video(result: Any) -> str:
    return (f"{result.num_frames} frame(s), {result.num_parts} part(s), flicker {result.flicker():.3f} "
            f"(unsmoothed {result.flicker(smoothed=False):.3f})" + (f" ({result.reason})" if result.reason else ""))


register_app(App(
    id="video", task="video", title="Video",
    summary="part co-segmentation of a video, parts propagated to every frame",
    description="Video part co-segmentation: evenly sampled frames are part-co-segmented, every frame is "
                "labelled by nearest part centroid with temporal smoothing. FILE: a video (mp4, mov, avi, "
                "mkv, webm, gif, ...) or a folder of frame images; several FILEs are processed in turn.",
    input="clip", run=video_parts, run_descriptors=video_parts_descriptors, reader=read_video,
    delegates=(part_cosegment,),
    export=export_video, describe=describe_video, api_names=("video",),
    web_first=("num_parts", "num_sampled_frames"),
    knobs=(Knob("max_frames", int, "read at most this many frames", 1, stage="read"),
           Knob("max_side", int, "downscale frames whose longer side exceeds this", 16, stage="read"),
           Knob("step", int, "keep every n-th frame", 1, stage="read"),
           Knob("fps", float, "frame rate (default: the video's; 10 for a folder)", 0, stage="read"),
           Knob("num_sampled_frames", int, "frames that are part-co-segmented (evenly spread; then every "
                "frame is labelled)", 2, 20, 1, web=True),
           Knob("temporal_smoothing", float, "weight of the past in the moving average of the part "
                "similarity maps, in [0, 1); 0 = off", 0, 1),
           Knob("bidirectional", bool, "smooth forwards and backwards (no lag)"),
           *(replace(k, web=False) if k is CRF else k for k in PART_KNOBS),   # no CRF over a clip's frames
           *VOTE_KNOBS, BALANCED_PARTS, REFINER,
           Knob("format", "choice", "annotated video format", choices=("mp4", "gif"), stage="export"),
           Knob("alpha", float, "opacity of the part colours", 0, 1, stage="export"),
           Knob("save_labels", bool, "save every frame's label map as PNG", stage="export"),
           Knob("quality", int, "mp4 quality 0..10", 0, 10, stage="export"))))


# -- keypoint transfer across a set ---------------------------------------------------------------
def export_transfer(result: Any, inputs: Inputs, stems: Sequence[str], meta: dict | None = None,
                    pictures: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """points/<stem>.png (every image with the points: clicked on the source, matched on the others)
    and points.json."""
    if pictures is None:
        pictures = draw.draw_transfer(inputs.images, result)
    entries: dict[str, Any] = {f"points/{stem}.png": pic for stem, pic in zip(stems, pictures)}
    entries["points.json"] = {**(meta or {}), **result.to_json(inputs.names), "params": result.params,
                              "files": [f"points/{stem}.png" for stem in stems]}
    return entries


def describe_transfer(result: Any) -> str:
    mutual = float(np.mean(result.mutual)) if result.mutual.size else 0.0
    return (f"{result.num_points} point(s) of image #{result.source_index + 1} transferred to "
            f"{result.num_images - 1} image(s), {mutual:.0%} mutual")


def _transfer_options(p: Any) -> None:
    p.add_argument("--source", required=True, metavar="IMAGE",
                   help="file name (or stem) of the source image inside each set")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--yx", type=float, nargs=2, action="append", metavar=("Y", "X"),
                   help=f"a point on the source image, {POINT_ORDER}; repeat for more")
    q.add_argument("--point", type=float, nargs=2, metavar=("X", "Y"), action=_deprecated_point(),
                   help="deprecated: a point as X Y (the opposite order of --yx); repeat for more")


def _transfer_prepare(inputs: Inputs, options: dict) -> dict:
    return {"source_index": source_index(inputs.names, options["source"]), "points": list(options["yx"])}


register_app(App(
    id="transfer", task="correspondences", title="Keypoint transfer",
    summary="points clicked on one image, matched on every other image of the set",
    description="Keypoint transfer across a set: each --yx Y X on the --source image is matched on "
                "every other image (best match, refined like the pair matcher; its similarity, whether "
                "it is mutual, and a heat map). Writes OUT/<set>/points.json and points/<image>.png.",
    input="set", run=transfer_points, run_descriptors=transfer_points_descriptors,
    export=export_transfer, describe=describe_transfer, min_images=2,
    api_names=("transfer", "transfer_point", "transfer_clear", "transfer_download"),
    api_aliases={"transfer_extract": "transfer"},
    knobs=(FLIP, BATCH),
    prepare=_transfer_prepare, prepare_options=("source", "yx"), cli_options=_transfer_options))

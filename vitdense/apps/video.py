"""Video part co-segmentation: a clip treated as an image set, parts propagated to every frame.

1. :func:`read_video` decodes a video file (ffmpeg via ``imageio-ffmpeg``, which ships its own
   binary; GIFs via Pillow) or a folder of frames into RGB arrays, with the frame rate;
2. :func:`video_parts` samples ``num_sampled_frames`` frames evenly, runs part co-segmentation
   (:func:`vitdense.apps.parts.part_cosegment_descriptors`) on them, then labels EVERY
   frame by nearest centroid: for each cell the similarity ``-|d - c|^2`` (L2-normalised
   descriptors) to every part centroid, and to the nearest background centroid, as in the
   official code's final assignment. These per-label similarity maps are smoothed over time with
   an exponential moving average (``temporal_smoothing`` = the weight of the past; run forwards
   and backwards and averaged when ``bidirectional``, so there is no lag) before the argmax, so
   part colours do not flicker;
3. :func:`write_video` writes the annotated frames (``vitdense.draw.draw_video_parts``) as mp4 /
   other ffmpeg formats, or an animated GIF, by the file suffix.

Label maps follow :class:`~vitdense.apps.parts.PartsResult`: ``0`` = background,
``1..K`` = parts (part p is the same part in every frame).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from vitdense.apps.knobs import settings_for
from vitdense.errors import ImageError, ParameterError, check_range
from vitdense.features.images import IMAGE_SUFFIXES, list_images, load_image
from vitdense.ops.clustering import l2_normalize
from vitdense.ops.foreground import extract_with_saliency, part_unaries

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = ["VIDEO_SUFFIXES", "VideoPartsResult", "read_video", "write_video", "video_parts",
           "video_parts_descriptors", "sample_indices", "label_flicker", "temporal_ema"]

#: suffixes read / written through ffmpeg (plus ``.gif`` through Pillow)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
DEFAULT_FOLDER_FPS = 10.0  # frame rate assumed for a folder of frames


# ---------------------------------------------------------------------------------------------
# reading and writing
# ---------------------------------------------------------------------------------------------
def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _shrink(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (area-preserving LANCZOS) so that the longer side is at most ``max_side``."""
    if max_side is None:
        return frame
    h, w = frame.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return frame
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


def read_video(path: str | os.PathLike, max_frames: int | None = None, max_side: int | None = None,
               step: int = 1, fps: float | None = None) -> tuple[list[np.ndarray], float]:
    """Decode a video file or a folder of frame images into RGB frames.

    path: a video (``VIDEO_SUFFIXES``; anything ffmpeg reads) or a folder of images (natural sort
    order: ``frame2.png`` before ``frame10.png``). ``step`` keeps every ``step``-th frame;
    ``max_frames`` stops after that many kept frames; ``max_side`` downscales frames whose longer
    side exceeds it. ``fps`` overrides the frame rate (a folder's default is 10).
    Returns ``(frames, fps)``: H x W x 3 uint8 arrays, and the frame rate of the kept frames
    (source rate / ``step``). Raises :class:`ImageError` for missing, unreadable or empty input.
    """
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ParameterError(f"step={step!r} is out of range: expected an integer >= 1")
    if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 1):
        raise ParameterError(f"max_frames={max_frames!r} is out of range: expected an integer >= 1 or None")
    if max_side is not None:
        check_range("max_side", max_side, 16)
    if fps is not None:
        check_range("fps", fps, 0.0, None, low_inclusive=False)
    p = Path(path)
    if p.is_dir():
        files = sorted(list_images(p), key=_natural_key)[::step]
        if max_frames is not None:
            files = files[:max_frames]
        if not files:
            raise ImageError(f"{p}: no frame images in this folder (expected {', '.join(IMAGE_SUFFIXES)})")
        frames = [_shrink(np.asarray(load_image(f)), max_side) for f in files]
        src_fps = DEFAULT_FOLDER_FPS
    elif p.is_file():
        frames, src_fps = _decode(p, max_frames, max_side, step)
    else:
        raise ImageError(f"{p}: no such file or folder")
    if not frames:
        raise ImageError(f"{p}: the video has no frames")
    out_fps = float(fps) if fps is not None else src_fps / step
    return frames, out_fps


def _decode(p: Path, max_frames: int | None, max_side: int | None,
            step: int) -> tuple[list[np.ndarray], float]:
    """Frames of a video file (every ``step``-th, at most ``max_frames``) and the source fps."""
    import imageio.v2 as iio2

    frames: list[np.ndarray] = []
    try:
        if p.suffix.lower() == ".gif":
            reader = iio2.get_reader(p, mode="I")  # Pillow
        else:
            reader = iio2.get_reader(p, format="FFMPEG")
        with reader:
            meta = reader.get_meta_data()
            if p.suffix.lower() == ".gif":
                dur = float(meta.get("duration") or 100.0)  # ms per frame
                src_fps = 1000.0 / dur if dur > 0 else DEFAULT_FOLDER_FPS
            else:
                src_fps = float(meta.get("fps") or 0.0) or DEFAULT_FOLDER_FPS
            for i, frame in enumerate(reader):  # streamed: only kept frames stay in memory
                if i % step:
                    continue
                frames.append(_shrink(np.asarray(load_image(frame)), max_side))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except ImageError:
        raise
    except Exception as err:  # imageio / ffmpeg raise many kinds (OSError, RuntimeError, ...)
        msg = str(err).strip().splitlines()
        raise ImageError(f"{p.name}: not a readable video ({type(err).__name__}"
                         f"{': ' + msg[0][:120] if msg else ''})") from err
    return frames, src_fps


def write_video(frames: Sequence[np.ndarray] | Iterable[np.ndarray], path: str | os.PathLike,
                fps: float = DEFAULT_FOLDER_FPS, quality: int = 8) -> Path:
    """Write RGB frames (H x W x 3 uint8, all the same size) to ``path``.

    ``.gif``: animated GIF (Pillow, looping); any other suffix in :data:`VIDEO_SUFFIXES` (e.g.
    ``.mp4``): H.264 via ffmpeg (odd sizes are padded by one pixel, as yuv420p needs even sizes).
    A folder path (no suffix) receives numbered PNG frames. ``quality``: ffmpeg's 0..10.
    """
    check_range("fps", fps, 0.0, None, low_inclusive=False)
    check_range("quality", quality, 0, 10)
    frames = [np.asarray(load_image(f)) for f in frames]
    if not frames:
        raise ParameterError("no frames to write")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ParameterError(f"frames differ in size {sorted(shapes)}: give frames of one size")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix and suffix not in VIDEO_SUFFIXES:
        raise ParameterError(f"{p.name}: unknown video suffix {suffix!r}: expected one of "
                             f"{', '.join(VIDEO_SUFFIXES)} (or a folder for PNG frames)")
    p.parent.mkdir(parents=True, exist_ok=True)
    if not suffix:
        p.mkdir(parents=True, exist_ok=True)
        digits = max(4, len(str(len(frames))))
        for i, f in enumerate(frames):
            Image.fromarray(f).save(p / f"frame_{i:0{digits}d}.png")
        return p
    if suffix == ".gif":
        pils = [Image.fromarray(f) for f in frames]
        pils[0].save(p, save_all=True, append_images=pils[1:], loop=0,
                     duration=max(20, round(1000.0 / fps)), disposal=2)
        return p
    import imageio.v2 as iio2

    h, w = frames[0].shape[:2]
    ph, pw = h % 2, w % 2
    writer = iio2.get_writer(p, format="FFMPEG", fps=float(fps), codec="libx264", quality=quality,
                             pixelformat="yuv420p", macro_block_size=1)
    with writer:
        for f in frames:
            if ph or pw:
                f = np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge")
            writer.append_data(f)
    return p


# ---------------------------------------------------------------------------------------------
# temporal helpers
# ---------------------------------------------------------------------------------------------
def sample_indices(num_frames: int, num_samples: int) -> np.ndarray:
    """``min(num_samples, num_frames)`` frame indices spread evenly over ``[0, num_frames)``
    (first and last included), increasing, unique."""
    if num_frames < 1:
        raise ParameterError("no frames to sample from")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ParameterError(f"num_sampled_frames={num_samples!r} is out of range: expected an integer >= 1")
    k = min(int(num_samples), num_frames)
    if k == 1:
        return np.array([num_frames // 2], np.int64)
    return np.unique(np.round(np.linspace(0, num_frames - 1, k)).astype(np.int64))


def temporal_ema(scores: torch.Tensor, alpha: float, bidirectional: bool = True) -> torch.Tensor:
    """Exponential moving average over the first (time) axis of ``scores`` (N x ...).

    ``s_t = alpha * s_{t-1} + (1 - alpha) * x_t`` (``s_0 = x_0``); ``alpha = 0`` returns the input.
    ``bidirectional``: mean of the forward and the backward pass (no temporal lag).
    """
    check_range("temporal_smoothing", alpha, 0.0, 1.0, high_inclusive=False)
    if alpha == 0.0 or scores.shape[0] < 2:
        return scores.clone()

    def run(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        acc = x[0]
        out[0] = acc
        for t in range(1, x.shape[0]):  # a recursion over frames; each step is a whole-map op
            acc = alpha * acc + (1.0 - alpha) * x[t]
            out[t] = acc
        return out

    fwd = run(scores)
    if not bidirectional:
        return fwd
    return 0.5 * (fwd + run(scores.flip(0)).flip(0))


def label_flicker(labels: np.ndarray | Sequence[np.ndarray]) -> float:
    """Mean fraction of cells whose label changes between consecutive frames (N x h x w)."""
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ParameterError(f"labels has shape {lab.shape}: expected N x h x w")
    if lab.shape[0] < 2:
        return 0.0
    return float((lab[1:] != lab[:-1]).mean())


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
@dataclass
class VideoPartsResult:
    """Part labels of every frame of a clip (N frames of one size, K parts).

    labels: N x h x w int64 grid part maps after temporal smoothing (0 = background, 1..K = parts,
    the :class:`~vitdense.apps.parts.PartsResult` convention: part p is the same part
    in every frame). scores: N x h x w x (K + 1) float32 smoothed similarities ``-|d - c|^2``
    (channel 0 the nearest background centroid, channel p part p); ``label_map`` upsamples them
    for smooth part boundaries. raw_labels: N x h x w int64, the labels without smoothing.
    sampled_indices: the frames that were part-co-segmented. part_centroids: K x D (row p - 1 =
    part p), bg_centroids: B x D (L2-normalised descriptor space). geometry: the frames' grid
    geometry. fps: frame rate (None when unknown). parts: the sampled frames' PartsResult.
    params: every knob.
    """

    labels: np.ndarray
    scores: np.ndarray
    raw_labels: np.ndarray
    sampled_indices: np.ndarray
    part_centroids: np.ndarray
    bg_centroids: np.ndarray
    geometry: "Geometry"
    fps: float | None
    parts: Any = None
    params: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_parts(self) -> int:
        return int(self.part_centroids.shape[0])

    def label_map(self, index: int, mode: str = "bilinear") -> np.ndarray:
        """Frame ``index``'s part map at the frame's pixel size: H0 x W0 int64 (0 = background).

        ``"bilinear"`` upsamples the smoothed score maps, then takes the argmax (smooth part
        boundaries); ``"nearest"`` repeats the grid labels.
        """
        if not isinstance(index, (int, np.integer)) or not -self.num_frames <= index < self.num_frames:
            raise ParameterError(f"frame index {index!r} is out of range for {self.num_frames} frames")
        if mode == "nearest":
            return np.asarray(self.geometry.upsample(self.labels[index], mode="nearest")).astype(np.int64)
        if mode != "bilinear":
            raise ParameterError(f"mode={mode!r}: expected 'nearest' or 'bilinear'")
        up = np.asarray(self.geometry.upsample(self.scores[index], mode="bilinear"))  # H0 x W0 x (K+1)
        return up.argmax(axis=-1).astype(np.int64)

    @property
    def reason(self) -> str | None:
        """Why no frame has any part (from the part co-segmentation), else None."""
        return getattr(self.parts, "reason", None) if self.num_parts == 0 or not self.labels.any() else None

    def flicker(self, smoothed: bool = True) -> float:
        """:func:`label_flicker` of the smoothed (or raw) grid labels."""
        return label_flicker(self.labels if smoothed else self.raw_labels)


# ---------------------------------------------------------------------------------------------
# computation
# ---------------------------------------------------------------------------------------------
def _frame_scores(d: "ImageDescriptors", parts: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """T x (1 + K) similarities ``-|x - c|^2`` of a frame's L2-normalised descriptors ``x``:
    [nearest background centroid, each part] (the part co-segmentation's own unaries, negated)."""
    return -part_unaries(l2_normalize(d.descs.detach().float().cpu()), parts, bg)


def _centroids(parts_result: Any, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Part and background centroids (L2-normalised space, float32, CPU) of a PartsResult: the very
    ones its grid part maps were computed with."""
    parts = torch.as_tensor(np.asarray(parts_result.part_centroids), dtype=torch.float32).reshape(-1, dim)
    bg = torch.as_tensor(np.asarray(parts_result.bg_centroids), dtype=torch.float32).reshape(-1, dim)
    return parts, bg


def video_parts_descriptors(descs: Iterable["ImageDescriptors"], parts_result: Any,
                            sampled_indices: Sequence[int], *, temporal_smoothing: float = 0.6,
                            bidirectional: bool = True, fps: float | None = None,
                            extra_params: dict | None = None) -> VideoPartsResult:
    """Propagate a PartsResult of the sampled frames to every frame's descriptors (no network).

    descs: one ImageDescriptors per frame (one grid), in frame order; any iterable, consumed one at a
    time (only the score maps are kept, so a generator that extracts frames lazily works).
    ``parts_result`` co-segmented the frames ``sampled_indices`` (in that order). See the module
    docstring for the labelling.
    """
    check_range("temporal_smoothing", temporal_smoothing, 0.0, 1.0, high_inclusive=False)
    idx = np.asarray(sampled_indices, np.int64)
    rows: list[torch.Tensor] = []
    first = None
    parts = bg = None
    for i, d in enumerate(descs):
        if first is None:
            first = d
            parts, bg = _centroids(parts_result, int(d.descs.shape[1]))
        elif tuple(d.grid) != tuple(first.grid):
            raise ImageError(f"frame {i} has descriptor grid {tuple(d.grid)} but frame 0 has "
                             f"{tuple(first.grid)}: give frames of one size")
        rows.append(_frame_scores(d, parts, bg).reshape(*first.grid, -1))
    if first is None:
        raise ParameterError("no frames")
    if idx.size == 0 or idx.min() < 0 or idx.max() >= len(rows):
        raise ParameterError(f"sampled_indices must lie in [0, {len(rows)})")
    raw = torch.stack(rows)
    smooth = temporal_ema(raw, float(temporal_smoothing), bool(bidirectional))
    params = dict(temporal_smoothing=float(temporal_smoothing), bidirectional=bool(bidirectional),
                  num_frames=len(rows), sampled_indices=[int(i) for i in idx],
                  descriptors=dict(first.params), **(extra_params or {}))
    return VideoPartsResult(labels=smooth.argmax(dim=-1).numpy().astype(np.int64),
                            scores=smooth.numpy().astype(np.float32),
                            raw_labels=raw.argmax(dim=-1).numpy().astype(np.int64), sampled_indices=idx,
                            part_centroids=parts.numpy(), bg_centroids=bg.numpy(), geometry=first.geometry,
                            fps=fps, parts=parts_result, params=params)


def _load_frames(frames: Sequence[Any], indices: Iterable[int], size: tuple[int, int] | None) -> list[Image.Image]:
    """Frames ``indices`` as RGB PIL images, all of ``size`` (W, H; None: the first one's)."""
    out = []
    for i in indices:
        im = load_image(frames[i])
        if size is None:
            size = im.size
        if im.size != size:
            raise ImageError(f"frame {i} is {im.size[0]} x {im.size[1]} but the first sampled frame is "
                             f"{size[0]} x {size[1]}: give frames of one size")
        out.append(im)
    return out


def video_parts(extractor: "Extractor", frames: Sequence[Any], *, num_sampled_frames: int = 10,
                temporal_smoothing: float = 0.6, bidirectional: bool = True, fps: float | None = None,
                load_size: int | None = 224, layer: int | Sequence[int] | None = None,
                facet: str | None = None, bin: bool | None = None, stride: int | None = None,
                low_res_saliency_maps: bool = False, num_crop_augmentations: int = 0, crf: bool = False,
                batch_size: int = 8, **part_knobs: Any) -> VideoPartsResult:
    """Part co-segmentation of a clip (see the module docstring).

    frames: N frames of one size (H x W x 3 arrays / PIL / paths). ``num_sampled_frames`` evenly
    spread frames are part-co-segmented (``part_knobs``: the keywords of
    :func:`vitdense.apps.parts.part_cosegment_descriptors`, e.g. ``num_parts``,
    ``three_stages``; ``low_res_saliency_maps`` and ``num_crop_augmentations`` as in
    ``part_cosegment``); every frame is then labelled by nearest centroid and smoothed over time
    (``temporal_smoothing`` in [0, 1): the weight of the past in the moving average, 0 = off).
    ``crf``: dense CRF on the sampled frames' part maps (``result.parts``); off by default because
    the propagated labels use only the centroids, which it changes only with ``three_stages``.
    Descriptor options as in ``Extractor.extract``; None takes the defaults table's "video" row for
    the model, then the model's own (:func:`vitdense.apps.knobs.settings_for`). Frames
    are extracted ``batch_size`` at a time; only their score maps are kept.
    """
    from vitdense.apps import parts as pcs
    
    if isinstance(frames, (str, os.PathLike)):
        raise ParameterError("frames must be a sequence of frames: read a video with read_video first")
    if len(frames) == 0:
        raise ParameterError("frames is empty: give at least one frame")
    check_range("temporal_smoothing", temporal_smoothing, 0.0, 1.0, high_inclusive=False)
    for bad in ("images", "descs", "saliency", "extra_descs", "extra_images", "extra_params"):
        if bad in part_knobs:
            raise ParameterError(f"video_parts got {bad}=: it takes the frames as its images")
    if not isinstance(crf, (bool, np.bool_)):
        raise ParameterError(f"crf={crf!r} is not a boolean: expected True or False")
    knobs = pcs.PartsKnobs.from_descriptor_options(**part_knobs).resolved(extractor.model_name)
    pcs.validate_part_params(knobs.num_parts, knobs.elbow_second_stage, num_crop_augmentations)
    idx = sample_indices(len(frames), num_sampled_frames)
    settings = settings_for("video", extractor, load_size=load_size, layer=layer, facet=facet, bin=bin,
                            stride=stride)
    load_size, layer, facet, bin, stride = (settings.load_size, settings.layer, settings.facet, settings.bin,
                                            settings.stride)
    sampled = _load_frames(frames, idx, None)
    size = sampled[0].size
    ex_kw = dict(load_size=load_size, layer=layer, facet=facet, bin=bin, stride=stride, batch_size=batch_size)
    descs_s, sal = extract_with_saliency(extractor, sampled, include_cls=False,
                                         low_res_saliency_maps=low_res_saliency_maps, **ex_kw)
    augs = pcs.crop_augmentations(sampled, num_crop_augmentations, load_size, knobs.seed) \
        if num_crop_augmentations else []
    extra = extractor.extract(augs, **ex_kw) if augs else []
    parts_result = pcs.part_cosegment_descriptors(
        descs_s, sal, sampled if crf else None, crf=crf, extra_descs=extra, extra_images=augs or None,
        extra_params=dict(low_res_saliency_maps=low_res_saliency_maps,
                          num_crop_augmentations=num_crop_augmentations), **part_knobs)
    where = {int(i): j for j, i in enumerate(idx)}
    rest = [i for i in range(len(frames)) if i not in where]

    def every_frame() -> Iterator["ImageDescriptors"]:
        """Descriptors of frame 0, 1, ...: the sampled ones reused, the rest extracted ``batch_size``
        at a time (one chunk's descriptors in memory at a time)."""
        chunk: dict[int, "ImageDescriptors"] = {}
        pos = 0  # next frame of ``rest`` not extracted yet
        for i in range(len(frames)):
            if i in where:
                yield descs_s[where[i]]
                continue
            if i not in chunk:
                todo = rest[pos:pos + batch_size]
                pos += len(todo)
                chunk = dict(zip(todo, extractor.extract(_load_frames(frames, todo, size), **ex_kw)))
            yield chunk.pop(i)

    params = dict(num_sampled_frames=int(num_sampled_frames), load_size=load_size, layer=layer, facet=facet,
                  bin=bin, stride=stride, low_res_saliency_maps=low_res_saliency_maps,
                  num_crop_augmentations=num_crop_augmentations, crf=crf, parts=dict(parts_result.params))
    return video_parts_descriptors(every_frame(), parts_result, idx, temporal_smoothing=temporal_smoothing,
                                   bidirectional=bidirectional, fps=fps, extra_params=params)

"""Keypoint-pair fixtures from real photographs for the correspondence defaults study.

Two sets, both built from photos installed with the requirements (nothing downloaded):

* ``warped``: six photos, each warped by a random homography (rotation up to 15 degrees, scale
  0.8-1.15, mild perspective, colour jitter; :func:`vitdense.eval.datasets.warped_pair`); truth is
  exact; source points on a 12 x 12 lattice; PCK relative to the target image's longer side.
* ``felines``: four different feline faces (scikit-image's "chelsea" cat, gradio's two cheetah
  photos and its lion photo), keypoints placed by eye: the two eyes (pupil centres), the nose
  (centre of the nose pad), the mouth (centre below the nose where the lips meet), the two ear
  tips, named by their side in the image ("_l" = image left). They were read off an enlarged copy
  of each photo with a labelled 25/50-pixel grid drawn over it; an ear hidden in the mane or cut
  off by the frame is NaN (unlabelled). The box is the head (ears and mane included), also by
  eye. Every ordered pair of two different photos is a pair (12); PCK relative to the target box.

Coordinates are ``(y, x)`` original pixels.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from vitdense.eval.datasets import KeypointPair, PairSet, warped_pair

KEYPOINTS = ("eye_l", "eye_r", "nose", "mouth", "ear_l", "ear_r")
SYMMETRIC = {"eye_l": "eye_r", "eye_r": "eye_l", "ear_l": "ear_r", "ear_r": "ear_l"}
NAN = float("nan")

#: name -> (source, keypoints (y, x) in KEYPOINTS order, head box (y0, x0, y1, x1))
FELINES = {
    "chelsea": ("skimage:chelsea",
                [(113, 169), (134, 320), (239, 267), (262, 258), (NAN, NAN), (25, 380)], (0, 0, 300, 451)),
    "cheetah1": ("gradio:media_assets/images/cheetah1.jpg",
                 [(93, 90), (92, 161), (143, 124), (168, 126), (34, 45), (43, 205)], (25, 25, 256, 225)),
    "cheetah2": ("gradio:test_data/cheetah2.jpg",
                 [(321, 253), (304, 492), (426, 376), (492, 374), (138, 92), (111, 662)], (60, 20, 787, 720)),
    "lion": ("gradio:media_assets/images/lion.jpg",
             [(66, 104), (65, 134), (92, 117), (105, 120), (NAN, NAN), (41, 158)], (5, 60, 150, 185)),
}

WARPED_SOURCES = ("skimage:chelsea", "skimage:astronaut", "skimage:coffee", "skimage:rocket",
                  "gradio:test_data/cheetah2.jpg", "gradio:media_assets/images/lion.jpg")


def load_photo(source: str) -> np.ndarray:
    """``"skimage:<name>"`` or ``"gradio:<path in the package>"`` -> H x W x 3 uint8."""
    kind, name = source.split(":", 1)
    if kind == "skimage":
        from skimage import data
        return np.asarray(getattr(data, name)())[..., :3]
    import gradio
    return np.asarray(Image.open(os.path.join(os.path.dirname(gradio.__file__), name)).convert("RGB"))


def felines() -> PairSet:
    """The 12 ordered pairs of different feline faces (hand-placed keypoints)."""
    photos = {k: load_photo(v[0]) for k, v in FELINES.items()}
    pairs = []
    for a, (_, ka, box_a) in FELINES.items():
        for b, (_, kb, box_b) in FELINES.items():
            if a != b:
                pairs.append(KeypointPair(f"{a}-{b}", "feline", photos[a], photos[b],
                                          np.array(ka, float), np.array(kb, float), box_a, box_b))
    return PairSet("felines", pairs, "bbox")


def warped(grid: int = 12, seed: int = 0) -> PairSet:
    """Six photos, each with a random homography of itself (exact truth)."""
    pairs = []
    for i, src in enumerate(WARPED_SOURCES):
        img = load_photo(src)
        out, _, pa, pb = warped_pair(img, seed=seed + i, grid=grid)
        pairs.append(KeypointPair(src.split(":")[1].split("/")[-1].split(".")[0], "warped", img, out, pa, pb))
    return PairSet("warped", pairs, "image")


def mirrored(grid: int = 12, seed: int = 0) -> PairSet:
    """The warped pairs with B also mirrored left-right (x -> W - x): truth still exact. What a
    photo of the same object facing the other way asks of descriptors that encode layout."""
    pairs = []
    for p in warped(grid, seed).pairs:
        w = p.image_b.shape[1]
        pb = p.points_b.copy()
        pb[:, 1] = w - pb[:, 1]
        pairs.append(KeypointPair(p.name, "mirrored", p.image_a, np.ascontiguousarray(p.image_b[:, ::-1]),
                                  p.points_a, pb))
    return PairSet("mirrored", pairs, "image")


def left_right_swaps(pair_scores, data: PairSet) -> tuple[int, int]:
    """(eye/ear keypoints answered nearer the opposite side's truth, eye/ear keypoints counted)."""
    swaps = total = 0
    by_name = {p.name: p for p in data.pairs}
    for s in pair_scores:
        pair = by_name[s.name]
        pred = np.asarray(s.predictions, float)
        for k, name in enumerate(KEYPOINTS):
            other = KEYPOINTS.index(SYMMETRIC[name]) if name in SYMMETRIC else None
            if other is None or not np.isfinite(pred[k]).all() or not np.isfinite(pair.points_b[other]).all():
                continue
            total += 1
            own = np.linalg.norm(pred[k] - pair.points_b[k])
            swaps += int(np.linalg.norm(pred[k] - pair.points_b[other]) < own)
    return swaps, total

"""The cat composites of the co-segmentation and k-means tests: an elliptical cut of the chelsea cat's
face (a real photo) pasted, at different scales, positions and mirrored, onto other real
scikit-image photographs; the paste mask is the ground truth."""
from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

CANVAS = (300, 400)  # H x W of every test image (resized to 224 x 298 by the extractor)


def rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]


def cat_face() -> tuple[np.ndarray, np.ndarray]:
    """The chelsea cat's face cut along an ellipse: (RGB crop, its bool mask)."""
    img = data.chelsea()
    cy, cx, ry, rx = 155, 215, 140, 170
    y0, x0 = max(0, cy - ry), cx - rx
    crop = img[y0:cy + ry + 1, x0:cx + rx + 1]
    yy, xx = np.mgrid[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]
    return crop, ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def paste_cat_face(background: np.ndarray, scale: float, rng: np.random.Generator,
                   flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Cat face pasted on a centre crop of ``background`` -> (H x W x 3 image, H x W ground truth)."""
    obj, mask = cat_face()
    H, W = CANVAS
    bh, bw = background.shape[:2]
    r = min(bh / H, bw / W)
    t, left = (bh - int(H * r)) // 2, (bw - int(W * r)) // 2
    crop = background[t:t + int(H * r), left:left + int(W * r)]
    canvas = np.array(Image.fromarray(crop).resize((W, H), Image.LANCZOS))
    oh = int(H * scale)
    ow = int(obj.shape[1] * oh / obj.shape[0])
    o = np.asarray(Image.fromarray(obj).resize((ow, oh), Image.LANCZOS))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((ow, oh), Image.BILINEAR)) >= 128
    if flip:
        o, m = o[:, ::-1], m[:, ::-1]
    y, x = int(rng.integers(0, H - oh + 1)), int(rng.integers(0, W - ow + 1))
    canvas[y:y + oh, x:x + ow][m] = o[m]
    gt = np.zeros((H, W), bool)
    gt[y:y + oh, x:x + ow] = m
    return canvas, gt


def cat_set(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Six composites (images, ground-truth masks) on grass, coffee, rocket, astronaut, Hubble, motorcycle."""
    rng = np.random.default_rng(seed)
    backgrounds = [rgb(data.grass()), data.coffee(), data.rocket(), data.astronaut(), data.hubble_deep_field(),
                   data.stereo_motorcycle()[0]]
    pairs = [paste_cat_face(bg, float(rng.uniform(0.5, 0.75)), rng, flip=bool(i % 2))
             for i, bg in enumerate(backgrounds)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def outlier_image() -> np.ndarray:
    """A real photo without the cat (the brick wall), same canvas size."""
    return np.array(Image.fromarray(rgb(data.brick())).resize(CANVAS[::-1], Image.LANCZOS))

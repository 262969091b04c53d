"""Rebuild the demo's example photographs from scikit-image's bundled data (see LICENSES.md).

Run from the repository root: ``python assets/make_assets.py``. Deterministic: the same files
(up to the JPEG encoder) every time. Every source is CC0 or public domain (LICENSES.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent
QUALITY = 90


def fit(img: np.ndarray | Image.Image, max_side: int) -> Image.Image:
    """Downscale (LANCZOS) so that the longer side is ``max_side``."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    s = max_side / max(pil.size)
    if s >= 1:
        return pil.convert("RGB")
    return pil.convert("RGB").resize((round(pil.width * s), round(pil.height * s)),
                                     Image.Resampling.LANCZOS)


def tinted(gray: np.ndarray, rgb: tuple[float, float, float]) -> np.ndarray:
    """A grey texture photograph coloured by multiplying each channel (H x W x 3 uint8)."""
    g = gray.astype(np.float32)[..., None] / 255.0
    return np.clip(g * np.asarray(rgb, np.float32) * 255.0 * 1.15, 0, 255).astype(np.uint8)


def pasted_box(obj_shape: tuple[int, ...], scale: float, top_left: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of a crop of ``obj_shape`` pasted by :func:`paste` (the object's ground truth)."""
    h, w = round(obj_shape[0] * scale), round(obj_shape[1] * scale)
    return top_left[0], top_left[1], top_left[0] + h, top_left[1] + w


def paste(obj: np.ndarray, background: np.ndarray, size: tuple[int, int], scale: float,
          top_left: tuple[int, int], flip: bool = False) -> Image.Image:
    """A rectangular photo crop, rescaled (and mirrored), pasted on a background of ``size`` (H, W)."""
    bg = Image.fromarray(background).convert("RGB").resize(size[::-1], Image.Resampling.LANCZOS)
    y0, x0, y1, x1 = pasted_box(obj.shape, scale, top_left)
    o = Image.fromarray(obj).resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    if flip:
        o = o.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    bg.paste(o, (top_left[1], top_left[0]))
    return bg


# The cat set's pasted images: file -> (background name, canvas (H, W), scale, top-left (y, x), flip).
# The pasted crop is chelsea[30:280, 100:400] (the cat's head); pasted_box gives its ground truth.
FACE = (slice(30, 280), slice(100, 400))
CAT_PASTES = {
    "cats/cat_2.jpg": ("brick", (240, 320), 0.55, (70, 90), False),
    "cats/cat_3.jpg": ("grass", (240, 320), 0.65, (30, 20), True),
    "cats/cat_4.jpg": ("gravel", (260, 300), 0.5, (110, 130), False),
}
# The cat pair: A is the whole photo (451 x 300) at 400 px; B is its crop [20:300, 30:430], mirrored,
# at 340 px on the longer side.
CAT_A_SCALE = 400 / 451
CAT_B_CROP = (20, 30, 300, 430)   # y0, x0, y1, x1 in the original photo
CAT_B_SCALE = 340 / 400


def cat_b_from_a(x: float, y: float) -> tuple[float, float]:
    """Where pixel (x, y) of pairs/cat_a.jpg lies in pairs/cat_b.jpg (continuous pixel coordinates)."""
    ox, oy = x / CAT_A_SCALE, y / CAT_A_SCALE
    y0, x0, _, x1 = CAT_B_CROP
    return ((x1 - x0) - (ox - x0)) * CAT_B_SCALE, (oy - y0) * CAT_B_SCALE


def face_box(name: str) -> tuple[int, int, int, int]:
    """Ground-truth box (y0, x0, y1, x1) of the pasted cat head in one image of the cat set."""
    _, _, scale, top_left, _ = CAT_PASTES[name]
    return pasted_box((FACE[0].stop - FACE[0].start, FACE[1].stop - FACE[1].start), scale, top_left)


def save(img: Image.Image, rel: str) -> None:
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=QUALITY, optimize=True)
    print(f"{rel}: {img.width} x {img.height}, {path.stat().st_size / 1024:.0f} KB")


def main() -> None:
    cat, coffee, astro = data.chelsea(), data.coffee(), data.astronaut()
    brick = tinted(data.brick(), (0.95, 0.55, 0.42))
    grass = tinted(data.grass(), (0.45, 0.8, 0.35))
    gravel = tinted(data.gravel(), (0.85, 0.78, 0.65))
    face = cat[FACE]                     # the cat's head
    cup = coffee[20:330, 150:480]        # the cup on its saucer

    # pairs for correspondences / similarity: a photo and another view of it (mirrored, cropped, rescaled)
    save(fit(cat, 400), "pairs/cat_a.jpg")
    y0, x0, y1, x1 = CAT_B_CROP
    save(fit(cat[y0:y1, x0:x1][:, ::-1], 340), "pairs/cat_b.jpg")
    save(fit(coffee, 400), "pairs/coffee_a.jpg")
    save(paste(cup, gravel, (300, 400), 0.8, (30, 60), flip=True), "pairs/coffee_b.jpg")
    save(fit(astro, 320), "pairs/astronaut_a.jpg")
    save(fit(astro[40:480, 60:460][:, ::-1], 300), "pairs/astronaut_b.jpg")

    # a set for (part) co-segmentation: the cat photo and its head on other real backgrounds
    save(fit(cat, 320), "cats/cat_1.jpg")
    backgrounds = {"brick": brick, "grass": grass, "gravel": gravel}
    for name, (bg, size, scale, top_left, flip) in CAT_PASTES.items():
        save(paste(face, backgrounds[bg], size, scale, top_left, flip), name)
    save(fit(cat[0:300, 60:451][:, ::-1], 300), "cats/cat_5.jpg")

    # a second set: the coffee cup
    save(fit(coffee, 320), "cups/cup_1.jpg")
    save(paste(cup, brick, (240, 320), 0.5, (60, 100), flip=True), "cups/cup_2.jpg")
    save(paste(cup, grass, (260, 300), 0.6, (40, 40)), "cups/cup_3.jpg")
    save(paste(cup, gravel, (240, 320), 0.45, (90, 20)), "cups/cup_4.jpg")

    # a short clip for video part co-segmentation: a camera pan and zoom over the cat photo
    import imageio.v2 as iio
    frames = []
    for t in np.linspace(0.0, 1.0, 20):
        h, w = int(260 - 60 * t), int(390 - 90 * t)
        y, x = int(10 + 20 * t), int(20 + 40 * t)
        crop = Image.fromarray(cat[y:y + h, x:x + w]).resize((224, 150), Image.Resampling.LANCZOS)
        frames.append(np.asarray(crop))
    path = HERE / "video/cat_pan.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with iio.get_writer(path, format="FFMPEG", fps=10, codec="libx264", quality=6,
                        pixelformat="yuv420p", macro_block_size=1) as writer:
        for f in frames:
            writer.append_data(f)
    print(f"video/cat_pan.mp4: {len(frames)} frames, {path.stat().st_size / 1024:.0f} KB")


#: Tux Paint's stamps (Debian package tuxpaint-stamps-default, GPL-2): ``apt-get download
#: tuxpaint-stamps-default && dpkg -x tuxpaint-stamps-default_*.deb x`` then TUXPAINT_STAMPS=x/usr/share/tuxpaint/stamps
STAMPS = Path(os.environ.get("TUXPAINT_STAMPS", "/usr/share/tuxpaint/stamps"))


def stamp_on(stamp: Path, background: np.ndarray, size: tuple[int, int], scale: float,
             top_left: tuple[int, int], flip: bool = False) -> Image.Image:
    """A cut-out animal stamp (RGBA) scaled and composited on a real background of ``size`` (H, W)."""
    bg = Image.fromarray(background).convert("RGBA").resize(size[::-1], Image.Resampling.LANCZOS)
    st = Image.open(stamp).convert("RGBA")
    st = st.resize((round(st.width * scale), round(st.height * scale)), Image.Resampling.LANCZOS)
    if flip:
        st = st.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    bg.alpha_composite(st, top_left[::-1])
    return bg.convert("RGB")


def animal_pair(grass: np.ndarray) -> None:
    """Two different animals in the same pose (horse, zebra mirrored to face the same way) on grass."""
    mammals = STAMPS / "animals/mammals/equines"
    if not mammals.is_dir():
        print(f"skipped pairs/animals_*.jpg: no Tux Paint stamps in {STAMPS}")
        return
    save(stamp_on(mammals / "horse.png", grass, (300, 400), 1.8, (25, 20)), "pairs/animals_a.jpg")
    save(stamp_on(mammals / "zebra.png", grass, (300, 400), 1.75, (20, 30), flip=True), "pairs/animals_b.jpg")


if __name__ == "__main__":
    main()

"""Build the co-segmentation / part evaluation sets of ``bench/data/coseg_sets`` from real photos.

Sources (read from installed packages, never downloaded): scikit-image's ``chelsea`` (a house cat,
CC0), ``coffee`` and ``rocket`` (outliers, CC0 / public domain), and the four big-cat photos that
ship inside the ``gradio`` wheel (``media_assets/images/cheetah.jpg``, ``cheetah1.jpg``,
``lion.jpg``, ``test_data/cheetah2.jpg``; Apache-2.0 package, photographers not stated: used here
for measurement only, not in the demo's ``assets/``).

Masks are polygons drawn by hand on each source photo (vertices read off a pixel grid, checked on
an overlay) and rasterised with ``PIL.ImageDraw``; part labels are 1 = head, 2 = body (the object
mask minus the head polygon). Every variant (crop, flip, rotation, downscaled paste on a texture)
applies the same geometric transform to the image, the mask and the part labels, so its labels are
exactly those of its source. Run: ``python bench/make_coseg_sets.py [OUT [OVERLAYS]]``.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent / "data" / "coseg_sets"
MAX_SIDE = 320  # longest side of the stored JPEGs (keeps the data at a few hundred KB)

#: per source photo: (object polygons, head polygons), (x, y) in the source's own pixels
POLYGONS: dict[str, tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]] = {
    # house cat, close-up of the face filling the frame (451 x 300)
    "chelsea": ([[(0, 0), (340, 0), (385, 0), (378, 30), (368, 60), (362, 100), (360, 140), (355, 175),
                  (345, 200), (330, 230), (320, 260), (310, 300), (0, 300)]],
                [[(0, 0), (340, 0), (385, 0), (378, 30), (368, 60), (362, 100), (360, 140), (355, 175),
                  (345, 200), (330, 230), (320, 260), (310, 300), (0, 300)]]),
    # running cheetah, small in a motion-blurred frame (502 x 343)
    "cheetah_run": ([[(85, 137), (100, 138), (130, 155), (160, 158), (190, 140), (200, 135), (220, 130),
                      (250, 128), (290, 130), (320, 128), (340, 128), (345, 122), (350, 118), (358, 122),
                      (365, 135), (377, 148), (370, 156), (355, 158), (345, 165), (330, 175), (315, 185),
                      (300, 195), (290, 205), (285, 215), (300, 228), (305, 233), (290, 233), (275, 228),
                      (265, 220), (255, 212), (250, 220), (240, 222), (225, 218), (220, 215), (235, 210),
                      (240, 200), (230, 185), (215, 178), (200, 170), (190, 168), (165, 178), (145, 180),
                      (125, 170), (105, 155), (90, 148), (84, 143)]],
                    [[(338, 124), (345, 118), (352, 116), (360, 122), (366, 135), (377, 148), (370, 157),
                      (352, 160), (340, 156), (335, 140)]]),
    # cheetah face and chest, close-up (256 x 256)
    "cheetah_face": ([[(25, 40), (40, 32), (60, 35), (72, 42), (90, 35), (130, 30), (160, 38), (175, 42),
                       (190, 38), (205, 40), (218, 48), (220, 60), (210, 72), (208, 90), (210, 110),
                       (205, 140), (200, 165), (215, 195), (225, 225), (232, 256), (50, 256), (55, 230),
                       (60, 200), (55, 170), (50, 140), (45, 110), (35, 80), (27, 60)]],
                     [[(25, 40), (40, 32), (60, 35), (72, 42), (90, 35), (130, 30), (160, 38), (175, 42),
                       (190, 38), (205, 40), (218, 48), (220, 60), (210, 72), (208, 90), (210, 110),
                       (205, 140), (200, 165), (160, 180), (120, 183), (80, 178), (58, 168), (50, 140),
                       (45, 110), (35, 80), (27, 60)]]),
    # lion lying on a rock, a lioness behind it (256 x 256): both count as the object
    "lion": ([[(75, 20), (100, 8), (130, 10), (160, 25), (175, 45), (180, 70), (182, 100), (185, 130),
               (175, 160), (160, 165), (140, 170), (120, 178), (115, 200), (118, 215), (100, 222), (92, 210),
               (90, 185), (70, 185), (50, 178), (35, 175), (25, 185), (20, 210), (22, 245), (5, 245),
               (5, 215), (15, 180), (30, 165), (38, 150), (50, 120), (60, 90), (65, 60), (70, 35)],
              [(180, 45), (190, 35), (210, 38), (230, 35), (245, 50), (245, 90), (250, 110), (256, 120),
               (256, 165), (230, 160), (200, 162), (180, 165), (175, 140), (182, 100), (182, 70)]],
             [[(75, 20), (100, 8), (130, 10), (160, 25), (175, 45), (180, 70), (182, 100), (172, 128),
               (140, 138), (120, 135), (100, 132), (75, 125), (60, 100), (62, 60), (70, 35)],
              [(185, 42), (192, 35), (210, 38), (230, 35), (245, 50), (246, 95), (235, 105), (205, 92),
               (185, 72)]]),
    # cheetah cub's face on white (762 x 787)
    "cheetah_cub": ([[(40, 150), (80, 135), (130, 140), (180, 170), (220, 130), (280, 95), (350, 80),
                      (420, 85), (500, 100), (570, 110), (610, 90), (660, 90), (700, 115), (712, 160),
                      (705, 220), (680, 280), (665, 340), (650, 400), (630, 480), (640, 540), (690, 600),
                      (715, 660), (720, 760), (150, 760), (150, 700), (155, 640), (170, 590), (200, 540),
                      (180, 490), (150, 440), (110, 380), (70, 330), (45, 280), (35, 220), (30, 170)]],
                    [[(40, 150), (80, 135), (130, 140), (180, 170), (220, 130), (280, 95), (350, 80),
                      (420, 85), (500, 100), (570, 110), (610, 90), (660, 90), (700, 115), (712, 160),
                      (705, 220), (680, 280), (665, 340), (650, 400), (630, 480), (560, 540), (450, 560),
                      (350, 560), (250, 548), (200, 540), (180, 490), (150, 440), (110, 380), (70, 330),
                      (45, 280), (35, 220), (30, 170)]]),
}


def _site_file(package: str, *parts: str) -> Path:
    mod = __import__(package)
    return Path(mod.__file__).resolve().parent.joinpath(*parts)


def source_images() -> dict[str, Image.Image]:
    """The source photos as RGB PIL images (from scikit-image and the gradio wheel)."""
    import skimage.data as skd
    g = lambda *p: Image.open(_site_file("gradio", *p)).convert("RGB")  # noqa: E731
    return {"chelsea": Image.fromarray(skd.chelsea()), "cheetah_run": g("media_assets", "images", "cheetah.jpg"),
            "cheetah_face": g("media_assets", "images", "cheetah1.jpg"), "lion": g("media_assets", "images", "lion.jpg"),
            "cheetah_cub": g("test_data", "cheetah2.jpg"),
            "coffee": Image.fromarray(skd.coffee()), "rocket": Image.fromarray(skd.rocket())}


def rasterise(size: tuple[int, int], polygons: list[list[tuple[int, int]]]) -> np.ndarray:
    """Polygons -> H x W bool mask of an image of ``size`` = (W, H)."""
    im = Image.new("L", size, 0)
    d = ImageDraw.Draw(im)
    for poly in polygons:
        d.polygon(poly, fill=1, outline=1)
    return np.asarray(im, dtype=bool)


def labelled(name: str, img: Image.Image) -> tuple[Image.Image, np.ndarray]:
    """(image, part label map H x W uint8: 0 background, 1 head, 2 body); all zero for outliers."""
    if name not in POLYGONS:
        return img, np.zeros((img.height, img.width), np.uint8)
    obj, head = POLYGONS[name]
    m = rasterise(img.size, obj)
    h = rasterise(img.size, head) & m
    return img, np.where(h, 1, np.where(m, 2, 0)).astype(np.uint8)


# -- geometric variants (image and labels move together) ------------------------------------------
def _lab_img(lab: np.ndarray) -> Image.Image:
    return Image.fromarray(lab, mode="L")


def flip(img, lab):
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), lab[:, ::-1].copy()


def rotate(img, lab, degrees: float):
    """Rotation about the centre with the canvas expanded; corners filled with the border colour."""
    fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3)[0])
    out = img.rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    return out, np.asarray(_lab_img(lab).rotate(degrees, Image.Resampling.NEAREST, expand=True, fillcolor=0))


def crop(img, lab, box: tuple[int, int, int, int]):
    return img.crop(box), lab[box[1]:box[3], box[0]:box[2]].copy()


def paste_small(img, lab, background: Image.Image, scale: float, at: tuple[int, int]):
    """``img`` scaled by ``scale`` and pasted at ``at`` (x, y) on ``background``: the object is small in a
    cluttered frame; labels outside the pasted rectangle are background."""
    w, h = max(1, int(img.width * scale)), max(1, int(img.height * scale))
    small = img.resize((w, h), Image.Resampling.LANCZOS)
    small_lab = np.asarray(_lab_img(lab).resize((w, h), Image.Resampling.NEAREST))
    out = background.copy()
    out.paste(small, at)
    full = np.zeros((out.height, out.width), np.uint8)
    full[at[1]:at[1] + h, at[0]:at[0] + w] = small_lab
    return out, full


def texture(name: str, size: tuple[int, int], tint: tuple[float, float, float]) -> Image.Image:
    """A grey scikit-image texture, tiled to ``size`` = (W, H) and tinted."""
    import skimage.data as skd
    g = getattr(skd, name)().astype(np.float32)
    reps = (size[1] // g.shape[0] + 1, size[0] // g.shape[1] + 1)
    g = np.tile(g, reps)[: size[1], : size[0]]
    rgb = np.clip(g[..., None] * np.asarray(tint, np.float32)[None, None], 0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


def variants(src: dict[str, Image.Image]) -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Every image of the sets, by stem: the labelled sources and their variants."""
    base = {k: labelled(k, v) for k, v in src.items()}
    v = dict(base)
    v["cheetah_run_head"] = crop(*base["cheetah_run"], (300, 95, 400, 185))              # close-up crop of the head
    v["lion_flip"] = flip(*base["lion"])
    v["cheetah_face_rot"] = rotate(*base["cheetah_face"], 25)
    v["chelsea_small"] = paste_small(*base["chelsea"], texture("brick", (480, 360), (1.0, 0.75, 0.6)), 0.3, (300, 210))
    v["cheetah_cub_cut"] = crop(*base["cheetah_cub"], (0, 300, 450, 787))               # cuts the face in half
    v["cheetah_face_small"] = paste_small(*base["cheetah_face"], texture("grass", (400, 300), (0.7, 1.0, 0.6)),
                                          0.35, (40, 160))
    v["chelsea_rot"] = rotate(*flip(*base["chelsea"]), -90)
    return v


#: set -> stems (the README beside the data says what each set tests)
SETS: dict[str, list[str]] = {
    "felines_2": ["chelsea", "cheetah_run"],
    "felines_5": ["chelsea", "cheetah_run", "cheetah_face", "cheetah_cub", "lion"],
    "felines_10": ["chelsea", "cheetah_run", "cheetah_face", "cheetah_cub", "lion", "cheetah_run_head", "lion_flip",
                   "cheetah_face_rot", "chelsea_small", "cheetah_cub_cut"],
    "felines_scales": ["cheetah_face", "cheetah_face_small", "cheetah_face_rot", "cheetah_run", "cheetah_run_head"],
    "felines_outlier": ["chelsea", "cheetah_run", "cheetah_face", "lion", "coffee"],
    "cats_poses_outlier": ["chelsea", "chelsea_rot", "chelsea_small", "cheetah_cub", "cheetah_cub_cut", "rocket"],
}


def downscale(img: Image.Image, lab: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    s = MAX_SIDE / max(img.size)
    if s >= 1:
        return img, lab
    size = (max(1, round(img.width * s)), max(1, round(img.height * s)))
    return img.resize(size, Image.Resampling.LANCZOS), np.asarray(_lab_img(lab).resize(size, Image.Resampling.NEAREST))


def build(root: Path = ROOT) -> None:
    """Write ``root/<set>/{images,masks,parts}`` (JPEG quality 90; 8-bit PNG masks and part labels)."""
    all_images = variants(source_images())
    for name, stems in SETS.items():
        d = root / name
        if d.exists():
            shutil.rmtree(d)
        for sub in ("images", "masks", "parts"):
            (d / sub).mkdir(parents=True)
        for stem in stems:
            img, lab = downscale(*all_images[stem])
            img.save(d / "images" / f"{stem}.jpg", quality=90)
            Image.fromarray((lab > 0).astype(np.uint8) * 255).save(d / "masks" / f"{stem}.png")
            Image.fromarray(lab).save(d / "parts" / f"{stem}.png")


def overlays(root: Path, out: Path) -> None:
    """Checking aid: every image with its head (red) / body (green) labels blended in, as PNG."""
    out.mkdir(parents=True, exist_ok=True)
    for img_path in sorted(root.glob("*/images/*.jpg")):
        lab = np.asarray(Image.open(img_path.parent.parent / "parts" / f"{img_path.stem}.png"))
        rgb = np.asarray(Image.open(img_path).convert("RGB")).astype(np.float32)
        colour = np.zeros_like(rgb)
        colour[lab == 1] = (255, 0, 0)
        colour[lab == 2] = (0, 255, 0)
        a = (lab > 0)[..., None] * 0.45
        Image.fromarray((rgb * (1 - a) + colour * a).astype(np.uint8)).save(
            out / f"{img_path.parent.parent.name}__{img_path.stem}.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path, default=ROOT, help=f"where the sets go (default {ROOT})")
    ap.add_argument("overlays", nargs="?", type=Path, default=None,
                    help="also write every image with its head / body labels blended in, here")
    args = ap.parse_args(argv)
    build(args.out)
    if args.overlays is not None:
        overlays(args.out, args.overlays)


if __name__ == "__main__":
    main()

"""Build the semantic keypoint benchmark (``bench/data/semantic_kp``) in SPair-71k's layout.

Sources (all offline, see ``bench/data/semantic_kp/README.md``): photo cut-outs of Debian's
``tuxpaint-stamps-default`` (GPL-2; ``apt-get download tuxpaint-stamps-default && dpkg -x *.deb
/tmp/tp``), scikit-image's ``chelsea`` and gradio's lion photo. Keypoints were placed by hand on
each source photo (``keypoints_source.json``, ``(y, x)`` source pixels); this script composites
each cut-out (it has alpha) onto a plain or textured background at a seeded scale and offset, maps
the keypoints, takes the box from the alpha mask and writes::

    JPEGImages/<category>/<name>.jpg
    ImageAnnotation/<category>/<name>.json      # kps {"0": [x, y] | null, ...}, kps_names, bndbox, half
    PairAnnotation/{val,test}/<id>-<src>-<trg>:<category>.json   # val = study half, test = check half
    Layout/large/{val,test}.txt

Pairs: every ordered pair of two different images of the same category and the same half that
share at least one visible keypoint.

    PYTHONPATH=. python bench/make_semantic_kp.py [--stamps /tmp/tp/usr/share/tuxpaint/stamps]
"""
from __future__ import annotations

import argparse
import json
import zlib
from itertools import permutations
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent / "data" / "semantic_kp"
SPLITS = {"study": "val", "check": "test"}
MAX_SIDE = 512


def load_source(source: str, stamps: Path) -> Image.Image:
    """``tuxpaint:<path>`` / ``skimage:<name>`` / ``gradio:<path>`` -> RGBA image."""
    kind, name = source.split(":", 1)
    if kind == "tuxpaint":
        return Image.open(stamps / name).convert("RGBA")
    if kind == "skimage":
        from skimage import data
        return Image.fromarray(np.asarray(getattr(data, name)())[..., :3]).convert("RGBA")
    import gradio
    return Image.open(Path(gradio.__file__).parent / name).convert("RGBA")


def background(kind: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A plain pastel colour or a tinted scikit-image texture (grass, gravel, brick), ``size`` = (w, h)."""
    w, h = size
    tint = rng.uniform(0.55, 1.0, 3)
    if kind == "plain":
        return Image.new("RGB", size, tuple(int(255 * t) for t in tint))
    from skimage import data
    tex = np.asarray(getattr(data, kind)(), dtype=np.float32) / 255.0
    reps = (int(np.ceil(h / tex.shape[0])), int(np.ceil(w / tex.shape[1])))
    tex = np.tile(tex, reps)[:h, :w]
    return Image.fromarray((tex[..., None] * tint[None, None] * 255).astype(np.uint8))


def compose(name: str, entry: dict, stamps: Path) -> tuple[Image.Image, np.ndarray, list[float]]:
    """(image, keypoints K x 2 (y, x) with NaN for missing, box [x0, y0, x1, y1]) of one entry."""
    src = load_source(entry["source"], stamps)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    alpha = np.asarray(src)[..., 3]
    if entry["source"].startswith("tuxpaint:"):
        long_side = rng.uniform(300, 400)
        s = long_side / max(src.size)
        obj = src.resize((round(src.size[0] * s), round(src.size[1] * s)), Image.LANCZOS)
        margin = rng.integers(24, 72, 4)                        # left, top, right, bottom
        cw = min(MAX_SIDE, obj.size[0] + margin[0] + margin[2])
        ch = min(MAX_SIDE, obj.size[1] + margin[1] + margin[3])
        ox, oy = int(margin[0] * (cw - obj.size[0]) / max(1, margin[0] + margin[2])), \
            int(margin[1] * (ch - obj.size[1]) / max(1, margin[1] + margin[3]))
        kind = ("plain", "grass", "gravel", "brick")[zlib.crc32(name.encode()) % 4]
        canvas = background(kind, (cw, ch), rng).convert("RGBA")
        canvas.alpha_composite(obj, (ox, oy))
        image = canvas.convert("RGB")
        mask = np.asarray(obj)[..., 3] > 127
        ys, xs = np.nonzero(mask)
        box = [float(ox + xs.min()), float(oy + ys.min()), float(ox + xs.max() + 1), float(oy + ys.max() + 1)]
    else:                                                       # a whole photo: resize only
        s = min(1.0, MAX_SIDE / max(src.size))
        image = src.convert("RGB").resize((round(src.size[0] * s), round(src.size[1] * s)), Image.LANCZOS)
        ox = oy = 0
        y0, x0, y1, x1 = entry.get("box", [0, 0, src.size[1], src.size[0]])
        box = [x0 * s, y0 * s, x1 * s, y1 * s]
        assert alpha.min() == 255
    return image, (s, oy, ox), box


def build(stamps: Path, root: Path = ROOT) -> dict:
    """Write the benchmark under ``root``; returns counts per half."""
    spec = json.loads((root / "keypoints_source.json").read_text())
    images: dict[str, dict] = {}
    for name, entry in spec["images"].items():
        cat = entry["category"]
        names = spec["schemes"][spec["categories"][cat]]
        unknown = set(entry["kps"]) - set(names)
        assert not unknown, f"{name}: unknown keypoints {unknown}"
        image, (s, oy, ox), box = compose(name, entry, stamps)
        kps = {}
        for k, kp in enumerate(names):
            yx = entry["kps"].get(kp)
            kps[str(k)] = None if yx is None else [round(yx[1] * s + ox, 1), round(yx[0] * s + oy, 1)]
        (root / "JPEGImages" / cat).mkdir(parents=True, exist_ok=True)
        image.save(root / "JPEGImages" / cat / f"{name}.jpg", quality=88)
        ann = {"filename": f"{name}.jpg", "category": cat, "image_width": image.size[0],
               "image_height": image.size[1], "bndbox": [round(v, 1) for v in box], "kps": kps,
               "kps_names": names, "half": entry["half"], "source": entry["source"]}
        (root / "ImageAnnotation" / cat).mkdir(parents=True, exist_ok=True)
        (root / "ImageAnnotation" / cat / f"{name}.json").write_text(json.dumps(ann, indent=1) + "\n")
        images[name] = ann
    counts = {}
    for half, split in SPLITS.items():
        out = root / "PairAnnotation" / split
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.json"):
            old.unlink()
        lines, n_kps = [], 0
        members = [n for n in spec["images"] if images[n]["half"] == half]
        for a, b in permutations(members, 2):
            A, B = images[a], images[b]
            if A["category"] != B["category"]:
                continue
            ids = [k for k in A["kps"] if A["kps"][k] is not None and B["kps"][k] is not None]
            if not ids:
                continue
            pair = f"{len(lines) + 1:06d}-{a}-{b}:{A['category']}"
            (out / f"{pair}.json").write_text(json.dumps({
                "pair_id": len(lines) + 1, "src_imname": A["filename"], "trg_imname": B["filename"],
                "category": A["category"], "src_kps": [A["kps"][k] for k in ids],
                "trg_kps": [B["kps"][k] for k in ids], "kps_ids": [int(k) for k in ids],
                "kps_names": [A["kps_names"][int(k)] for k in ids],
                "src_bndbox": A["bndbox"], "trg_bndbox": B["bndbox"]}, indent=1) + "\n")
            lines.append(pair)
            n_kps += len(ids)
        (root / "Layout" / "large").mkdir(parents=True, exist_ok=True)
        (root / "Layout" / "large" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        counts[half] = dict(images=len(members), pairs=len(lines), keypoints=n_kps)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stamps", default="/tmp/tp/usr/share/tuxpaint/stamps")
    args = ap.parse_args()
    print(build(Path(args.stamps)))


if __name__ == "__main__":
    main()

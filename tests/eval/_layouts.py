"""Writers of small data sets in the exact published layouts, from real photos with known warps.

Used by tests/eval/test_datasets.py and tests/eval/test_runner.py. Keypoints are written as the
published files store them, ``(x, y)``; vitdense reads them back as ``(y, x)``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vitdense.eval.datasets import warped_pair


def warped_photos(photos: dict[str, np.ndarray], grids: dict[str, int]) -> dict[str, tuple]:
    """name -> (source, warped, points_a (y, x), points_b (y, x)) with a ``grids[name]`` lattice."""
    out = {}
    for i, (name, img) in enumerate(photos.items()):
        warped, _, pa, pb = warped_pair(img, seed=i, grid=grids[name])
        out[name] = (img, warped, pa, pb)
    return out


def write_spair(root: Path, pairs: dict[str, tuple], split: str = "test", layout: bool = True) -> list[str]:
    """SPair-71k layout: JPEGImages/<cat>/, PairAnnotation/<split>/<pair>.json, Layout/large/<split>.txt."""
    names = []
    for n, (cat, (a, b, pa, pb)) in enumerate(pairs.items()):
        (root / "JPEGImages" / cat).mkdir(parents=True, exist_ok=True)
        (root / "PairAnnotation" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / "JPEGImages" / cat / f"2008_{n:06d}.jpg", quality=95)
        Image.fromarray(b).save(root / "JPEGImages" / cat / f"2009_{n:06d}.jpg", quality=95)
        name = f"{n:06d}-2008_{n:06d}-2009_{n:06d}:{cat}"
        h, w = b.shape[:2]
        ann = {"pair_id": n, "src_imname": f"2008_{n:06d}.jpg", "trg_imname": f"2009_{n:06d}.jpg",
               "category": cat, "src_kps": np.asarray(pa)[:, ::-1].tolist(),
               "trg_kps": np.asarray(pb)[:, ::-1].tolist(), "src_bndbox": [0, 0, w - 1, h - 1],
               "trg_bndbox": [0, 0, w - 1, h - 1], "mirror": 0}
        (root / "PairAnnotation" / split / f"{name}.json").write_text(json.dumps(ann))
        names.append(name)
    if layout:
        (root / "Layout" / "large").mkdir(parents=True, exist_ok=True)
        (root / "Layout" / "large" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return names


def write_pfpascal(root: Path, pairs: dict[str, tuple], classes: dict[str, int]) -> None:
    """PF-PASCAL layout: JPEGImages/, Annotations/<class>/<stem>.mat (kps N x 2 (x, y), bbox), test_pairs.csv."""
    from scipy.io import savemat

    from vitdense.eval.datasets import PASCAL_CLASSES
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rows = ["source_image,target_image,class"]
    for n, (name, (a, b, pa, pb)) in enumerate(pairs.items()):
        cls = PASCAL_CLASSES[classes[name] - 1]
        (root / "Annotations" / cls).mkdir(parents=True, exist_ok=True)
        for tag, img, pts in (("s", a, pa), ("t", b, pb)):
            stem = f"2010_{n:04d}{tag}"
            Image.fromarray(img).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
            h, w = img.shape[:2]
            savemat(root / "Annotations" / cls / f"{stem}.mat",
                    {"kps": np.asarray(pts, float)[:, ::-1], "bbox": np.array([[1, 1, w, h]])})
        rows.append(f"JPEGImages/2010_{n:04d}s.jpg,JPEGImages/2010_{n:04d}t.jpg,{classes[name]}")
    (root / "test_pairs.csv").write_text("\n".join(rows) + "\n")

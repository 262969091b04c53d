"""Readers of evaluation data sets in their published layouts, and a warped-pair builder.

Every reader returns records with ``(y, x)`` pixel coordinates (vitdense's convention; the
published files store ``(x, y)``) and boxes as ``(y0, x0, y1, x1)``. A problem with one item (a
missing annotation file, an unknown category) becomes one line in ``problems`` and the item is
skipped; only a data set with nothing left to evaluate raises :class:`DatasetError`.

Correspondence layouts:

* **SPair-71k** (``--dataset spair``; ROOT is the ``SPair-71k`` folder):
  ``JPEGImages/<category>/<name>.jpg``, ``PairAnnotation/<split>/<pair>.json`` (keys ``src_imname``,
  ``trg_imname``, ``src_kps``, ``trg_kps`` as lists of ``[x, y]``, ``src_bndbox``, ``trg_bndbox`` as
  ``[x0, y0, x1, y1]``, ``category``), and, when present, ``Layout/large/<split>.txt`` listing the
  pair names (``<id>-<src>-<trg>:<category>``) in order. Splits: ``trn``, ``val``, ``test``. PCK is
  relative to the longer side of the target box.
* **PF-PASCAL** (``--dataset pfpascal``; ROOT is the ``PF-PASCAL`` / ``PF-dataset-PASCAL`` folder):
  ``<split>_pairs.csv`` (or ``<split>_pairs_pf_pascal.csv``) with columns ``source_image``,
  ``target_image``, ``class`` (1..20 in the PASCAL VOC order, or a name) and optional ``flip``;
  images at ``ROOT/<source_image>`` (e.g. ``JPEGImages/2009_002933.jpg``); keypoints in
  ``Annotations/<class>/<image stem>.mat`` (``kps``: N x 2 ``(x, y)``, NaN rows unlabelled;
  ``bbox``: ``[x0, y0, x1, y1]``). Keypoints labelled in both images count. When the CSV carries
  ``XA, YA, XB, YB`` (';'-separated, the CNNGeometric files) those are used instead. PCK is
  relative to the longer side of the target image.
* **pairs** (``--dataset pairs``; ROOT is a ``.json`` or ``.csv`` file, or a folder holding
  ``pairs.json`` / ``pairs.csv``), vitdense's own format; image paths are relative to the file::

      {"reference": "bbox",            # or "image": PCK relative to the target box / image
       "pairs": [{"image_a": "a.jpg", "image_b": "b.jpg",
                  "points_a": [[y, x], ...], "points_b": [[y, x], ...],   # row k <-> row k
                  "bbox_b": [y0, x0, y1, x1],       # optional (needed for reference "bbox")
                  "category": "cat", "name": "a-b"}]}   # optional

  CSV: one row per keypoint, columns ``image_a, image_b, y_a, x_a, y_b, x_b`` and optional
  ``category`` and ``bbox_b`` (``"y0 x0 y1 x1"``); rows of the same two images form one pair.

Co-segmentation / parts layout (``vitdense evaluate cosegmentation|parts``):
``ROOT/<set>/images/<stem>.<jpg|png>``, ``ROOT/<set>/masks/<stem>.png`` (8-bit, 0 = background,
non-zero = the common object; all zero: the object is absent, the right answer is an empty mask),
optional ``ROOT/<set>/parts/<stem>.png`` (0 = background, 1..K parts). An image without a mask
is not scored (and said so).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from vitdense.errors import VitdenseError

__all__ = [
    "DatasetError", "KeypointPair", "PairSet", "EvalSet", "PASCAL_CLASSES", "read_spair",
    "read_pfpascal", "read_pairs_file", "read_pairs", "read_sets", "read_label_map", "warped_pair",
    "DATASETS",
]

#: PF-PASCAL's class ids 1..20 (the PASCAL VOC order)
PASCAL_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                  "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
                  "sheep", "sofa", "train", "tvmonitor")
DATASETS = ("spair", "pfpascal", "pairs")


class DatasetError(VitdenseError, ValueError):
    """A data set folder or file cannot be read, or holds nothing to evaluate."""


@dataclass
class KeypointPair:
    """One annotated image pair: keypoint ``k`` of A corresponds to keypoint ``k`` of B.

    Attributes:
        name: the pair's name (unique within its data set).
        category: object category ("" when unknown).
        image_a, image_b: paths (or arrays / PIL images) of the source and the target.
        points_a, points_b: K x 2 float64 ``(y, x)`` original pixels; NaN rows are unlabelled.
        bbox_a, bbox_b: ``(y0, x0, y1, x1)`` object boxes, or None.
    """

    name: str
    category: str
    image_a: Any
    image_b: Any
    points_a: np.ndarray
    points_b: np.ndarray
    bbox_a: tuple[float, float, float, float] | None = None
    bbox_b: tuple[float, float, float, float] | None = None


@dataclass
class PairSet:
    """A correspondence data set as read: its pairs, its PCK reference, and what was skipped."""

    dataset: str
    pairs: list[KeypointPair]
    reference: str                       # "bbox" (target box) or "image" (target image)
    problems: list[str] = field(default_factory=list)


@dataclass
class EvalSet:
    """One co-segmentation / parts set: images with their ground truth (None: not annotated)."""

    name: str
    images: list[Path]
    masks: list[Path | None]
    parts: list[Path | None]


# --------------------------------------------------------------------------- helpers
def _xy_to_yx(points: Any) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return arr[:, ::-1].copy()


def _box_xyxy(box: Any) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.size != 4:
        return None
    return (float(b[1]), float(b[0]), float(b[3]), float(b[2]))


def _select(pairs: list[KeypointPair], categories: Sequence[str] | None, limit: int | None,
            known: Iterable[str], problems: list[str], dataset: str) -> list[KeypointPair]:
    if categories:
        known = set(known)
        for c in categories:
            if c not in known:
                problems.append(f"unknown category {c!r} in {dataset}: known are {', '.join(sorted(known))}")
        pairs = [p for p in pairs if p.category in set(categories)]
    if limit is not None:
        pairs = pairs[:limit]
    return pairs


def _require(pairs: list[KeypointPair], problems: list[str], where: str) -> None:
    if not pairs:
        detail = f" ({problems[-1]})" if problems else ""
        raise DatasetError(f"{where}: no pair left to evaluate{detail}")


# --------------------------------------------------------------------------- SPair-71k
def read_spair(root: str | Path, split: str = "test", categories: Sequence[str] | None = None,
               limit: int | None = None) -> PairSet:
    """SPair-71k pairs of ``split`` (see the module docstring for the layout)."""
    root = Path(root)
    ann_dir = root / "PairAnnotation" / split
    if not ann_dir.is_dir():
        raise DatasetError(f"{root}: no PairAnnotation/{split} folder (is ROOT the SPair-71k folder, "
                           f"and is the split one of trn, val, test?)")
    problems: list[str] = []
    layout = root / "Layout" / "large" / f"{split}.txt"
    if layout.is_file():
        names = [ln.strip() for ln in layout.read_text().splitlines() if ln.strip()]
        files = [ann_dir / f"{n}.json" for n in names]
    else:
        files = sorted(ann_dir.glob("*.json"))
    if not files:
        raise DatasetError(f"{ann_dir}: the split {split!r} is empty (no pair annotation)")
    img_dir = root / "JPEGImages"
    known = sorted(d.name for d in img_dir.iterdir() if d.is_dir()) if img_dir.is_dir() else []
    pairs = []
    for f in files:
        if not f.is_file():
            problems.append(f"{f.name}: annotation file missing, pair skipped")
            continue
        try:
            a = json.loads(f.read_text())
            cat = str(a["category"])
            pa, pb = _xy_to_yx(a["src_kps"]), _xy_to_yx(a["trg_kps"])
            src = a.get("src_imname") or f.stem.split("-")[1] + ".jpg"
            trg = a.get("trg_imname") or f.stem.split("-")[2].split(":")[0] + ".jpg"
            box_a, box_b = _box_xyxy(a.get("src_bndbox")), _box_xyxy(a.get("trg_bndbox"))
        except (ValueError, KeyError, IndexError, TypeError) as err:
            problems.append(f"{f.name}: unreadable annotation ({type(err).__name__}: {err}), pair skipped")
            continue
        if pa.shape != pb.shape:
            problems.append(f"{f.name}: {len(pa)} source but {len(pb)} target keypoints, pair skipped")
            continue
        if box_b is None:
            problems.append(f"{f.name}: no trg_bndbox, pair skipped (PCK needs the target box)")
            continue
        pairs.append(KeypointPair(f.stem, cat, img_dir / cat / src, img_dir / cat / trg, pa, pb, box_a, box_b))
    known = known or sorted({p.category for p in pairs})
    pairs = _select(pairs, categories, limit, known, problems, "SPair-71k")
    _require(pairs, problems, str(root))
    return PairSet("spair", pairs, "bbox", problems)


# --------------------------------------------------------------------------- PF-PASCAL
def _pf_csv(root: Path, split: str) -> Path:
    for name in (f"{split}_pairs.csv", f"{split}_pairs_pf_pascal.csv"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root}: no {split}_pairs.csv (or {split}_pairs_pf_pascal.csv): is ROOT the "
                       "PF-PASCAL folder, and is the split one of trn, val, test?")


def _pf_class(value: str) -> str:
    v = value.strip()
    if v.isdigit() and 1 <= int(v) <= len(PASCAL_CLASSES):
        return PASCAL_CLASSES[int(v) - 1]
    if v in PASCAL_CLASSES:
        return v
    raise ValueError(f"class {value!r} is neither 1..20 nor a PASCAL class name")


def _read_mat(path: Path) -> tuple[np.ndarray, tuple | None]:
    from scipy.io import loadmat
    m = loadmat(str(path))
    kps = _xy_to_yx(np.asarray(m["kps"], dtype=np.float64))
    return kps, _box_xyxy(m.get("bbox"))


def read_pfpascal(root: str | Path, split: str = "test", categories: Sequence[str] | None = None,
                  limit: int | None = None) -> PairSet:
    """PF-PASCAL pairs of ``split`` (see the module docstring for the layout)."""
    root = Path(root)
    path = _pf_csv(root, split)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DatasetError(f"{path}: the split {split!r} is empty (no row)")
    problems: list[str] = []
    pairs = []
    for n, row in enumerate(rows, start=2):  # line numbers as an editor shows them
        try:
            src, trg, cat = row["source_image"], row["target_image"], _pf_class(row["class"])
        except (KeyError, ValueError, AttributeError) as err:
            problems.append(f"{path.name} line {n}: {err}, pair skipped")
            continue
        name = f"{Path(src).stem}-{Path(trg).stem}"
        try:
            if row.get("XA") and row.get("XB"):
                pa = np.stack([np.array(row["YA"].split(";"), float), np.array(row["XA"].split(";"), float)], 1)
                pb = np.stack([np.array(row["YB"].split(";"), float), np.array(row["XB"].split(";"), float)], 1)
                box_a = box_b = None
            else:
                mats = [root / "Annotations" / cat / f"{Path(p).stem}.mat" for p in (src, trg)]
                missing = [m for m in mats if not m.is_file()]
                if missing:
                    problems.append(f"{name}: annotation file {missing[0].relative_to(root)} missing, pair skipped")
                    continue
                (pa, box_a), (pb, box_b) = _read_mat(mats[0]), _read_mat(mats[1])
        except (ValueError, KeyError, OSError) as err:
            problems.append(f"{name}: unreadable annotation ({err}), pair skipped")
            continue
        if pa.shape != pb.shape:
            problems.append(f"{name}: {len(pa)} source but {len(pb)} target keypoints, pair skipped")
            continue
        both = np.isfinite(pa).all(1) & np.isfinite(pb).all(1)
        pa, pb = pa.copy(), pb.copy()
        pa[~both], pb[~both] = np.nan, np.nan
        pairs.append(KeypointPair(name, cat, root / src, root / trg, pa, pb, box_a, box_b))
    pairs = _select(pairs, categories, limit, PASCAL_CLASSES, problems, "PF-PASCAL")
    _require(pairs, problems, str(root))
    return PairSet("pfpascal", pairs, "image", problems)


# --------------------------------------------------------------------------- vitdense's own format
def _pairs_path(root: Path) -> Path:
    if root.is_dir():
        for name in ("pairs.json", "pairs.csv"):
            if (root / name).is_file():
                return root / name
        raise DatasetError(f"{root}: no pairs.json or pairs.csv inside")
    if not root.is_file():
        raise DatasetError(f"{root}: no such file or folder")
    return root


def read_pairs_file(root: str | Path, categories: Sequence[str] | None = None,
                    limit: int | None = None) -> PairSet:
    """Pairs in vitdense's JSON / CSV format (see the module docstring)."""
    path = _pairs_path(Path(root))
    base = path.parent
    problems: list[str] = []
    pairs: list[KeypointPair] = []
    reference = "bbox"
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text())
            reference = doc.get("reference", "bbox")
            records = doc["pairs"]
        else:
            with open(path, newline="") as fh:
                records = _csv_records(list(csv.DictReader(fh)))
            reference = "bbox" if all(r.get("bbox_b") for r in records) else "image"
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DatasetError(f"{path}: not in the documented pairs format ({type(err).__name__}: {err})") from None
    if reference not in ("bbox", "image"):
        raise DatasetError(f"{path}: reference={reference!r} must be 'bbox' or 'image'")
    for n, r in enumerate(records):
        name = str(r.get("name") or f"{Path(str(r.get('image_a'))).stem}-{Path(str(r.get('image_b'))).stem}")
        try:
            pa = np.asarray(r["points_a"], dtype=np.float64).reshape(-1, 2)
            pb = np.asarray(r["points_b"], dtype=np.float64).reshape(-1, 2)
            box_b = tuple(float(v) for v in r["bbox_b"]) if r.get("bbox_b") is not None else None
            box_a = tuple(float(v) for v in r["bbox_a"]) if r.get("bbox_a") is not None else None
            ia, ib = base / str(r["image_a"]), base / str(r["image_b"])
        except (KeyError, ValueError, TypeError) as err:
            problems.append(f"pair {n} ({name}): {type(err).__name__}: {err}, pair skipped")
            continue
        if pa.shape != pb.shape:
            problems.append(f"pair {n} ({name}): {len(pa)} points in A but {len(pb)} in B, pair skipped")
            continue
        if reference == "bbox" and (box_b is None or len(box_b) != 4):
            problems.append(f"pair {n} ({name}): no bbox_b = [y0, x0, y1, x1], pair skipped (reference is 'bbox')")
            continue
        pairs.append(KeypointPair(name, str(r.get("category") or ""), ia, ib, pa, pb, box_a, box_b))
    pairs = _select(pairs, categories, limit, {p.category for p in pairs}, problems, path.name)
    _require(pairs, problems, str(path))
    return PairSet("pairs", pairs, reference, problems)


def _csv_records(rows: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["image_a"], row["image_b"])
        rec = groups.setdefault(key, {"image_a": key[0], "image_b": key[1], "points_a": [], "points_b": [],
                                      "category": row.get("category") or "",
                                      "bbox_b": [float(v) for v in row["bbox_b"].split()] if row.get("bbox_b") else None})
        rec["points_a"].append([float(row["y_a"]), float(row["x_a"])])
        rec["points_b"].append([float(row["y_b"]), float(row["x_b"])])
    return list(groups.values())


def read_pairs(dataset: str, root: str | Path, split: str = "test",
               categories: Sequence[str] | None = None, limit: int | None = None) -> PairSet:
    """Dispatch on ``dataset`` (``"spair"``, ``"pfpascal"`` or ``"pairs"``)."""
    if dataset == "spair":
        return read_spair(root, split, categories, limit)
    if dataset == "pfpascal":
        return read_pfpascal(root, split, categories, limit)
    if dataset == "pairs":
        return read_pairs_file(root, categories, limit)
    raise DatasetError(f"dataset={dataset!r} is unknown: expected one of {', '.join(DATASETS)}")


# --------------------------------------------------------------------------- co-segmentation sets
def read_sets(root: str | Path, need_parts: bool = False) -> tuple[list[EvalSet], list[str]]:
    """Sets under ``root`` in the co-segmentation / parts layout -> (sets, problems)."""
    from vitdense.features.images import list_images
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    folders = [root] if (root / "images").is_dir() else sorted(
        d for d in root.iterdir() if d.is_dir() and (d / "images").is_dir())
    if not folders:
        raise DatasetError(f"{root}: no <set>/images folder inside (layout: ROOT/<set>/images, ROOT/<set>/masks)")
    sets, problems = [], []
    for d in folders:
        images = list_images(d / "images")
        if not images:
            problems.append(f"set {d.name}: no images, skipped")
            continue
        masks, parts = [], []
        for im in images:
            m, p = d / "masks" / f"{im.stem}.png", d / "parts" / f"{im.stem}.png"
            masks.append(m if m.is_file() else None)
            parts.append(p if p.is_file() else None)
            if not m.is_file():
                problems.append(f"set {d.name}: {im.name} has no mask masks/{im.stem}.png, not scored")
            elif need_parts and not p.is_file():
                problems.append(f"set {d.name}: {im.name} has no part map parts/{im.stem}.png, not scored")
        sets.append(EvalSet(d.name, images, masks, parts))
    if not sets:
        raise DatasetError(f"{root}: no set with images")
    return sets, problems


def read_label_map(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A set's mask or part map: H x W uint8 (0 = background); :class:`DatasetError` when its
    size differs from ``shape`` (H, W) of its image, when given."""
    from PIL import Image
    path = Path(path)
    m = np.asarray(Image.open(path).convert("L"))
    if shape is not None and m.shape != tuple(shape):
        raise DatasetError(f"{path.name}: mask is {m.shape[1]} x {m.shape[0]} but its image is "
                           f"{shape[1]} x {shape[0]}")
    return m


# --------------------------------------------------------------------------- warped pairs
def warped_pair(image: np.ndarray, seed: int = 0, grid: int = 12, max_rotation: float = 15.0,
                scale: tuple[float, float] = (0.8, 1.15), perspective: float = 4e-4,
                jitter: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random homography of ``image`` with known truth (a self-made correspondence benchmark).

    The homography rotates about the centre by up to ``max_rotation`` degrees, scales by a factor
    in ``scale``, adds a perspective term up to ``perspective`` per pixel; colours are jittered by
    up to ``jitter`` (gain and offset per channel). Source points: a ``grid x grid`` lattice over
    the middle 90% of the image, kept where the warped point lands inside the warped image.

    Returns:
        ``(warped H x W x 3 uint8, homography 3 x 3 mapping (x, y, 1) of A to B, points_a K x 2,
        points_b K x 2)`` with points as ``(y, x)`` pixels.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    a = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    s = rng.uniform(*scale)
    cx, cy = w / 2, h / 2
    move = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    back = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    rot = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1.0]])
    persp = np.eye(3)
    persp[2, :2] = rng.uniform(-perspective, perspective, 2)
    H = move @ persp @ rot @ back
    Hinv = np.linalg.inv(H)
    coeffs = (Hinv / Hinv[2, 2]).reshape(-1)[:8]      # PIL maps output (x, y) -> input
    warped = Image.fromarray(image).transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                                              Image.Resampling.BICUBIC)
    arr = np.asarray(warped).astype(np.float32)
    gain = 1 + rng.uniform(-jitter, jitter, 3)
    offset = rng.uniform(-jitter, jitter, 3) * 255
    arr = np.clip(arr * gain + offset, 0, 255).astype(np.uint8)
    valid_src = np.asarray(Image.fromarray(np.full((h, w), 255, np.uint8)).transform(
        (w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.NEAREST)) > 0
    arr[~valid_src] = 0
    ys = np.linspace(0.05 * h, 0.95 * h, grid)
    xs = np.linspace(0.05 * w, 0.95 * w, grid)
    pa = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    homog = np.concatenate([pa[:, ::-1], np.ones((len(pa), 1))], 1) @ H.T
    pb = (homog[:, :2] / homog[:, 2:])[:, ::-1]
    inside = (pb[:, 0] >= 2) & (pb[:, 0] < h - 2) & (pb[:, 1] >= 2) & (pb[:, 1] < w - 2)
    keep = inside.copy()
    keep[inside] = valid_src[pb[inside, 0].astype(int), pb[inside, 1].astype(int)]
    return arr, H, pa[keep], pb[keep]

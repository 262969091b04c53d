"""Readers of the published layouts (SPair-71k, PF-PASCAL), the pairs format, sets; warped pairs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tests.eval._layouts import warped_photos, write_pfpascal, write_spair
from PIL import Image

from vitdense.eval.datasets import (
    DatasetError,
    read_pairs,
    read_pairs_file,
    read_pfpascal,
    read_sets,
    read_spair,
    warped_pair,
)
from tests import REPO


@pytest.fixture(scope="module")
def warped(photos):
    small = {k: np.asarray(Image.fromarray(photos[k]).resize((160, 120))) for k in ("chelsea", "coffee", "astronaut")}
    return warped_photos(small, {"chelsea": 3, "coffee": 4, "astronaut": 5})


def test_warped_pair_truth_is_exact(photos):
    img = photos["chelsea"]
    out, H, pa, pb = warped_pair(img, seed=3, jitter=0.0)
    assert out.shape == img.shape and len(pa) == len(pb) >= 100
    homog = np.c_[pa[:, ::-1], np.ones(len(pa))] @ H.T
    np.testing.assert_allclose(homog[:, :2] / homog[:, 2:], pb[:, ::-1])
    # the photo's colour at each source point is found at the warped point (bicubic resampling)
    a = img[pa[:, 0].astype(int), pa[:, 1].astype(int)].astype(float)
    b = out[np.rint(pb[:, 0]).astype(int), np.rint(pb[:, 1]).astype(int)].astype(float)
    assert np.median(np.abs(a - b)) < 12
    shuffled = np.abs(a - np.roll(b, 7, axis=0))
    assert np.median(shuffled) > 2 * np.median(np.abs(a - b))


def test_spair_layout_is_read_as_published(tmp_path, warped):
    write_spair(tmp_path, warped)
    data = read_spair(tmp_path, "test")
    assert data.reference == "bbox" and data.problems == []
    assert [p.category for p in data.pairs] == ["chelsea", "coffee", "astronaut"]
    p = data.pairs[1]
    _, b, pa, pb = warped["coffee"]
    np.testing.assert_allclose(p.points_a, pa)           # (x, y) in the file, (y, x) here
    np.testing.assert_allclose(p.points_b, pb)
    assert p.bbox_b == (0, 0, b.shape[0] - 1, b.shape[1] - 1)
    assert p.image_a.is_file() and p.image_a.parent.name == "coffee"
    assert read_spair(tmp_path, "test", categories=["coffee"], limit=5).pairs[0].category == "coffee"


def test_spair_problems_are_one_line_each(tmp_path, warped):
    names = write_spair(tmp_path, warped)
    (tmp_path / "PairAnnotation" / "test" / f"{names[0]}.json").unlink()
    data = read_spair(tmp_path, "test", categories=["chelsea", "coffee", "zebra"])
    assert [p.category for p in data.pairs] == ["coffee"]
    assert any("annotation file missing" in m for m in data.problems)
    assert any("unknown category 'zebra'" in m for m in data.problems)
    assert all("\n" not in m for m in data.problems)
    (tmp_path / "PairAnnotation" / "val").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        read_spair(tmp_path, "val")
    with pytest.raises(DatasetError, match="PairAnnotation/trn"):
        read_spair(tmp_path, "trn")


def test_spair_without_layout_lists_the_annotations(tmp_path, warped):
    write_spair(tmp_path, warped, layout=False)
    assert len(read_pairs("spair", tmp_path).pairs) == 3


def test_pfpascal_layout(tmp_path, warped):
    write_pfpascal(tmp_path, warped, {"chelsea": 8, "coffee": 5, "astronaut": 15})
    mat = next((tmp_path / "Annotations" / "cat").glob("*t.mat"))
    from scipy.io import loadmat, savemat
    m = loadmat(mat)
    m["kps"][0] = np.nan                                   # an unlabelled keypoint in the target
    savemat(mat, {"kps": m["kps"], "bbox": m["bbox"]})
    data = read_pfpascal(tmp_path)
    assert data.reference == "image" and [p.category for p in data.pairs] == ["cat", "bottle", "person"]
    p = data.pairs[0]
    assert np.isnan(p.points_a[0]).all() and np.isnan(p.points_b[0]).all()   # not counted on either side
    np.testing.assert_allclose(p.points_b[1:], warped["chelsea"][3][1:])
    (tmp_path / "Annotations" / "person" / "2010_0002s.mat").unlink()
    data = read_pfpascal(tmp_path, categories=["cat", "person", "unicorn"])
    assert [p.category for p in data.pairs] == ["cat"]
    assert any("2010_0002s.mat missing" in m for m in data.problems)
    assert any("unknown category 'unicorn'" in m for m in data.problems)


def test_pairs_json_and_csv_agree(tmp_path, warped):
    a, b, pa, pb = warped["coffee"]
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    doc = {"reference": "bbox", "pairs": [{"image_a": "a.png", "image_b": "b.png", "points_a": pa.tolist(),
                                           "points_b": pb.tolist(), "bbox_b": [0, 0, 120, 160], "category": "cup"}]}
    (tmp_path / "pairs.json").write_text(json.dumps(doc))
    rows = ["image_a,image_b,y_a,x_a,y_b,x_b,category,bbox_b"] + [
        f"a.png,b.png,{ya},{xa},{yb},{xb},cup,0 0 120 160" for (ya, xa), (yb, xb) in zip(pa, pb)]
    (tmp_path / "pairs.csv").write_text("\n".join(rows))
    j, c = read_pairs_file(tmp_path), read_pairs_file(tmp_path / "pairs.csv")
    for d in (j, c):
        assert d.reference == "bbox" and len(d.pairs) == 1 and d.pairs[0].category == "cup"
        np.testing.assert_allclose(d.pairs[0].points_b, pb)
        assert d.pairs[0].bbox_b == (0, 0, 120, 160)
    doc["pairs"][0]["points_b"] = pb[:-1].tolist()
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="no pair left.*points in A"):
        read_pairs_file(tmp_path / "bad.json")


def test_sets_layout(tmp_path, photos):
    for s in ("cats", "empty"):
        (tmp_path / s / "images").mkdir(parents=True)
    (tmp_path / "cats" / "masks").mkdir()
    for i in range(2):
        Image.fromarray(photos["chelsea"]).save(tmp_path / "cats" / "images" / f"c{i}.jpg")
    Image.fromarray(np.zeros(photos["chelsea"].shape[:2], np.uint8)).save(tmp_path / "cats" / "masks" / "c0.png")
    sets, problems = read_sets(tmp_path)
    assert [s.name for s in sets] == ["cats"] and sets[0].masks[1] is None and sets[0].masks[0].is_file()
    assert any("c1.jpg has no mask" in p for p in problems) and any("set empty: no images" in p for p in problems)
    with pytest.raises(DatasetError, match="no <set>/images"):
        read_sets(tmp_path / "cats" / "masks")


# --------------------------------------------------------------------------- the semantic keypoint benchmark
SEMANTIC = REPO / "bench" / "data" / "semantic_kp"


def test_semantic_benchmark_is_spair_layout_split_by_image():
    """bench/data/semantic_kp: read by the SPair-71k reader; the study half (val) and the check half
    (test) share no image; every pair joins two images of one category and half; keypoints lie in
    their images, carry names, and the box holds the target's keypoints."""
    halves = {split: read_spair(SEMANTIC, split) for split in ("val", "test")}
    images = {split: {p.image_a for p in s.pairs} | {p.image_b for p in s.pairs} for split, s in halves.items()}
    assert not images["val"] & images["test"]
    pairs = [p for s in halves.values() for p in s.pairs]
    assert len(pairs) >= 30 and sum(len(p.points_a) for p in pairs) >= 250
    assert len({p.category for p in pairs}) >= 5 and not any(s.problems for s in halves.values())
    for split, s in halves.items():
        for p in s.pairs:
            ann = json.loads((SEMANTIC / "PairAnnotation" / split / f"{p.name}.json").read_text())
            a = json.loads((SEMANTIC / "ImageAnnotation" / p.category / f"{p.image_a.stem}.json").read_text())
            b = json.loads((SEMANTIC / "ImageAnnotation" / p.category / f"{p.image_b.stem}.json").read_text())
            assert a["half"] == b["half"] == {"val": "study", "test": "check"}[split]
            assert p.image_a != p.image_b and p.image_a.parent.name == p.image_b.parent.name == p.category
            names = [a["kps_names"][k] for k in ann["kps_ids"]]
            assert names == ann["kps_names"] and len(names) == len(p.points_a) == len(p.points_b)
            for pts, img in ((p.points_a, a), (p.points_b, b)):
                assert np.all((pts >= 0) & (pts < [img["image_height"], img["image_width"]]))
            y0, x0, y1, x1 = p.bbox_b
            assert np.all((p.points_b >= [y0 - 2, x0 - 2]) & (p.points_b <= [y1 + 2, x1 + 2]))

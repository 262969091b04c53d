"""Keypoint transfer across a set (vitdense.apps.transfer): the library on a real photo and its
mirrored and warped copies (exact ground truth), and the command line; the web tab is tested in
tests/web/tabs/test_transfer.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vitdense.apps.transfer import SetMatcher, source_index, transfer_points, transfer_points_descriptors
from vitdense.cli.main import main
from vitdense.errors import ParameterError
from tests import REPO

ASSETS = REPO / "assets"
LOAD = 140
W, H = 300, 200                      # the source photo's size
CROP, ZOOM = (20, 30), 1.2           # the warped copy: crop from (y, x), then scale
# the cat's nose and chin in the source (chelsea at 300 x 200); not the eyes: a mirrored left eye
# looks like a right eye
POINTS = [(150.0, 150.0), (180.0, 75.0)]


def truth(y: float, x: float) -> list[tuple[float, float]]:
    """Where (y, x) of the source lies on [source, mirrored copy, warped copy]."""
    return [(y, x), (y, W - x), ((y - CROP[0]) * ZOOM, (x - CROP[1]) * ZOOM)]


@pytest.fixture(scope="module")
def cat_set(photos) -> list[np.ndarray]:
    src = np.asarray(Image.fromarray(photos["chelsea"]).resize((W, H), Image.Resampling.LANCZOS))
    crop = src[CROP[0]:CROP[0] + 160, CROP[1]:CROP[1] + 250]
    warped = np.asarray(Image.fromarray(crop).resize((round(250 * ZOOM), round(160 * ZOOM)),
                                                     Image.Resampling.LANCZOS))
    return [src, np.ascontiguousarray(src[:, ::-1]), warped]


@pytest.fixture(scope="module")
def descs(bundled_extractor, cat_set):
    return bundled_extractor.extract(cat_set, layer=9, load_size=LOAD)


def test_points_land_where_they_should_on_mirrored_and_warped_copies(descs):
    res = transfer_points_descriptors(descs, 0, POINTS)
    assert res.matches.shape == (3, 2, 2) and res.similarity.shape == (3, 2)
    for p, (y, x) in enumerate(POINTS):
        for n in (1, 2):
            ty, tx = truth(y, x)[n]
            err = np.hypot(res.matches[n, p, 0] - ty, res.matches[n, p, 1] - tx)
            assert err < 20, (n, p, err)                  # a cell is ~10 px here
            assert 0.3 < res.similarity[n, p] <= 1.0
        assert np.hypot(*(res.matches[0, p] - (y, x))) < 8   # the source row: the clicked cell's centre
    # the heat map of a point peaks at its match
    heat = res.heatmap(1, 0)
    assert heat.shape == (H, W)
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert np.hypot(peak[0] - res.matches[1, 0, 0], peak[1] - res.matches[1, 0, 1]) < 15
    # the same answer as the pair matcher (one implementation)
    single = SetMatcher(descs, 0).query(*POINTS[0])
    assert single[2].point == tuple(res.matches[2, 0]) and single[2].is_best_buddy == res.mutual[2, 0]
    js = res.to_json(["a.png", "b.png", "c.png"])
    assert js["source"] == "a.png" and [m["image"] for m in js["points"][0]["matches"]] == ["b.png", "c.png"]


def test_bad_input_is_one_sentence(descs, bundled_extractor, cat_set):
    with pytest.raises(ParameterError, match=r"outside the source image \(300 x 200 pixels\)"):
        transfer_points_descriptors(descs, 0, [(10, 300)])
    with pytest.raises(ParameterError, match="a set of 1 image"):
        transfer_points_descriptors(descs[:1], 0, POINTS)
    with pytest.raises(ParameterError, match="a set of 1 image"):
        transfer_points(bundled_extractor, cat_set[:1], 0, POINTS)
    with pytest.raises(ParameterError, match="'dog.png' is not in the set"):
        source_index(["a.png", "b.png"], "dog.png")
    assert source_index(["x/a.png", "x/b.png"], "b") == 1 and source_index(["a.png", "b.png"], "b.png") == 1


def test_cli_transfer(cat_set, tmp_path, capsys):
    root = tmp_path / "sets" / "cat"
    root.mkdir(parents=True)
    for name, img in zip(("src.png", "mirror.png", "warp.png"), cat_set):
        Image.fromarray(img).save(root / name)
    out = tmp_path / "out"
    argv = ["transfer", str(root), "--source", "src.png", "--point", "150", "150", "--point", "75", "180",
            "--out", str(out), "--model", "dinov2_vits14_imgfocus", "--device", "cpu", "--load-size",
            str(LOAD), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((out / "cat" / "points.json").read_text())
    assert res["source"] == "src.png" and len(res["points"]) == 2
    order = {"mirror.png": 1, "warp.png": 2}
    for p, (y, x) in enumerate(POINTS):
        for m in res["points"][p]["matches"]:
            ty, tx = truth(y, x)[order[m["image"]]]
            assert np.hypot(m["y"] - ty, m["x"] - tx) < 20, m
    for f in res["files"]:
        assert np.asarray(Image.open(out / "cat" / f)).ndim == 3
    assert main([*argv[:2], "--source", "dog.png", *argv[4:]]) == 1          # a set that fails is skipped
    assert "'dog.png' is not in the set" in capsys.readouterr().err


"""Saliency maps (vitdense.apps.saliency): real photos with the salient object known by construction,
the export, the one-sentence errors, and the CLI command and web tab derived from the entry."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import paste_object
from vitdense.apps import APPS
from vitdense.apps.saliency import saliency, saliency_descriptors
from vitdense.apps.sets import resolve_options
from vitdense.cli.main import main
from vitdense.errors import ParameterError


@pytest.fixture(scope="module")
def pasted(photos):
    """Two photos with a known object: the cat's face and the astronaut, each pasted on bricks at
    another place; (images, masks)."""
    from skimage import data
    cat, cat_mask = paste_object(photos["chelsea"][30:280, 100:400], data.brick(), (240, 320), 0.5, (60, 80))
    man, man_mask = paste_object(photos["astronaut"][20:300, 120:380], data.brick(), (240, 320), 0.55, (20, 150))
    return [cat, man], [cat_mask, man_mask]


@pytest.fixture(scope="module")
def result(bundled_extractor, pasted):
    return saliency(bundled_extractor, pasted[0], load_size=112)


def test_the_object_is_where_the_model_looks(result, pasted):
    for i, (m, g, mask) in enumerate(zip(result.maps, result.geometries, pasted[1])):
        assert m.shape == g.grid and 0.0 <= m.min() and m.max() <= 1.0
        full = g.upsample(m, mode="bilinear")
        assert full.shape == mask.shape
        assert full[mask].mean() > 2 * full[~mask].mean(), i       # the object draws the attention
        y, x = result.peak(i)
        assert mask[int(y), int(x)], (i, y, x)                      # the peak lies on the object


def test_salient_share_follows_the_threshold(bundled_extractor, pasted, result):
    descs = bundled_extractor.extract(pasted[0], layer=11, facet="token", load_size=112, saliency=True)
    low, high = saliency_descriptors(descs, thresh=0.02), saliency_descriptors(descs, thresh=0.5)
    for a, b, m in zip(low.salient_share, high.salient_share, result.maps):
        assert 0.0 < b < a <= 1.0
        assert a == pytest.approx(float((m > 0.02).mean()))


def test_one_sentence_errors(bundled_extractor, pasted):
    with pytest.raises(ParameterError, match="thresh"):
        saliency(bundled_extractor, pasted[0][:1], thresh=1.5)
    plain = bundled_extractor.extract(pasted[0][:1], layer=11, facet="token", load_size=112)
    with pytest.raises(ParameterError, match="saliency=True"):
        saliency_descriptors(plain)


def test_export_and_the_command_derived_from_the_entry(result, pasted, tmp_path, capsys):
    app = APPS["saliency"]
    assert resolve_options(app, {}, "dinov2_vits14_imgfocus")["run"]["thresh"] == 0.065   # the defaults row
    from vitdense.apps.registry import Inputs
    entries = app.export(result, Inputs(pasted[0], ["cat.png", "man.png"]), ["cat", "man"])
    assert entries["cat_saliency.png"].shape == pasted[0][0].shape
    assert entries["man_saliency_map.png"].shape == pasted[0][1].shape[:2]
    assert [r["image"] for r in entries["saliency.json"]["images"]] == ["cat.png", "man.png"]
    root = tmp_path / "set"
    root.mkdir()
    from PIL import Image
    for name, img in zip(("cat.png", "man.png"), pasted[0]):
        Image.fromarray(img).save(root / name)
    assert main(["saliency", str(root), "--out", str(tmp_path / "out"), "--load-size", "112",
                 "--thresh", "0.1", "--model", "dinov2_vits14_imgfocus"]) == 0
    out = tmp_path / "out" / "set"
    report = json.loads((out / "saliency.json").read_text())
    assert report["thresh"] == 0.1 and len(report["images"]) == 2
    assert json.loads((out / "params.json").read_text())["thresh"] == 0.1
    assert {p.name for p in out.glob("*.png")} == {"cat_saliency.png", "cat_saliency_map.png",
                                                   "man_saliency.png", "man_saliency_map.png"}
    assert "saliency of 2 image(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:       # an application that takes no layer has no --layer
        main(["saliency", str(root), "--out", str(tmp_path / "x"), "--layer", "3"])
    assert exit_.value.code == 2


def test_sets_equal_the_descriptor_path(bundled_extractor, pasted, result):
    descs = bundled_extractor.extract(pasted[0], layer=11, facet="token", load_size=112, saliency=True)
    again = saliency_descriptors(descs)
    for a, b in zip(again.maps, result.maps):
        np.testing.assert_allclose(a, b, atol=1e-5)

"""Uploads and settings as the handlers take them (vitdense.web.inputs): descriptor settings, odd and
bad uploads, the example pairs; the handlers called directly on the bundled model."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from vitdense import web as webapp
from tests.web import _handlers
from tests.web._handlers import ASSETS, CAT_A, CAT_B, CATS, LOAD, shown

#: the module-scoped autouse fixture (as in tests/web/tabs/conftest.py): the session's bundled extractor
pool = _handlers.pool


def test_descriptor_settings_auto_follow_the_task_and_the_model():
    s = webapp.descriptor_settings("dinov2_vits14_imgfocus", "correspondences")   # layer: vitdense.defaults (measured)
    assert s == dict(layer=7, facet="token", stride=7, load_size=224, bin=False)
    s = webapp.descriptor_settings("dino_vits8", "correspondences")      # the paper's settings
    assert s == dict(layer=9, facet="key", stride=4, load_size=224, bin=True)
    s = webapp.descriptor_settings("dino_vits8", "cosegmentation", "5", "value", "8", 336, "on")
    assert s == dict(layer=5, facet="value", stride=8, load_size=336, bin=True)
    assert webapp.stride_choices("dinov2_vits14_imgfocus") == ["auto", "1", "2", "7", "14"]
    with pytest.raises(gr.Error, match="stride=5 must divide the patch size 14"):
        webapp.run_correspondences(CAT_A, CAT_B, stride="5", load_size=LOAD)
    with pytest.raises(gr.Error, match="layer='x': expected auto or a whole number"):
        webapp.run_cosegmentation(CATS[:2], layer="x")
    with pytest.raises(gr.Error, match="layer=40 is out of range"):
        webapp.run_pca(CATS[:1], layer="40", load_size=112)


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """The kinds of upload a visitor may send, made from a real photo."""
    d = tmp_path_factory.mktemp("uploads")
    photo = Image.open(CAT_A).convert("RGB")                   # 400 x 266
    out = {}
    rgba = photo.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "rgba.png"); out["rgba"] = d / "rgba.png"
    g16 = (np.asarray(photo.convert("L"), np.uint16) * 257)
    Image.fromarray(g16).save(d / "gray16.png"); out["gray16"] = d / "gray16.png"
    photo.convert("CMYK").save(d / "cmyk.jpg"); out["cmyk"] = d / "cmyk.jpg"
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png"); out["palette"] = d / "palette.png"
    exif = Image.Exif()
    exif[0x0112] = 6                                           # "rotate 90 CW to display"
    photo.save(d / "exif.jpg", exif=exif); out["exif"] = d / "exif.jpg"
    photo.resize((2400, 1596)).save(d / "large.jpg"); out["large"] = d / "large.jpg"
    (d / "notes.jpg").write_text("these are not pixels"); out["text"] = d / "notes.jpg"
    data = (ASSETS / "pairs/cat_a.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2]); out["truncated"] = d / "truncated.jpg"
    return out


def test_uploads_of_every_kind_become_rgb(odd_images):
    for kind in ("rgba", "gray16", "cmyk", "palette"):
        im = webapp.prepare_image(str(odd_images[kind]))
        assert im.image.mode == "RGB" and im.image.size == (400, 266), kind
    assert webapp.prepare_image(str(odd_images["exif"])).image.size == (266, 400)   # rotated
    with pytest.warns(UserWarning, match="downscaled to 1024 x 681"):
        big = webapp.prepare_image(str(odd_images["large"]))
    assert big.image.size == (1024, 681) and big.original_size == (2400, 1596)


def test_odd_uploads_run_end_to_end(odd_images):
    a, b, _, _, points, _, _ = webapp.run_correspondences(str(odd_images["exif"]), str(odd_images["cmyk"]),
                                                          5, load_size=112)
    assert shown(a).shape == (400, 266, 3) and shown(b).shape == (266, 400, 3) and len(points["pairs"]) == 5


def test_bad_uploads_give_one_clear_line(odd_images):
    with pytest.raises(gr.Error, match="notes.jpg: not a readable image"):
        webapp.run_correspondences(str(odd_images["text"]), CAT_B)
    with pytest.raises(gr.Error, match="truncated.jpg: corrupt or truncated image"):
        webapp.run_similarity(str(odd_images["truncated"]), CAT_B)
    with pytest.raises(gr.Error, match="at least 2 images"):
        webapp.run_cosegmentation(CATS[:1])
    with pytest.raises(gr.Error, match="at least 2 images"):
        webapp.run_part_cosegmentation(None)
    with pytest.raises(gr.Error, match="31 images is more than the demo's maximum of 30"):
        webapp.run_cosegmentation(CATS * 6 + CATS[:1])
    with pytest.raises(gr.Error, match="not a readable image"):
        webapp.run_pca([CATS[0], str(odd_images["text"])])


def test_example_pairs_say_what_they_are():
    """The mirrored pairs are labelled as mirrored (left/right swaps are expected), the cat pair
    comes first (the landing result) and a pair of different animals is offered."""
    from vitdense.web.inputs import example_pairs, pair_caption
    pairs = example_pairs()
    names = [Path(a).name for a, _ in pairs]
    assert names[:2] == ["cat_a.jpg", "animals_a.jpg"] and all(Path(b).is_file() for _, b in pairs)
    caption = pair_caption(pairs)
    assert "1. the cat and a **mirrored** crop" in caption and "2. a horse and a zebra" in caption
    assert caption.count("mirrored") == 3
    licences = (ASSETS / "LICENSES.md").read_text()
    assert "pairs/animals_a.jpg" in licences and "GPL-2" in licences

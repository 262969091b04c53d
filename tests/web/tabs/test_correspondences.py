"""The Correspondences tab's handlers (vitdense.web.tabs.correspondences): automatic pairs on the
mirrored cat pair, clicks from the session's descriptors, the download, bad clicks."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from vitdense import web as webapp
from tests.web._handlers import CAT_A, CAT_B, LOAD, ma, png, read_zip, shown


@pytest.fixture(scope="module")
def pair_run():
    return webapp.run_correspondences(CAT_A, CAT_B, 10, load_size=LOAD)


def test_correspondences_find_the_mirrored_places(pair_run):
    a, b, heat, md, points, zip_path, session = pair_run
    a, b = shown(a), shown(b)
    assert a.shape == (266, 400, 3) and b.shape == (238, 340, 3)     # the images as uploaded
    assert "10 automatic pairs" in md
    # the heat map's box holds B as given until a click (the page draws the heat map over it)
    np.testing.assert_array_equal(shown(heat), np.asarray(Image.open(CAT_B).convert("RGB")))
    assert len(points["pairs"]) == 10 and points["clicks"] == []
    err = [np.hypot(*np.subtract(ma.cat_b_from_a(p["a"]["x"], p["a"]["y"]), (p["b"]["x"], p["b"]["y"])))
           for p in points["pairs"]]
    assert np.median(err) < 15, err                       # a cell of B is ~12 px at this load size
    assert np.mean(np.asarray(err) < 25) >= 0.7, err
    # the numbered points are drawn: the pictures differ from the photos around each point
    photo_a = np.asarray(Image.open(CAT_A).convert("RGB"))
    for p in points["pairs"]:
        y, x = int(p["a"]["y"]), int(p["a"]["x"])
        assert np.abs(a[y - 2:y + 3, x - 2:x + 3].astype(int) - photo_a[y - 2:y + 3, x - 2:x + 3]).max() > 40
    files = read_zip(zip_path)
    assert json.loads(files["points.json"])["pairs"] == points["pairs"]
    assert json.loads(files["params.json"])["layer"] == 7   # the bundled DINOv2 default (vitdense.defaults)
    assert png(files["A_cat_a_points.png"]).shape == a.shape


def test_clicks_match_without_the_network_and_accumulate(pair_run, bundled_extractor):
    session = pair_run[-1]
    calls = bundled_extractor.num_forward_calls
    outs = []
    for x, y in [(200, 200), (100, 240), (300, 60)]:   # nose, chin, forehead (not the eyes: a
        outs.append(webapp.match_point(session, x, y))  # mirrored left eye looks like a right eye)
        session = outs[-1][-1]
    # descriptors come from the session (a click's speed: bench/bench_click.py)
    assert bundled_extractor.num_forward_calls == calls
    a, b, heat, md, points, zip_path, session = outs[-1]
    b, heat = shown(b), shown(heat)
    assert [c["id"] for c in points["clicks"]] == ["a", "b", "c"]
    for click in points["clicks"][:2]:
        ex, ey = ma.cat_b_from_a(click["a"]["x"], click["a"]["y"])
        assert np.hypot(click["b"]["x"] - ex, click["b"]["y"] - ey) < 20, click
        assert isinstance(click["mutual"], bool) and -1 <= click["similarity"] <= 1
    assert "| a |" in md and "| c |" in md
    assert heat is not None and heat.shape == b.shape
    # each click has its own colour: the three markers on B are drawn in three different colours
    colours = {tuple(b[int(c["b"]["y"]), int(c["b"]["x"]) - 3]) for c in points["clicks"]}
    assert len(colours) == 3
    assert zip_path is None       # a click writes no zip: "Prepare download" builds it
    assert len(json.loads(read_zip(webapp.correspondences_download(session))["points.json"])["clicks"]) == 3
    # the button clears the clicks, the automatic pairs stay
    a2, b2, heat2, _, points2, _, session2 = webapp.clear_points(session)
    assert points2["clicks"] == [] and len(points2["pairs"]) == 10
    np.testing.assert_array_equal(shown(heat2), shown(pair_run[2]))     # B as given again
    np.testing.assert_array_equal(shown(b2), shown(pair_run[1]))
    # the page's state holds only a key: the session itself lives in the server's store
    assert isinstance(pair_run[-1], str) and session2 == pair_run[-1]
    from vitdense.web.gate import JOBS
    assert JOBS.results.get(session2, "").clicks == []


def test_pair_zip_follows_the_clicks_and_is_strict_json(pair_run):
    """The download shows what the page shows: the clicks drawn on A and B after a click, the
    automatic-pairs pictures again after 'clear' (the session's PNG bytes, not encoded again)."""
    first = read_zip(pair_run[5])
    clicked = webapp.match_point(pair_run[-1], 200, 200)
    files = read_zip(webapp.correspondences_download(clicked[-1]))
    assert files["A_cat_a_points.png"] == Path(clicked[0]).read_bytes()   # one encoding, shown and zipped
    assert files["B_cat_b_points.png"] == Path(clicked[1]).read_bytes()
    assert files["B_cat_b_points.png"] != first["B_cat_b_points.png"]
    assert json.loads(files["points.json"]) == json.loads(json.dumps(clicked[4]))
    cleared = read_zip(webapp.correspondences_download(webapp.clear_points(clicked[-1])[-1]))
    assert cleared["A_cat_a_points.png"] == first["A_cat_a_points.png"]
    assert cleared["B_cat_b_points.png"] == first["B_cat_b_points.png"]
    np.testing.assert_array_equal(png(cleared["A_cat_a_points.png"]), shown(pair_run[0]))
    for name in ("points.json", "params.json"):                  # no bare NaN: strict JSON
        json.loads(cleared[name], parse_constant=lambda c: pytest.fail(f"{name} holds {c}"))


def test_click_before_extraction_and_outside_the_image(pair_run):
    with pytest.raises(gr.Error, match="run correspondences first"):
        webapp.match_point(None, 10, 10)
    with pytest.raises(gr.Error, match="outside image A"):
        webapp.match_point(pair_run[-1], 400, 10)            # A is 400 px wide: x = 400 is outside
    with pytest.raises(gr.Error, match="outside image A"):
        webapp.match_point(pair_run[-1], 10, -1)
    with pytest.raises(gr.Error, match="two images"):
        webapp.run_correspondences(CAT_A, None)

"""The served demo driven by a real client: ``python app.py`` runs as a subprocess on a free
loopback port and gradio_client calls its documented API names (see vitdense/web/).

Ground truth: assets/make_assets.py (the cat pair's exact mapping, the pasted cat heads' boxes).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from tests import REPO

ASSETS = REPO / "assets"
CAT_A, CAT_B = ASSETS / "pairs/cat_a.jpg", ASSETS / "pairs/cat_b.jpg"
CATS = sorted((ASSETS / "cats").glob("*.jpg"))
from vitdense.apps import APPS  # noqa: E402
from vitdense.web import local_server  # noqa: E402

#: the documented API names: every registered application's (vitdense/apps.py)
API_NAMES = [f"/{name}" for app in APPS.values() for name in app.api_names]

_spec = importlib.util.spec_from_file_location("make_assets", ASSETS / "make_assets.py")
ma = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ma)


@contextlib.contextmanager
def serve_app(log_path: Path, timeout: float = 240.0) -> Iterator[str]:
    """Run ``python app.py`` on a free loopback port; yield its URL once it answers."""
    with local_server.serve_app(log_path, timeout=timeout) as server:
        yield server.url


@pytest.fixture(scope="module")
def app_url(artifacts_dir) -> Iterator[str]:
    with serve_app(artifacts_dir / "app_client_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


def rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_api_names_are_documented(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(API_NAMES) <= set(api)
    params = [p["parameter_name"] for p in api["/correspondences"]["parameters"]]
    assert params[:3] == ["image_a", "image_b", "num_pairs"] and "load_size" in params


def test_correspondences_then_clicks(client):
    from gradio_client import handle_file
    a, b, heat, md, points, zip_path = client.predict(
        handle_file(str(CAT_A)), handle_file(str(CAT_B)), num_pairs=8, load_size=140,
        api_name="/correspondences")
    assert rgb(a).shape == (266, 400, 3) and rgb(b).shape == (238, 340, 3)
    np.testing.assert_array_equal(rgb(heat), rgb(str(CAT_B)))     # B as given until a click's heat map
    assert len(points["pairs"]) == 8 and "8 automatic pairs" in md
    err = [np.hypot(*np.subtract(ma.cat_b_from_a(p["a"]["x"], p["a"]["y"]), (p["b"]["x"], p["b"]["y"])))
           for p in points["pairs"]]
    assert np.median(err) < 15, err
    with zipfile.ZipFile(zip_path) as zf:
        assert json.loads(zf.read("points.json"))["pairs"] == points["pairs"]

    times = []
    for x, y in [(200, 200), (100, 240)]:
        t = time.perf_counter()
        a2, b2, heat2, md2, points2, _ = client.predict(x, y, api_name="/match_point")
        times.append(time.perf_counter() - t)
    assert max(times) < 1.0, times          # round trip through the queue, no network pass
    assert [c["id"] for c in points2["clicks"]] == ["a", "b"]
    click = points2["clicks"][0]
    ex, ey = ma.cat_b_from_a(200, 200)
    assert np.hypot(click["b"]["x"] - ex, click["b"]["y"] - ey) < 20, click
    before, after = rgb(b), rgb(b2)
    changed = np.abs(after.astype(int) - before).max(axis=2) > 60
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 50
    near = np.hypot(xs - click["b"]["x"], ys - click["b"]["y"]) < 15
    assert near.sum() > 30                  # a marker at the match
    assert rgb(heat2).shape == before.shape and "| b |" in md2

    _, b3, heat3, _, points3, _ = client.predict(api_name="/clear_points")
    assert points3["clicks"] == []
    np.testing.assert_array_equal(rgb(heat3), rgb(str(CAT_B)))     # B as given again
    np.testing.assert_array_equal(rgb(b3), before)


def test_sessions_do_not_share_results(app_url, client):
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    other = Client(app_url, verbose=False)       # a second visitor, who ran nothing yet
    with pytest.raises(AppError, match="run correspondences first"):
        other.predict(10, 10, api_name="/match_point")


def test_saliency_tab_derived_from_the_registry(client):
    """An application with no tab module of its own gets a tab from its entry (vitdense.web.apptab):
    API name = application id, its web knob, the export's pictures and the download."""
    from gradio_client import handle_file
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/saliency"]
    assert "thresh" in [p["parameter_name"] for p in api["parameters"]]
    pasted = CATS[1:3]     # cat_2 and cat_3: the cat's head pasted on bricks and on grass
    gallery, md, zip_path = client.predict([{"image": handle_file(str(p))} for p in pasted], load_size=112,
                                           thresh=0.2, api_name="/saliency")
    assert [g["caption"] for g in gallery] == ["01_cat_2_saliency.png", "02_cat_3_saliency.png"]   # colour pictures
    assert "Saliency of 2 image(s)" in md and "above 0.2" in md
    with zipfile.ZipFile(zip_path) as zf:
        report = json.loads(zf.read("saliency.json"))
        assert json.loads(zf.read("params.json"))["thresh"] == 0.2
    for entry, box in zip(report["images"], [ma.face_box(f"cats/{p.name}") for p in pasted]):
        y0, x0, y1, x1 = box
        assert y0 <= entry["peak"]["y"] <= y1 and x0 <= entry["peak"]["x"] <= x1    # the pasted cat head


def test_cosegmentation_of_the_example_set(client):
    from gradio_client import handle_file
    overlays, cutouts, md, summary, zip_path = client.predict(
        [{"image": handle_file(str(p))} for p in CATS], load_size=112, api_name="/cosegmentation")
    assert len(overlays) == len(cutouts) == 5 and summary["num_images"] == 5
    with zipfile.ZipFile(zip_path) as zf:
        masks = {n: np.asarray(Image.open(io.BytesIO(zf.read(n)))) > 127
                 for n in zf.namelist() if n.startswith("masks/")}
    assert len(masks) == 5
    for i, p in enumerate(CATS):
        m = masks[f"masks/{i + 1:02d}_{p.stem}.png"]
        assert m.shape == rgb(str(p)).shape[:2]
        key = f"cats/{p.name}"
        if key in ma.CAT_PASTES:
            y0, x0, y1, x1 = ma.face_box(key)
            gt = np.zeros(m.shape, bool)
            gt[y0:y1, x0:x1] = True
            iou = (m & gt).sum() / (m | gt).sum()
            assert iou > 0.5, (p.name, iou)


def test_bad_input_messages(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels")
    with pytest.raises(AppError, match="notes.jpg: not a readable image"):
        client.predict(handle_file(str(text)), handle_file(str(CAT_B)), api_name="/correspondences")
    with pytest.raises(AppError, match="at least 2 images"):
        client.predict([{"image": handle_file(str(CATS[0]))}], api_name="/cosegmentation")
    # the server is still up and answers after the errors
    api = client.view_api(print_info=False, return_format="dict")
    assert "/pca" in api["named_endpoints"]


@pytest.mark.parametrize("new, old, knobs", [("/parts", "/part_cosegmentation", {}),
                                             ("/transfer", "/transfer_extract", {"source": 0})])
def test_a_run_answers_under_its_app_id_and_its_old_api_name(client, new, old, knobs):
    """app id = run API name; the old name is a deprecated alias with the same inputs and outputs
    (keyword arguments included)."""
    from gradio_client import handle_file
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert new in api and api[old]["description"].startswith("Deprecated")
    images = [{"image": handle_file(str(p))} for p in CATS[:2]]
    a, b = (client.predict(images, load_size=112, api_name=name, **knobs) for name in (new, old))
    assert len(a) == len(b) and a[2] == b[2]                     # the same summary either way

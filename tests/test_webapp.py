"""The web demo's handlers (vitdense/web/), called directly on the bundled model and on the
example photographs in assets/ (no server; tests/test_app_client.py and test_app_browser.py drive
the served app).

Ground truth comes from assets/make_assets.py: the exact mapping from pairs/cat_a.jpg to its
mirrored crop pairs/cat_b.jpg, and the boxes of the cat head pasted in cats/cat_2..4.jpg.
"""
from __future__ import annotations

import importlib.util
import io
import json
import logging
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from vitdense import web as webapp

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
CAT_A, CAT_B = str(ASSETS / "pairs/cat_a.jpg"), str(ASSETS / "pairs/cat_b.jpg")
CATS = sorted(str(p) for p in (ASSETS / "cats").glob("*.jpg"))
LOAD = 140  # small load size: every test here runs on two CPU cores


def _make_assets():
    spec = importlib.util.spec_from_file_location("make_assets", ASSETS / "make_assets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ma = _make_assets()


@pytest.fixture(scope="module", autouse=True)
def pool(bundled_extractor):
    """The handlers use the session's bundled extractor (no second copy of the model)."""
    webapp.POOL.put(bundled_extractor)
    return webapp.POOL


def shown(path: str | None) -> np.ndarray | None:
    """A picture the demo shows (a PNG file it wrote) as an array."""
    return None if path is None else np.asarray(Image.open(path).convert("RGB"))


def read_zip(path: str) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# ---------------------------------------------------------------------------------------------
# correspondences and clicks
# ---------------------------------------------------------------------------------------------
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
    times = []
    outs = []
    for x, y in [(200, 200), (100, 240), (300, 60)]:   # nose, chin, forehead (not the eyes: a
        t = time.perf_counter()                       # mirrored left eye looks like a right eye)
        outs.append(webapp.match_point(session, x, y))
        times.append(time.perf_counter() - t)
        session = outs[-1][-1]
    assert bundled_extractor.num_forward_calls == calls   # descriptors come from the session
    assert np.median(times) < 1.0, times                  # the "well under a second"
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


# ---------------------------------------------------------------------------------------------
# co-segmentation and parts
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coseg_run():
    return webapp.run_cosegmentation(CATS, load_size=LOAD)


def _box_scores(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    gt = np.zeros(mask.shape, bool)
    y0, x0, y1, x1 = box
    gt[y0:y1, x0:x1] = True
    inter = (mask & gt).sum()
    return inter / max((mask | gt).sum(), 1), inter / max(mask.sum(), 1)


def test_cosegmentation_masks_cover_the_pasted_cat(coseg_run):
    overlays, cutouts, md, summary, zip_path, session = coseg_run
    assert len(overlays) == len(cutouts) == len(CATS) == 5
    assert [name for _, name in overlays] == [Path(p).name for p in CATS]
    files = read_zip(zip_path)
    masks = {n: png(files[f"masks/{i + 1:02d}_{Path(n).stem}.png"]) > 127
             for i, n in enumerate(Path(p).name for p in CATS)}
    for name in ma.CAT_PASTES:
        iou, precision = _box_scores(masks[Path(name).name], ma.face_box(name))
        assert iou > 0.6 and precision > 0.8, (name, iou, precision)
    for i, p in enumerate(CATS):                      # masks at each image's size, summary agrees
        h, w = np.asarray(Image.open(p)).shape[:2]
        m = masks[Path(p).name]
        assert m.shape == (h, w)
        assert abs(summary["images"][i]["foreground_fraction"] - m.mean()) < 1e-3
        # the cut-out keeps the photo inside the mask and replaces the outside by a checkerboard
        photo = np.asarray(Image.open(p).convert("RGB"))
        np.testing.assert_array_equal(cutouts[i][0][m], photo[m])
        assert np.abs(cutouts[i][0][~m].astype(int) - photo[~m]).mean() > 20
    assert json.loads(files["params.json"])["thresh"] == 0.065
    # the vote in words, with the Votes % of the page (DINOv2: counted where a cluster appears)
    assert "clusters" in md and "75% of the images where it appears vote for it" in md and "needs" not in md


def test_intermediate_maps_on_demand(coseg_run):
    clusters, saliency = webapp.coseg_maps(coseg_run[-1])
    assert len(clusters) == len(saliency) == 5
    assert clusters[0][0].shape == saliency[0][0].shape == np.asarray(Image.open(CATS[0])).shape
    assert "salient" in clusters[0][1]
    with pytest.raises(gr.Error, match="co-segmentation first"):
        webapp.coseg_maps(None)


def test_part_cosegmentation_and_reclustering_from_the_cache(bundled_extractor):
    gallery, fig, selector, legend, summary, zip_path, session = webapp.run_part_cosegmentation(
        CATS, 4, load_size=LOAD)
    assert summary["num_parts"] == 4 and len(gallery) == 5
    files = read_zip(zip_path)
    maps = [png(files[f"label_maps/{i + 1:02d}_{Path(p).stem}.png"]) for i, p in enumerate(CATS)]
    assert all(m.max() <= 4 for m in maps)
    # parts are common to the set: the largest part appears in every image
    assert all((m == 1).mean() > 0.02 for m in maps), [(m == 1).mean() for m in maps]
    # consistent colours: the largest part is tinted alike in every image (blue = PALETTE[0])
    colours = np.array([gallery[i][0][maps[i] == 1].mean(axis=0) for i in range(5)])
    assert np.abs(colours - colours.mean(axis=0)).max() < 30, colours
    assert (colours[:, 2] > colours[:, 0] + 20).all(), colours
    # the plotly view shows the part under the cursor
    hover = [t for t in fig.data if t.type == "heatmap"][0]
    assert "part 1" in set(np.asarray(hover.text).ravel()) and "background" in set(np.asarray(hover.text).ravel())
    assert "part 1" in legend
    # re-clustering into 3 parts reuses the session's descriptors: no network pass
    calls = bundled_extractor.num_forward_calls
    out = webapp.recluster_parts(session, 3)
    assert bundled_extractor.num_forward_calls == calls
    assert out[4]["num_parts"] == 3 and out[5] is None and \
        json.loads(read_zip(webapp.parts_download(out[-1]))["params.json"])["num_parts"] == 3
    fig4 = webapp.part_view(out[-1], 4)
    assert fig4.layout.title.text == Path(CATS[4]).name
    with pytest.raises(gr.Error, match="part co-segmentation first"):
        webapp.recluster_parts(None, 3)


def test_interactive_part_masks_highlight_toggle_and_opacity(bundled_extractor):
    """Click a part in one image: that part stays coloured in every image, the others look like the
    dimmed background; toggles hide parts; the opacity sets the colour blend. No network pass."""
    from vitdense.draw import part_colors
    from vitdense.web.guard import STORE  # the page's state is a key of the server's store
    *_, session = webapp.run_part_cosegmentation(CATS[:3], 3, load_size=LOAD, crf=False)
    calls = bundled_extractor.num_forward_calls
    maps = [np.asarray(m) for m in STORE.get(session).result.part_maps]
    ys, xs = np.nonzero(maps[1] == 1)
    gallery, click_img, fig, md, s2 = webapp.part_highlight(session, 1, int(xs[len(xs) // 2]),
                                                            int(ys[len(ys) // 2]))
    assert STORE.get(s2).highlight == 1 and "Part 1 highlighted in every image" in md
    assert bundled_extractor.num_forward_calls == calls
    for (img, _), pm, path in zip(gallery, maps, CATS[:3]):
        photo = np.asarray(Image.open(path).convert("RGB")).astype(int)
        other = (pm > 1)
        if other.any():                        # other parts: dimmed like the background (2/5)
            diff = np.abs(img[other].astype(int) - photo[other] * 2 // 5)
            assert np.median(diff) <= 1, np.median(diff)
        if (pm == 1).any():                    # the part itself: blended with its colour
            assert np.abs(img[pm == 1].astype(int) - photo[pm == 1] * 2 // 5).mean() > 20
    np.testing.assert_array_equal(click_img, gallery[1][0])
    # the shares table: one row per image, each part's share of the image's pixels
    for im, pm in zip(STORE.get(session).images, maps):
        assert f"<td>{im.name}</td>" in md
        assert f"{100 * (pm == 1).mean():.1f}%" in md
    # clicking the background shows every part again
    bg = np.argwhere(maps[0] == 0)[0]
    assert STORE.get(webapp.part_highlight(s2, 0, int(bg[1]), int(bg[0]))[-1]).highlight == 0
    # toggles: only part 2 shown; opacity 1: part pixels take the palette colour exactly (but edges)
    gallery, _, _, _, s3 = webapp.part_display(session, [2], 1.0)
    colour = part_colors(3)[1]
    for (img, _), pm in zip(gallery, maps):
        inside = pm == 2
        if inside.sum() > 50:
            assert np.mean(np.all(img[inside] == colour, axis=1)) > 0.6
        hidden = pm == 1
        if hidden.any():
            assert not np.any(np.all(img[hidden] == part_colors(3)[0], axis=1).mean() > 0.5)
    with pytest.raises(gr.Error, match="parts 1..3"):
        webapp.part_display(session, [7], 0.5)


def test_parts_toggles_win_over_a_highlight_and_show_all(bundled_extractor):
    """Toggling parts while one is highlighted shows the ticked parts (the highlight goes); "Show all
    parts" brings every part back; the hover view (plotly) follows the toggles and the opacity."""
    from vitdense.web.guard import STORE
    from vitdense.web.tabs import parts as parts_tab
    *_, key = webapp.run_part_cosegmentation(CATS[:3], 3, load_size=LOAD, crf=False)
    maps = [np.asarray(m) for m in STORE.get(key).result.part_maps]
    ys, xs = np.nonzero(maps[0] == 1)
    lit, *_ = webapp.part_highlight(key, 0, int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    gallery, _, fig, md, _ = webapp.part_display(key, [2, 3], 0.55)
    assert STORE.get(key).highlight == 0 and STORE.get(key).shown == (2, 3)
    changed = [not np.array_equal(a, b) for (a, _), (b, _) in zip(gallery, lit)]
    assert any(changed), "toggling parts while one was highlighted changed nothing"
    from vitdense.web.guard import status_reader          # each action says what it did
    assert status_reader("parts")().startswith("Showing parts 2, 3 at opacity 0.55")
    hover_parts = set(np.unique(np.asarray(fig.data[-1].z)))   # 0 background, p part p
    assert 1 not in hover_parts and hover_parts & {2, 3}, hover_parts   # part 1 hidden there too
    *view, toggles = parts_tab.show_all_parts(key)
    assert STORE.get(key).shown is None and STORE.get(key).highlight == 0
    assert toggles.value == [1, 2, 3]
    np.testing.assert_array_equal(view[0][0][0], parts_tab._view(STORE.get(key), 0))
    with pytest.raises(gr.Error, match="part co-segmentation first"):
        webapp.part_highlight(None, 0, 1, 1)


# ---------------------------------------------------------------------------------------------
# similarity and PCA
# ---------------------------------------------------------------------------------------------
def test_similarity_inspector_top_patches():
    a, b, md, session = webapp.run_similarity(CAT_A, CAT_B, load_size=LOAD)
    assert a.shape == (266, 400, 3) and "click" in md
    map_a, map_b, md, info = webapp.similarity_point(session, 200, 200, 5)
    assert len(info["top_a"]) == len(info["top_b"]) == 5
    # the most similar patch of A to the query is the query's own cell
    assert info["top_a"][0]["x"] == info["query_cell"]["x"] and info["top_a"][0]["y"] == info["query_cell"]["y"]
    assert info["top_a"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    ex, ey = ma.cat_b_from_a(200, 200)
    assert np.hypot(info["top_b"][0]["x"] - ex, info["top_b"][0]["y"] - ey) < 25, info["top_b"][0]
    assert map_a.shape == a.shape and map_b.shape == b.shape and not np.array_equal(map_a, a)
    with pytest.raises(gr.Error, match="extract the images first"):
        webapp.similarity_point(None, 1, 1)


def test_pca_of_a_set_is_joint():
    gallery, md, zip_path = webapp.run_pca(CATS[:2], load_size=112)
    assert len(gallery) == 2
    for (img, name), p in zip(gallery, CATS[:2]):
        assert img.shape == np.asarray(Image.open(p)).shape and name == Path(p).name
        assert img.reshape(-1, 3).std(axis=0).max() > 20          # the components vary
    assert "explained variance" in md
    files = read_zip(zip_path)
    assert len([n for n in files if n.startswith("pca/")]) == 2


# ---------------------------------------------------------------------------------------------
# video (when vitdense.apps.video provides it)
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not webapp.video_available(), reason="vitdense.apps.video has no video_parts")
def test_video_parts_clip():
    clip = str(ASSETS / "video/cat_pan.mp4")
    out, md, zip_path = webapp.run_video(clip, 3, 3, load_size=112)
    from vitdense.apps.video import read_video
    frames, _ = read_video(out)
    assert len(frames) == 20
    files = read_zip(zip_path)
    maps = [png(files[n]) for n in sorted(files) if n.startswith("label_maps/")]
    assert len(maps) == 20 and maps[0].shape == (150, 224)
    assert max(int(m.max()) for m in maps) <= 3 and any((m > 0).any() for m in maps)
    assert "3 parts" in md


# ---------------------------------------------------------------------------------------------
# settings, models, bad input, errors
# ---------------------------------------------------------------------------------------------
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


def test_model_choices_start_with_the_bundled_model():
    choices = webapp.model_choices(online=False)
    assert choices[0][1] == "dinov2_vits14_imgfocus"
    online = [name for _, name in webapp.model_choices(online=True)]
    assert "dino_vits8" in online


def test_unavailable_and_unknown_models_are_messages(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")              # no download attempt
    if webapp.weights_status("dino_vits8").available:
        pytest.skip("dino_vits8 weights are cached on this machine")
    with pytest.raises(gr.Error, match="weights of dino_vits8 .* are not available"):
        webapp.run_pca(CATS[:1], model="dino_vits8", load_size=112)
    with pytest.raises(gr.Error, match="unknown model 'nope'"):
        webapp.run_pca(CATS[:1], model="nope")


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


def test_out_of_memory_and_unexpected_errors_become_messages(monkeypatch, bundled_extractor, caplog):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(bundled_extractor, "forward", oom)
    with pytest.raises(gr.Error, match="Out of memory.*reduce load_size"):
        webapp.run_correspondences(CAT_A, CAT_B, load_size=LOAD)
    monkeypatch.undo()

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    from vitdense.web.tabs import correspondences as corr_tab
    monkeypatch.setattr(corr_tab, "find_correspondences_descriptors", boom)
    with caplog.at_level(logging.ERROR, logger="vitdense.web"):
        with pytest.raises(gr.Error) as info:
            webapp.run_correspondences(CAT_A, CAT_B, load_size=112)
    assert "secret" not in str(info.value) and "went wrong" in str(info.value)
    assert "unexpected error in run_correspondences" in caplog.text and "secret internal detail" in caplog.text


def test_layout_builds_with_stable_api_names():
    demo = webapp.build_demo(online=False)
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert {"correspondences", "match_point", "clear_points", "cosegmentation", "coseg_maps",
            "part_cosegmentation", "recluster_parts", "part_view", "similarity", "similarity_point",
            "pca"} <= names
    from vitdense.apps import APPS
    assert {n for app in APPS.values() for n in app.api_names} <= names     # the registry's names


def test_every_tab_starts_at_the_defaults_table():
    """Each application knob of the page starts at the defaults table's value for the page's model
    (vitdense/defaults.py), or at its function's default where the table has none; never empty
    (the Video tab once started at its sliders' minimum: no "video" entry in the table)."""
    from vitdense.apps import get_app
    from vitdense.defaults import task_defaults
    from vitdense.features.models import BUNDLED_MODEL
    demo = webapp.build_demo(online=False)
    knobs = [b for b in demo.blocks.values() if getattr(b, "knob", None)]
    seen = {b.knob[0] for b in knobs}
    assert {"correspondences", "cosegmentation", "parts", "similarity", "video"} <= seen, seen
    for block in knobs:
        app = get_app(block.knob[0])
        name = block.knob[1]
        table = task_defaults(app.task, BUNDLED_MODEL)
        expected = table[name] if name in table else app.default(name, BUNDLED_MODEL)
        assert block.value is not None and block.value == expected, (block.knob, block.value, expected)
    video = {b.knob[1]: b.value for b in knobs if b.knob[0] == "video"}
    parts = {b.knob[1]: b.value for b in knobs if b.knob[0] == "parts"}
    assert {k: video[k] for k in ("num_parts", "thresh", "elbow", "votes_percentage")} == \
        {k: parts[k] for k in ("num_parts", "thresh", "elbow", "votes_percentage")}


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

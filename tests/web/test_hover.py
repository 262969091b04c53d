"""The hover payload (vitdense.web.hover) read through PointMatcher's public accessor."""
from __future__ import annotations

import base64
import zlib

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from vitdense.apps.correspondences import PointMatcher
from vitdense.web.hover import BITS, matcher_payload
from tests import REPO

ASSETS = REPO / "assets"
CAT_A, CAT_B = str(ASSETS / "pairs/cat_a.jpg"), str(ASSETS / "pairs/cat_b.jpg")
CATS = sorted(str(p) for p in (ASSETS / "cats").glob("*.jpg"))


def unpack(entry: dict, dim: int) -> np.ndarray:
    """The page's decoding (static/hover.js decode) of one image's rows, in numpy."""
    raw = np.frombuffer(zlib.decompress(base64.b64decode(entry["q"])), np.uint8)
    half = raw.size // 2
    q = ((raw[:half].astype(np.int32) << 8) | raw[half:]).astype(np.uint16).view(np.int16)
    scale = np.frombuffer(base64.b64decode(entry["s"]), "<f4")
    return q.reshape(-1, dim).astype(np.float32) * scale[:, None]


def test_matcher_payload_sends_the_rows_the_queries_compare(bundled_extractor, photos):
    """unit_rows are the rows query() compares (its best cell is their argmax), and the payload
    carries them to within the 11-bit quantisation; the page's argmax agrees with query()."""
    cat, astro = photos["chelsea"][::2, ::2], photos["chelsea"][::2, ::-2]     # a mirrored pair
    d1, d2 = bundled_extractor.extract([cat, astro], layer=11, facet="token", load_size=112)
    m = PointMatcher(d1, d2).compact()
    a, b = m.unit_rows
    assert a.shape == d1.descs.shape and b.shape == d2.descs.shape
    np.testing.assert_allclose(a.float().norm(dim=1).numpy(), 1.0, atol=2e-3)
    payload = matcher_payload(m, run=7)
    assert payload["run"] == 7 and payload["targets"] == [1] and payload["dim"] == a.shape[1]
    rows_a, rows_b = (unpack(e, payload["dim"]) for e in payload["images"])
    assert np.abs(rows_a - a.float().numpy()).max() <= 1.0 / 2 ** (BITS - 1)
    g = d1.geometry
    centres = g.cell_centers()
    agree = []
    for y, x in centres[:: max(1, len(centres) // 60)]:
        server = m.query(float(y), float(x), refine=False).target_index
        page = int(np.argmax(rows_b @ rows_a[g.pixel_to_cell(float(y), float(x))]))
        direct = int(torch.argmax(b.float() @ a[g.pixel_to_cell(float(y), float(x))].float()))
        assert direct == server
        agree.append(page == server)
    assert np.mean(agree) >= 0.95, np.mean(agree)


# ---------------------------------------------------------------------------------------------
# clicks the page draws: the server answers with marks (marks_payload), not pictures
# ---------------------------------------------------------------------------------------------
LOAD = 140       # small load size: the handlers below run on two CPU cores


def written() -> set[str]:
    """Every file under the demo's output folder (what the handlers wrote)."""
    from vitdense.web.zips import output_root
    return {str(p) for p in output_root().rglob("*") if p.is_file()}


def skipped(value) -> bool:
    return isinstance(value, dict) and value == gr.skip()


def click(x: float, y: float) -> gr.SelectData:
    return gr.SelectData(None, {"index": [x, y], "value": None, "selected": True})


@pytest.fixture(scope="module")
def web(bundled_extractor):
    """The demo's handlers, on the session's bundled extractor."""
    from vitdense import web
    web.POOL.put(bundled_extractor)
    return web


def test_a_correspondence_click_the_page_draws_writes_nothing(web):
    """With the page drawing, a click's answer is the lettered marks at the server's refined
    points, the line from A to B and the heat map's source: the pictures are not sent, and no file
    is written. After a click the server drew (the API), the next drawn click sends the base
    pictures once."""
    from vitdense.web.tabs import correspondences as tab
    run = web.run_correspondences(CAT_A, CAT_B, 10, load_size=LOAD)
    key = run[-1]
    before = written()
    outs = [tab.click_correspondence(key, True, click(x, y)) for x, y in [(200, 200), (100, 240)]]
    assert written() == before                                   # 0 bytes of disk per click
    a, b, heat, md, points, zip_path, key2, marks = outs[-1]
    assert skipped(a) and skipped(b) and skipped(heat) and zip_path is None and key2 == key
    assert "| a |" in md and "| b |" in md
    pics = {p["id"]: p for p in marks["pictures"]}
    assert [m["label"] for m in pics[tab.A_PICTURE]["marks"]] == ["a", "b"]
    assert pics[tab.A_PICTURE]["size"] == [266, 400] and pics[tab.B_PICTURE]["size"] == [238, 340]
    for m, c in zip(pics[tab.B_PICTURE]["marks"], points["clicks"]):      # the server's refined points
        assert (m["x"], m["y"]) == (c["b"]["x"], c["b"]["y"])
    assert pics[tab.A_PICTURE]["marks"][1]["x"] == 100 and pics[tab.A_PICTURE]["marks"][1]["y"] == 240
    assert pics[tab.A_PICTURE]["avoid"], "the automatic pairs' labels are kept clear"
    [line] = marks["lines"]
    assert line["from"] == tab.A_PICTURE and line["to"] == tab.B_PICTURE and line["a"] == [240, 100]
    assert marks["heats"] == [{"id": tab.HEAT_PICTURE, "image": 1, "source": [240.0, 100.0]}]
    assert [m["color"] for m in pics[tab.A_PICTURE]["marks"]] == ["#ff00ff", "#00ffff"]
    # the server drew the next click's pictures (the API): a drawn click then sends the base ones
    drew = web.match_point(key, 300, 60)
    assert not skipped(drew[0])
    base = tab.click_correspondence(key, True, click(250, 100))
    np.testing.assert_array_equal(np.asarray(Image.open(base[1])), np.asarray(Image.open(run[1])))
    again = written()
    assert all(skipped(v) for v in tab.click_correspondence(key, True, click(250, 120))[:3])
    assert written() == again
    # without the page (no script): the server draws, no marks
    assert tab.click_correspondence(key, False, click(20, 20))[-1] is None


def test_transfer_and_similarity_clicks_the_page_draws(web):
    """Keypoint transfer: numbered points on the source and on each thumbnail of the gallery (in
    its order, which is the hover payload's), the last point's heat map on each; Similarity: the
    top-n numbered on A and B, the query a ring, both maps. No picture sent, no file written."""
    from vitdense.web.tabs import similarity, transfer
    *_, key, _ = transfer.run_transfer(CATS[:3], 1, load_size=LOAD)
    before = written()
    transfer.click_transfer(key, True, click(150, 120))
    src, targets, md, points, _, _, marks = transfer.click_transfer(key, True, click(200, 160))
    assert skipped(src) and skipped(targets) and written() == before
    pics = {p["id"]: p for p in marks["pictures"]}
    assert set(pics) == {transfer.SOURCE_PICTURE, f"{transfer.TARGETS_GALLERY}@0", f"{transfer.TARGETS_GALLERY}@1"}
    assert [m["label"] for m in pics[transfer.SOURCE_PICTURE]["marks"]] == ["1", "2"]
    # source 1: the gallery shows images 0 and 2, in that order
    for k in range(2):
        marks_k = pics[f"{transfer.TARGETS_GALLERY}@{k}"]["marks"]
        assert [m["label"] for m in marks_k] == ["1", "2"]
    assert marks["heats"] == [{"id": f"{transfer.TARGETS_GALLERY}@{k}", "image": k + 1, "source": [160.0, 200.0]}
                              for k in range(2)]
    payload = transfer.send_hover(key)
    assert [im["size"] for im in payload["images"][1:]] == [pics[f"{transfer.TARGETS_GALLERY}@{k}"]["size"]
                                                            for k in range(2)]

    _, _, _, skey = web.run_similarity(CAT_A, CAT_B, load_size=LOAD)
    before = written()
    a, b, md, info, marks = similarity.click_similarity(skey, 3, True, click(200, 200))
    assert skipped(a) and skipped(b) and written() == before
    pics = {p["id"]: p for p in marks["pictures"]}
    assert [m["label"] for m in pics[similarity.A_PICTURE]["marks"]] == ["1", "2", "3", ""]   # "": the query
    assert [(m["x"], m["y"]) for m in pics[similarity.B_PICTURE]["marks"]] == \
        [(p["x"], p["y"]) for p in info["top_b"]]
    assert [h["id"] for h in marks["heats"]] == [similarity.A_PICTURE, similarity.B_PICTURE]
    map_a, *_ = web.similarity_point(skey, 200, 200, 3)          # the server draws the maps
    assert map_a.shape == (266, 400, 3)
    plain = similarity.click_similarity(skey, 3, True, click(100, 100))[0]    # the images as given again
    np.testing.assert_array_equal(plain, a_photo := np.asarray(Image.open(CAT_A).convert("RGB")))
    assert a_photo.shape == (266, 400, 3)


def test_a_part_click_the_page_draws_sends_the_highlight_only(web):
    """Parts: the page dims the other parts itself; the server's answer is the part id, the hover
    view and the shares (the pictures are not sent). After a view the server drew with the highlight
    baked in, the next drawn click sends the pictures without it."""
    from vitdense.web.guard import STORE
    from vitdense.web.tabs import parts
    *_, key = web.run_part_cosegmentation(CATS[:3], 3, load_size=LOAD, crf=False)
    maps = [np.asarray(m) for m in STORE.get(key).result.part_maps]
    ys, xs = np.nonzero(maps[0] == 2)
    before = written()
    gallery, picture, fig, md, key2, marks = parts.click_part(key, True, click(int(xs[len(xs) // 2]),
                                                                             int(ys[len(ys) // 2])))
    assert skipped(gallery) and skipped(picture) and written() == before
    assert marks["highlight"] == 2 and STORE.get(key).highlight == 2 and "Part 2 highlighted" in md
    assert skipped(fig)                                              # the hover view follows it, next
    assert 1 not in set(np.unique(np.asarray(parts.part_figure(key).data[-1].z)))
    web.part_display(key, None, 0.8)                                  # the server draws the highlight in
    assert STORE.get(key).baked == 2
    gallery, *_ = parts.click_part(key, True, click(int(xs[len(xs) // 2]), int(ys[len(ys) // 2])))
    np.testing.assert_array_equal(gallery[0][0], parts._view(parts.updated(STORE.get(key), highlight=0), 0))
    assert STORE.get(key).baked == 0

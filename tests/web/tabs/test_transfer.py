"""The keypoint-transfer tab (vitdense.web.tabs.transfer): clicks transferred to every image of the
set without a network pass, and a real Chromium click that puts a marker on every target image."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from tests.web._handlers import ASSETS, CATS, ma


def _paste(name: str):
    _, _, scale, (y0, x0), flip = ma.CAT_PASTES[name]
    fy0, fy1 = ma.FACE[0].start, ma.FACE[0].stop
    fx0, fx1 = ma.FACE[1].start, ma.FACE[1].stop
    h, w = round((fy1 - fy0) * scale), round((fx1 - fx0) * scale)
    return y0, x0, h / (fy1 - fy0), w / (fx1 - fx0), flip, fx1 - fx0


def face_map(src: str, dst: str, y: float, x: float) -> tuple[float, float]:
    """A point of the pasted cat face in ``src`` -> the same point of the face in ``dst``."""
    y0, x0, sy, sx, flip, fw = _paste(src)
    cy, cx = (y - y0) / sy, (x - x0) / sx
    cx = fw - cx if flip else cx
    y0, x0, sy, sx, flip, fw = _paste(dst)
    cx = fw - cx if flip else cx
    return y0 + cy * sy, x0 + cx * sx


@pytest.fixture(scope="module")
def web_run(bundled_extractor):
    from vitdense.web import POOL
    from vitdense.web.tabs import transfer as web
    POOL.put(bundled_extractor)
    return web.run_transfer(CATS, 1, load_size=224)         # source: cat_2 (a pasted face, small: 224)


def test_web_clicks_transfer_to_every_image_without_the_network(web_run, bundled_extractor):
    from vitdense.web.tabs import transfer as web
    source, targets, md, points, file, session = web_run[:6]
    assert len(targets) == 4 and points is None and "cat_2.jpg" in md
    calls = bundled_extractor.num_forward_calls
    y, x = 70 + 0.55 * 195, 90 + 0.55 * 125          # the nose: chelsea (225, 225) in the pasted face
    for _ in range(2):
        web.transfer_clear(session)                  # clicks accumulate in the session: start afresh
        out = web.transfer_point(session, x, y)
    assert bundled_extractor.num_forward_calls == calls   # no network pass (a click's speed: the benches)
    src_pic, targets, md, points, file, session2 = out
    assert len(points["points"]) == 1 and len(targets) == 4
    from vitdense.web.guard import status_reader         # the click says what it did
    assert status_reader("transfer")().startswith("Point 1 (x=159, y=177) matched on 4 images")
    assert session2 == session                      # the page's state is a key of the server's store
    got = {m["image"]: m for m in points["points"][0]["matches"]}
    for other in ("cat_3.jpg", "cat_4.jpg"):
        ey, ex = face_map("cats/cat_2.jpg", f"cats/{other}", y, x)
        assert np.hypot(got[other]["x"] - ex, got[other]["y"] - ey) < 25, (other, got[other], ex, ey)
    import zipfile                                   # a click writes no file: the download is built on request
    with zipfile.ZipFile(web.transfer_download(session2)) as zf:
        assert file is None and json.loads(zf.read("points.json"))["points"] == points["points"]
    # each target shows a marker in the first point's colour at its match
    from vitdense.draw import point_colors
    colour = point_colors(1)[0].astype(int)
    for (img, caption), name in zip(targets, [n for n in (Path(c).name for c in CATS) if n != "cat_2.jpg"]):
        m = got[name]
        win = img[int(m["y"]) - 2:int(m["y"]) + 3, int(m["x"]) - 5:int(m["x"]) - 1].reshape(-1, 3).astype(int)
        assert (np.abs(win - colour).max(axis=1) < 40).any(), (name, win[:3])
    cleared = web.transfer_clear(session2)
    from vitdense.web.guard import STORE
    assert cleared[3] is None and STORE.get(cleared[-1]).points == []
    with pytest.raises(gr.Error, match="outside the source image"):
        web.transfer_point(session, 1000, 5)
    with pytest.raises(gr.Error, match="extract the set first"):
        web.transfer_point(None, 5, 5)
    with pytest.raises(gr.Error, match="at least 2 images"):
        web.run_transfer(CATS[:1])
    moved = web.transfer_source(session, 0)            # another source: no network pass either
    assert STORE.get(moved[-1]).matcher.source_index == 0 and bundled_extractor.num_forward_calls == calls


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent")
def test_chromium_click_marks_every_target(artifacts_dir):
    """Upload the cat set in the browser, extract, click the source once the page's hover engine is
    ready: the page draws the server's answer (no picture is sent): a mark in the first point's
    colour at the listed match over every target image. (Before the engine is ready the server draws
    the pictures instead: ``test_web_clicks_transfer_to_every_image_without_the_network``.)"""
    from playwright.sync_api import sync_playwright
    from tests.web.test_app_browser import ARGS, click_image_at
    from tests.web.test_app_client import serve_app

    from vitdense.draw import point_colors
    colour = "#" + "".join(f"{int(v):02x}" for v in point_colors(1)[0])
    with serve_app(artifacts_dir / "transfer_browser_server.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_role("tab", name="Keypoint transfer").click()
        page.set_input_files("#transfer-input input[type=file]", CATS)
        page.wait_for_function("() => document.querySelectorAll('#transfer-input img').length >= 5")
        page.click("#transfer-run")
        page.wait_for_function("() => document.querySelector('#transfer-summary')?.innerText.includes('ready')")
        page.wait_for_function("() => !!window.vdHover?.['transfer-source']?.ready")
        t = click_image_at(page, "#transfer-source img", 150.5, 150.5)
        page.wait_for_function("() => document.querySelector('#transfer-summary')?.innerText.includes('point(s)')")
        page.wait_for_function("() => window.vdMarks?.['transfer-source']?.pictures?.[0]?.marks?.length === 1")
        latency = time.perf_counter() - t
        page.mouse.move(1, 1)
        page.screenshot(path=str(artifacts_dir / "app_transfer_click.png"), full_page=True)
        summary = page.locator("#transfer-summary").inner_text()
        rows = re.findall(r"1\s+(cat_\d\.jpg)\s+(\d+), (\d+)", summary)
        assert len(rows) == 4, summary
        pictures = page.evaluate("() => window.vdMarks['transfer-source'].pictures")
        assert [q["id"] for q in pictures] == ["transfer-source"] + [f"transfer-targets@{k}" for k in range(4)]
        for (name, x, y), picture in zip(rows, pictures[1:]):
            w, h = Image.open(ASSETS / "cats" / name).size
            [mark] = picture["marks"]
            assert picture["size"] == [h, w], (name, picture["size"])      # in the target's own pixels
            assert abs(mark["x"] - int(x)) <= 1 and abs(mark["y"] - int(y)) <= 1, (name, mark, x, y)
            assert mark["color"] == colour and mark["label"] == "1", mark
        shown = page.evaluate("() => [...document.querySelectorAll('#transfer-targets canvas.vd-overlay')]"
                              ".filter(c => c.style.display !== 'none').length")
        assert shown == 4                                                  # drawn over every target
        (artifacts_dir / "transfer_click_latency.txt").write_text(f"{latency:.3f} s\n")
        browser.close()

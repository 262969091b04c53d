"""The served demo in a real browser: headless Debian Chromium driven by Playwright (sync API).

A visitor uploads two photos, runs correspondences, clicks a point on image A, and a marker
appears at the match on image B (checked on B's pixels before and after the click); a screenshot
is left in test-artifacts/.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.web.test_app_client import CAT_A, CAT_B, ma, serve_app

from tests import REPO

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (CI installs the Debian chromium package)"),
]


def click_image_at(page, selector: str, x: float, y: float) -> float:
    """Click the image under ``selector`` at its own pixel ``(x, y)``, wherever the page placed and
    scaled it (scrolled into view first); returns the ``time.perf_counter()`` of the click."""
    img = page.locator(selector)
    img.scroll_into_view_if_needed()
    scale = img.bounding_box()["width"] / img.evaluate("i => i.naturalWidth")
    box = img.bounding_box()
    t = time.perf_counter()
    page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)
    return t


@pytest.fixture(scope="module")
def app_url(artifacts_dir):
    with serve_app(artifacts_dir / "app_browser_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(app_url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_page(browser, app_url):
    """A new visitor's page of the served demo (``width`` x ``height`` viewport)."""
    def open_page(width: int = 1280, height: int = 1000):
        pg = browser.new_page(viewport={"width": width, "height": height})
        pg.set_default_timeout(120_000)
        pg.goto(app_url)
        pg.wait_for_selector("#corr-run")
        return pg
    return open_page


@pytest.fixture(scope="module")
def page(browser_page):
    return browser_page()


def image_pixels(page, selector: str) -> np.ndarray:
    """The picture currently shown by an <img> (fetched by the page's own session)."""
    src = page.locator(selector).get_attribute("src")
    body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def run_cat_pair(page, a: Path = CAT_A, b: Path = CAT_B) -> None:
    """Upload the cat pair (or ``a``, ``b``) and press Find correspondences (default settings); wait
    for the pairs (after the landing result, which shows the cat pair on arrival)."""
    page.wait_for_function("() => document.querySelector('#corr-summary')?.innerText.includes('automatic pairs')")
    page.set_input_files("#corr-a-input input[type=file]", str(a))
    page.set_input_files("#corr-b-input input[type=file]", str(b))
    page.wait_for_selector("#corr-a-input img")
    page.wait_for_selector("#corr-b-input img")
    page.click("#corr-run")
    page.wait_for_function("() => document.querySelector('#correspondences-status')?.innerText.includes('Found')")


def seen_pixels(page, selector: str, nth: int = 0) -> tuple[np.ndarray, float]:
    """What the visitor sees of the ``nth`` picture under ``selector`` (overlays drawn by the page
    included), and its display scale (screen px per picture px)."""
    img = page.locator(selector).nth(nth)
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB"))
    return shot, box["width"] / img.evaluate("i => i.naturalWidth")


def test_click_on_a_marks_the_match_on_b(page, artifacts_dir):
    """The page draws a click's answer: the server sends marks (a few hundred bytes), not pictures,
    and the lettered marker appears over B at the server's refined match."""
    run_cat_pair(page)
    page.wait_for_function(f"() => !!({HOVER}?.ready)")
    b_src = page.locator("#corr-b-output img").get_attribute("src")
    assert image_pixels(page, "#corr-b-output img").shape == (238, 340, 3)
    page.mouse.move(1, 1)
    before, scale = seen_pixels(page, "#corr-b-output img")

    # click the cat's nose, (x, y) = (200, 200) in A's pixels, wherever the page placed the picture
    t = click_image_at(page, "#corr-a-output img", 200.5, 200.5)
    page.wait_for_function("() => window.vdMarks?.['corr-a-output']?.pictures?.[0]?.marks?.length === 1")
    print(f"\ncorrespondence click: answered in {1000 * (time.perf_counter() - t):.0f} ms")
    page.mouse.move(1, 1)                          # (the hover preview goes; the marks stay)
    page.wait_for_timeout(200)
    after, _ = seen_pixels(page, "#corr-b-output img")
    summary = page.locator("#corr-summary").inner_text()
    page.screenshot(path=str(artifacts_dir / "app_correspondences_click.png"), full_page=True)

    assert page.locator("#corr-b-output img").get_attribute("src") == b_src     # no picture was sent
    changed = np.abs(after.astype(int) - before).max(axis=2) > 60
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 50, "no marker appeared over image B"
    [mark] = page.evaluate("() => window.vdMarks['corr-a-output'].pictures[1].marks")
    ex, ey = ma.cat_b_from_a(200.5, 200.5)
    assert np.hypot(mark["x"] - ex, mark["y"] - ey) < 25, (mark, ex, ey)       # the server's refined match
    assert mark["label"] == "a"
    assert np.hypot(np.median(xs) / scale - mark["x"], np.median(ys) / scale - mark["y"]) < 20
    assert "200, 200" in summary                   # the click, listed with its match

    page.click("#corr-clear")                      # B goes back to the automatic pairs only
    page.wait_for_function("() => document.querySelector('#corr-summary')?.innerText.includes('Click a point')")
    page.wait_for_function("() => !window.vdMarks?.['corr-a-output']")
    page.wait_for_timeout(300)
    cleared, _ = seen_pixels(page, "#corr-b-output img")
    assert (np.abs(cleared.astype(int) - before).max(axis=2) > 60).sum() < 0.2 * changed.sum()


def gallery_pixels(page, selector: str) -> list[np.ndarray]:
    srcs = page.locator(f"{selector} img").evaluate_all("els => els.map(e => e.src)")
    return [np.asarray(Image.open(io.BytesIO(page.request.get(s).body())).convert("RGB"))
            for s in dict.fromkeys(srcs)]


def test_click_a_part_highlights_it_in_every_image(page, artifacts_dir):
    """Parts tab: click a part in the picture -> that part highlighted in every image at once by the
    page (what the visitor sees changes everywhere; the server confirms the part and sends no
    picture); un-ticking a part's toggle: the server draws the pictures, the page's veil goes."""
    from tests.web.test_app_client import CATS
    page.get_by_role("tab", name="Part co-segmentation").click()
    page.set_input_files("#parts-input input[type=file]", [str(p) for p in CATS[:3]])
    page.wait_for_function("() => document.querySelectorAll('#parts-input img').length >= 3")
    page.click("#parts-run")
    page.wait_for_function("() => document.querySelector('#parts-legend')?.innerText.includes('parts over')")
    page.wait_for_selector("#parts-click img")
    page.wait_for_function("() => document.querySelectorAll('#parts-toggles input[type=checkbox]').length > 0")
    before = gallery_pixels(page, "#parts-gallery")
    assert len(before) == 3
    # legible gallery: each thumbnail keeps its picture's shape, its caption is under it (not over
    # it, not clipped), the gallery's label covers no picture and no empty band is left below
    shown = page.evaluate("""() => { const g = document.querySelector('#parts-gallery');
      const box = (e) => e.getBoundingClientRect();
      return {label: box(g.querySelector('label, [data-testid=block-label]') || g).bottom, gallery: box(g).bottom,
        items: [...g.querySelectorAll('.gallery-item')].map((it) => { const img = it.querySelector('img'),
          cap = it.querySelector('.caption-label'), r = box(img), c = box(cap);
          return {w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight, top: r.top,
                  capTop: c.top, capBottom: c.bottom, capText: cap.innerText, itemBottom: box(it).bottom}; })}; }""")
    for it in shown["items"]:
        assert abs(it["w"] / it["h"] - it["nw"] / it["nh"]) < 0.02, it
        assert it["capTop"] >= it["top"] + it["h"] - 1 and it["capText"].endswith(".jpg"), it
        assert it["capBottom"] <= it["itemBottom"] + 1 and it["top"] >= shown["label"] - 1, (it, shown["label"])
    assert shown["gallery"] - max(it["itemBottom"] for it in shown["items"]) < 40, shown
    page.wait_for_function("() => window.vdParts?.ready")
    srcs = page.locator("#parts-gallery img").evaluate_all("els => els.map(e => e.src)")
    page.mouse.move(1, 1)
    seen = [seen_pixels(page, "#parts-gallery img", k)[0] for k in range(3)]
    t = click_image_at(page, "#parts-click img", 160, 120)           # the middle of the cat
    veiled = page.evaluate("() => [...document.querySelectorAll('#parts-gallery canvas.vd-overlay')]"
                           ".filter(c => c.style.display !== 'none').length")
    pinned = page.evaluate("() => window.vdParts.pinTimes.slice(-1)[0]")
    page.wait_for_function("() => document.querySelector('#parts-highlight')")
    page.wait_for_function("() => window.vdParts.pinned !== null")     # the server's answer: the part
    latency = time.perf_counter() - t
    print(f"\npart click: highlighted in the page in {pinned:.1f} ms, the server's answer after "
          f"{1000 * latency:.0f} ms")
    # the page highlights before the server answers (its speed: bench/bench_click_page.py)
    assert veiled == 3 and pinned < 1000 * latency, (veiled, pinned, latency)
    part = int(page.locator("#parts-highlight").inner_text().split()[1])
    assert page.evaluate("() => window.vdParts.pinned") == part >= 1
    page.mouse.move(1, 1)
    changed = [float((np.abs(seen_pixels(page, "#parts-gallery img", k)[0].astype(int) - seen[k]).max(axis=2)
                      > 30).mean()) for k in range(3)]
    page.screenshot(path=str(artifacts_dir / "app_parts_highlight.png"), full_page=True)
    assert min(changed) > 0.01, (part, changed)                  # every image, as the visitor sees it
    assert page.locator("#parts-gallery img").evaluate_all("els => els.map(e => e.src)") == srcs  # none sent
    after = before
    # untick the highlighted part's toggle: it disappears from every image
    page.locator("#parts-toggles label", has_text=f"part {part}").click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hidden = gallery_pixels(page, "#parts-gallery")
        if all(not np.array_equal(h, a) for h, a in zip(hidden, after)):
            break
        time.sleep(0.3)
    assert all(not np.array_equal(h, a) for h, a in zip(hidden, after))
    page.wait_for_function("() => window.vdParts.pinned === null && [...document.querySelectorAll("
                           "'#parts-gallery canvas.vd-overlay')].every(c => c.style.display === 'none')")


HOVER = "window.vdHover && window.vdHover['corr-a-output']"


def hover_path(box: dict, n: int) -> list[tuple[float, float]]:
    """``n`` page positions over the picture in ``box``: a Lissajous curve over its middle."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [(box["x"] + box["width"] * (0.5 + 0.35 * np.sin(k)),
             box["y"] + box["height"] * (0.5 + 0.3 * np.sin(2 * k)))
            for k in t]


def record_hover_gif(page, img, path) -> int:
    """A short animated capture of hovering (A and B side by side); returns its size in bytes."""
    a = page.locator("#corr-a-output img").bounding_box()
    b = page.locator("#corr-b-output img").bounding_box()
    top, bottom = min(a["y"], b["y"]), max(a["y"] + a["height"], b["y"] + b["height"])
    clip = {"x": a["x"], "y": top, "width": b["x"] + b["width"] - a["x"], "height": bottom - top}
    frames = []
    for x, y in hover_path(img.bounding_box(), 14):
        page.mouse.move(x, y)
        shot = Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")
        shot.thumbnail((600, 600))
        frames.append(shot.quantize(colors=40, method=Image.Quantize.MEDIANCUT))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=120, loop=0, optimize=True)
    return os.path.getsize(path)


def hover_moves(page, source: str, n: int, shot) -> np.ndarray:
    """Move the mouse ``n`` times over ``#source img`` once its hover engine is ready; asserts that
    every move redrew the overlay in the page and that no request left it (how fast: the hover
    rows of bench/bench_click_page.py); returns the frame times (ms) and leaves a screenshot at
    ``shot``."""
    engine = f"window.vdHover['{source}']"
    page.wait_for_function(f"() => !!(window.vdHover && {engine}?.ready)")
    img = page.locator(f"#{source} img")
    img.scroll_into_view_if_needed()
    start = page.evaluate(f"() => {engine}.moves")
    requests: list[str] = []

    def on_request(r) -> None:
        requests.append(r.url)
    page.on("request", on_request)
    for x, y in hover_path(img.bounding_box(), n):
        page.mouse.move(x, y)
    page.wait_for_function(f"(m) => {engine}.moves >= m", arg=start + n)
    frames = np.array(page.evaluate(f"(n) => {engine}.frames.slice(-n)", n))
    page.screenshot(path=str(shot), full_page=False)
    page.remove_listener("request", on_request)
    print(f"\n{source}: hover over {n} moves: median {np.median(frames):.1f} ms, p95 "
          f"{np.percentile(frames, 95):.1f} ms, max {frames.max():.1f} ms ({1000 / np.median(frames):.0f} "
          f"frames/s at the median); {len(requests)} requests")
    assert requests == [], requests[:5]
    assert len(frames) == n and (frames >= 0).all(), frames      # one frame per move, each measured
    return frames


def test_hover_previews_the_match_in_the_page(page, app_url, bundled_extractor, artifacts_dir):
    """After a run, moving over A answers in the page: 100 moves, frame times (mouse move ->
    redrawn overlay) at >= 30 frames/s, no request to the server; the hovered best cell equals the
    server's (PointMatcher.query(refine=False)) at >= 99% of A's positions and /match_point's at
    cell centres."""
    from gradio_client import Client

    from vitdense.apps.correspondences import PointMatcher
    from vitdense.features.models import BUNDLED_MODEL
    from vitdense.ops.mirror import extract_oriented
    from vitdense.web.inputs import descriptor_settings, prepare_pair

    page.get_by_role("tab", name="Correspondences").click()
    # the landing result's (or an earlier run's) payload first, then this run's: moves made while a
    # new payload arrives would be counted by the engine it replaces
    page.wait_for_function(f"() => !!({HOVER}?.ready)")
    before = page.evaluate(f"() => ({HOVER}).run")
    run_cat_pair(page)
    page.wait_for_function(f"(old) => !!({HOVER}?.ready) && ({HOVER}).run !== old", arg=before)
    img = page.locator("#corr-a-output img")
    hover_moves(page, "corr-a-output", 100, artifacts_dir / "app_correspondences_hover.png")

    # the hovered best cell against the server's rule, computed here on the same pictures
    images = prepare_pair(str(CAT_A), str(CAT_B))
    settings = descriptor_settings(BUNDLED_MODEL, "correspondences")
    d1, d2, _ = extract_oriented(bundled_extractor, images[0].image, images[1].image, **settings)  # as the tab
    matcher = PointMatcher(d1, d2).compact()
    h, w = d1.geometry.orig_size
    points = [(x, y) for y in range(0, h, 4) for x in range(0, w, 4)]
    hovered = page.evaluate(f"(pts) => pts.map(([x, y]) => {HOVER}.bestCell(x, y).targets[0].best)", points)
    server = [matcher.query(y, x, refine=False).target_index for x, y in points]
    agreement = float(np.mean(np.equal(hovered, server)))
    print(f"hovered best cell = server's at {agreement:.2%} of {len(points)} positions")
    assert agreement >= 0.99

    # /match_point of the same server, at cell centres of A (where the sub-cell query is the cell's)
    client = Client(app_url, verbose=False)
    from gradio_client import handle_file
    client.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), api_name="/correspondences")
    centres = d1.geometry.cell_centers()
    grid_h, grid_w = d1.geometry.grid
    for i, j in [(10, 20), (15, 25), (20, 30), (12, 15), (18, 10), (8, 35)]:
        y, x = centres[i * grid_w + j]
        *_, points_json, _ = client.predict(float(x), float(y), api_name="/match_point")
        b_cell = points_json["clicks"][-1]["b_cell"]
        js = page.evaluate(f"([x, y]) => {HOVER}.bestCell(x, y).targets[0]", [float(x), float(y)])
        assert abs(js["x"] - b_cell["x"]) < 0.6 and abs(js["y"] - b_cell["y"]) < 0.6, (i, j, js, b_cell)

    size = record_hover_gif(page, img, artifacts_dir / "hover.gif")
    if os.environ.get("VITDENSE_RECORD_GIF"):
        import shutil
        shutil.copy(artifacts_dir / "hover.gif", REPO / "assets/hover.gif")
    print(f"hover GIF: {size / 1024:.0f} KB")


def test_landing_shows_the_first_example_and_errors_keep_the_outputs(page, browser_page, artifacts_dir):
    """A fresh visitor sees the first example's result with zero clicks; an input mistake then is
    one sentence in the tab's status line (and a toast): no red "Error" badge over the outputs,
    which keep what they showed."""
    pg = browser_page()
    pg.wait_for_function("() => document.querySelector('#corr-summary')?.innerText.includes('automatic pairs')")
    pg.wait_for_selector("#corr-a-output img")
    before = pg.locator("#corr-a-output img").get_attribute("src")
    pg.get_by_label("x on A").fill("5000")          # a point outside image A
    pg.get_by_label("y on A").fill("5")
    pg.get_by_role("button", name="Match this point").click()
    pg.wait_for_function("() => document.querySelector('#correspondences-status')?.innerText.includes('outside image A')")
    pg.screenshot(path=str(artifacts_dir / "app_input_error.png"), full_page=False)
    assert pg.locator("#corr-a-output img").get_attribute("src") == before
    for out in ("#corr-a-output", "#corr-b-output", "#corr-heat", "#corr-summary"):
        assert not pg.locator(f"{out} .error").is_visible(), out
    pg.close()


def test_every_tab_is_reachable_on_a_phone(browser_page, artifacts_dir):
    """At 390 px wide every tab's button is visible (the tab bar wraps; no "more" menu)."""
    pg = browser_page(width=390, height=844)
    tabs = pg.get_by_role("tab")
    names = tabs.all_inner_texts()
    pg.screenshot(path=str(artifacts_dir / "app_phone_tabs.png"), full_page=False)
    assert len(names) >= 6, names
    for i in range(tabs.count()):
        box = tabs.nth(i).bounding_box()
        assert tabs.nth(i).is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= 390, (names[i], box)
    pg.close()


def test_hover_previews_similarity_and_transfer(page, artifacts_dir):
    """The Similarity inspector (maps over A and B) and Keypoint transfer (every target of the
    set) answer hovers in the page too: frame times, no request, the overlays drawn."""
    from tests.web.test_app_client import CATS
    page.get_by_role("tab", name="Similarity inspector").click()
    page.set_input_files("#sim-a-input input[type=file]", str(CAT_A))
    page.set_input_files("#sim-b-input input[type=file]", str(CAT_B))
    page.wait_for_selector("#sim-a-input img")
    page.wait_for_selector("#sim-b-input img")
    page.click("#sim-run")
    hover_moves(page, "sim-a-output", 30, artifacts_dir / "app_similarity_hover.png")
    drawn = page.evaluate("() => [...document.querySelectorAll('#sim-a-output canvas.vd-overlay, "
                          "#sim-b-output canvas.vd-overlay')].length")
    assert drawn == 2

    page.get_by_role("tab", name="Keypoint transfer").click()
    page.set_input_files("#transfer-input input[type=file]", [str(p) for p in CATS[:4]])
    page.wait_for_function("() => document.querySelectorAll('#transfer-input img').length >= 4")
    page.click("#transfer-run")
    page.wait_for_selector("#transfer-targets img")
    hover_moves(page, "transfer-source", 30, artifacts_dir / "app_transfer_hover.png")
    best = page.evaluate("() => window.vdHover['transfer-source'].last.targets.length")
    assert best == 3                      # one answer per target of the set
    assert page.evaluate("() => document.querySelectorAll('#transfer-targets canvas.vd-overlay').length") == 3

    # clicks: the page pins each click's match at once; the server's marks follow (no picture):
    # the numbered points on the source and on every thumbnail
    page.locator("#transfer-source img").scroll_into_view_if_needed()
    box = page.locator("#transfer-source img").bounding_box()
    server = []
    for k in range(5):
        t = time.perf_counter()
        page.mouse.click(box["x"] + box["width"] * (0.3 + 0.08 * k), box["y"] + box["height"] * 0.5)
        page.wait_for_function("(n) => document.querySelector('#transfer-summary')?.innerText"
                               ".includes(`${n} point(s)`)", arg=k + 1, timeout=20_000)
        server.append(1000 * (time.perf_counter() - t))
    pins = np.array(page.evaluate("() => window.vdHover['transfer-source'].pinTimes"))
    print(f"transfer click: pinned in the page in median {np.median(pins):.1f} ms (max {pins.max():.1f}); "
          f"the server's answer after median {np.median(server):.0f} ms (max {max(server):.0f})")
    # each click pinned in the page before the server's answer (speed: bench/bench_click_page.py)
    assert len(pins) == 5 and (pins < np.array(server)).all(), (pins, server)
    page.wait_for_function("() => window.vdMarks?.['transfer-source']?.pictures?.[0]?.marks?.length === 5")
    marks = page.evaluate("() => window.vdMarks['transfer-source'].pictures")
    assert [p["id"] for p in marks] == ["transfer-source"] + [f"transfer-targets@{k}" for k in range(3)]
    assert all([m["label"] for m in p["marks"]] == ["1", "2", "3", "4", "5"] for p in marks)
    page.mouse.move(1, 1)
    shown = page.evaluate("() => [...document.querySelectorAll('#transfer-targets canvas.vd-overlay')]"
                          ".filter(c => c.style.display !== 'none').length")
    assert shown == 3                     # the marks and the last point's heat map over every target


def test_keyboard_moves_a_cursor_cell_and_enter_asks_the_server(page):
    """Without a mouse: the hover line is focusable (with an aria label), arrow keys move a cursor
    cell on A and announce its match (aria-live), Enter asks the server for that cell (a click)."""
    page.get_by_role("tab", name="Correspondences").click()
    page.wait_for_function(f"() => !!({HOVER}?.ready)")
    line = page.locator("#corr-hover .vd-hover")
    assert "Arrow keys" in line.get_attribute("aria-label")
    line.focus()
    for key in ("ArrowRight", "ArrowRight", "ArrowUp"):
        page.keyboard.press(key)
    cursor = page.evaluate(f"() => {HOVER}.cursor")
    grid_w = page.evaluate(f"() => {HOVER}.data.images[0].w")
    grid_h = page.evaluate(f"() => {HOVER}.data.images[0].h")
    assert cursor == (grid_h // 2 - 1) * grid_w + grid_w // 2 + 2, cursor
    assert "best on picture 2 at" in page.locator("#corr-hover .vd-hover-read").inner_text()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#correspondences-status')?.innerText.startsWith('Click')")
    assert "on A matches" in page.locator("#correspondences-status").inner_text()

"""Legible pictures in a real browser (headless Debian Chromium, Playwright; the harness of
tests/web/test_app_browser.py): a small photo fills its box and a click on the enlarged picture is still
answered at the clicked original pixel; with the hover script blocked or failing, a click still
gets the server's answer."""
from __future__ import annotations

import re

import pytest
from PIL import Image
from tests.web.test_app_browser import app_url, browser, pytestmark, run_cat_pair  # noqa: F401  (fixtures)
from tests.web.test_app_client import CAT_A, CAT_B

#: where the picture's content sits in the page, whatever its object-fit (independent of hover.js)
CONTENT = """img => { const r = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
  let s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
  if (fit === 'scale-down') s = Math.min(s, 1);
  return {left: r.left + (r.width - img.naturalWidth * s) / 2, top: r.top + (r.height - img.naturalHeight * s) / 2,
          s, boxW: r.width, boxH: r.height, w: img.naturalWidth, h: img.naturalHeight, fit}; }"""

#: a browser that refuses to evaluate the page's hover script (as a Content-Security-Policy
#: without 'unsafe-eval' would: Gradio runs a gr.HTML's js_on_load through Function)
BLOCK_SCRIPT = """(() => { const F = window.Function;
  const G = function (...args) { if (String(args[args.length - 1]).includes('vdHoverInit'))
    throw new EvalError('blocked by the test'); return F(...args); };
  G.prototype = F.prototype; window.Function = G; })();"""
#: a browser where the hover script runs but fails (no DecompressionStream: the payload cannot be read)
BREAK_SCRIPT = "delete window.DecompressionStream; window.DecompressionStream = undefined;"


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    """The cat pair at 256 px on the longer side (smaller than the demo's picture boxes)."""
    folder = tmp_path_factory.mktemp("small")
    out = []
    for src in (CAT_A, CAT_B):
        im = Image.open(src).convert("RGB")
        im.thumbnail((256, 256))
        out.append(folder / f"small_{src.name}")
        im.save(out[-1])
    return out


def open_page(browser, url: str, init: str | None = None):  # noqa: F811
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.set_default_timeout(120_000)
    if init:
        pg.add_init_script(init)
    pg.goto(url)
    pg.wait_for_selector("#corr-run")
    return pg


def run_pair(pg, a, b) -> None:
    """Correspondences of ``a`` and ``b``, their pictures shown."""
    run_cat_pair(pg, a, b)
    pg.wait_for_function("(w) => document.querySelector('#corr-a-output img')?.naturalWidth === w",
                         arg=Image.open(a).size[0])


def click_pixel(pg, x: int, y: int, n: int) -> tuple[int, int]:
    """Click original pixel (x, y) of A's picture where the page shows it; returns the pixel
    the server answered for (its status line), the ``n``-th click."""
    img = pg.locator("#corr-a-output img")
    img.scroll_into_view_if_needed()
    c = img.evaluate(CONTENT)
    pg.mouse.click(c["left"] + (x + 0.25) * c["s"], c["top"] + (y + 0.25) * c["s"])
    label = chr(ord("a") + n)
    try:
        pg.wait_for_function("(l) => document.querySelector('#correspondences-status')?.innerText"
                             ".includes(`Click ${l}:`)", arg=label, timeout=30_000)
    except Exception as err:
        seen = pg.evaluate("""() => ({status: document.querySelector('#correspondences-status')?.innerText,
          remapped: window.vdFit?.remapped, img: document.querySelector('#corr-a-output img')?.naturalWidth,
          at: document.elementFromPoint(%f, %f)?.outerHTML?.slice(0, 200)})""" % (
            c["left"] + (x + 0.25) * c["s"], c["top"] + (y + 0.25) * c["s"]))
        raise AssertionError(f"click {label} at ({x}, {y}) got no answer: {seen}, {c}") from err
    text = pg.locator("#correspondences-status").inner_text()
    m = re.search(r"\(x=(\d+), y=(\d+)\) on A", text)
    return int(m.group(1)), int(m.group(2))


#: on the 256 x 170 picture of cat A (its top right corner holds Gradio's buttons)
SPOTS = [(200, 130), (30, 40), (245, 160), (100, 12)]


def test_a_small_picture_fills_its_box_and_clicks_map_to_its_pixels(browser, app_url, small_pair,  # noqa: F811
                                                                   artifacts_dir):
    """A 256 px photo is shown enlarged to fill its box (>= 1.5 x, edge to edge on one side); a click
    at a known spot of the enlarged picture is answered by the server at that original pixel
    (within the one-pixel rounding of the click position), and the page's pin agrees."""
    pg = open_page(browser, app_url)
    run_pair(pg, *small_pair)
    pg.wait_for_function("() => window.vdHover?.['corr-a-output']?.ready "       # this run's payload
                         "&& window.vdHover['corr-a-output'].data.images[0].W === 256")
    c = pg.locator("#corr-a-output img").evaluate(CONTENT)
    print(f"\n256 px picture shown at {c['s']:.2f} x in a {c['boxW']:.0f} x {c['boxH']:.0f} box ({c['fit']})")
    assert c["fit"] == "contain" and c["s"] >= 1.5, c
    assert max(c["w"] * c["s"] / c["boxW"], c["h"] * c["s"] / c["boxH"]) > 0.99, c
    for n, (x, y) in enumerate(SPOTS):
        got = click_pixel(pg, x, y, n)
        assert abs(got[0] - x) <= 1 and abs(got[1] - y) <= 1, (n, (x, y), got)
        last = pg.evaluate("() => window.vdHover['corr-a-output'].last")
        assert abs(last["x"] - x) <= 1 and abs(last["y"] - y) <= 1, (n, (x, y), last)
    assert pg.evaluate("() => window.vdFit.remapped") == len(SPOTS)
    pg.screenshot(path=str(artifacts_dir / "app_small_picture_filled.png"), full_page=False)
    pg.close()


@pytest.mark.parametrize("init", [BLOCK_SCRIPT, BREAK_SCRIPT], ids=["blocked", "failing"])
def test_without_the_hover_script_a_click_still_gets_the_servers_answer(browser, app_url, small_pair,  # noqa: F811
                                                                       init):
    """The hover script refused (no hover engine, pictures at Gradio's own scale) or failing (it
    cannot read the descriptors: no hover, pictures still fitted): a click on A is answered by the
    server at the clicked pixel, with the match drawn on B."""
    pg = open_page(browser, app_url, init)
    run_pair(pg, *small_pair)
    b_before = pg.locator("#corr-b-output img").get_attribute("src")
    engine = pg.evaluate("() => !!(window.vdHover && window.vdHover['corr-a-output']?.ready)")
    fit = pg.locator("#corr-a-output img").evaluate(CONTENT)["fit"]
    assert not engine
    assert fit == ("scale-down" if init is BLOCK_SCRIPT else "contain"), fit
    for n, (x, y) in enumerate(SPOTS[:2]):
        got = click_pixel(pg, x, y, n)
        assert abs(got[0] - x) <= 1 and abs(got[1] - y) <= 1, (n, (x, y), got)
    assert "mutual" in pg.locator("#corr-summary").inner_text()
    assert pg.locator("#corr-b-output img").get_attribute("src") != b_before
    pg.close()


def test_a_second_click_made_while_the_first_is_pending_is_answered(browser, app_url, small_pair):  # noqa: F811
    """Two clicks on A a few milliseconds apart: the second is answered too, at its own pixel (with
    Gradio's default trigger mode a click made while the previous click's event was pending was
    dropped without a word; under load that was most clicks made in quick succession)."""
    pg = open_page(browser, app_url)
    run_pair(pg, *small_pair)
    img = pg.locator("#corr-a-output img")
    img.scroll_into_view_if_needed()
    c = img.evaluate(CONTENT)
    for x, y in SPOTS[:2]:
        pg.mouse.click(c["left"] + (x + 0.25) * c["s"], c["top"] + (y + 0.25) * c["s"])
    pg.wait_for_function("() => document.querySelector('#correspondences-status')?.innerText.includes('Click b:')",
                         timeout=30_000)
    m = re.search(r"\(x=(\d+), y=(\d+)\) on A", pg.locator("#correspondences-status").inner_text())
    assert abs(int(m.group(1)) - SPOTS[1][0]) <= 1 and abs(int(m.group(2)) - SPOTS[1][1]) <= 1, m.group(0)
    pg.close()

"""Part, transfer and correspondence clicks as a visitor sees them, in a real browser (issue 21).

Starts ``python app.py`` on loopback, opens it in headless Debian Chromium (Playwright), runs part
co-segmentation of 3 cats, keypoint transfer over 4 cats and the cat pair, then clicks each source
picture ``--clicks`` times at spots spread over it, waiting for each answer. Prints, per tab:

* **in the page**: from the click event to the page's own answer drawn (the highlighted part, or
  the pinned match on every target), read from the page (``vdParts.pinTimes``,
  ``vdHover[...].pinTimes``): no request involved;
* **server's answer**: from the click to the server's answer drawn in the page (``answerTimes``):
  the refined points as marks, which the page draws, or the part id; no picture is sent
  (``vitdense.web.hover.page_draws``).

**hover**: after the clicks, ``--hovers`` mouse moves over the same picture (correspondences and
transfer): from each move event to its overlay drawn (``vdHover[...].frames``), all in the page.

**disk**: the bytes and files the server added to its temporary folder over a tab's clicks
(the server's own ``GRADIO_TEMP_DIR``, fresh): with the page drawing, a click writes nothing.

``--load N`` also keeps N other visitors (gradio_client threads, other addresses' sessions) running
co-segmentations of the 5 cats back to back while the clicks are measured: the page's answer does
not wait for the server, the server's answer does.

    python bench/bench_click_page.py [--clicks 20] [--hovers 60] [--load 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vitdense.web.local_server import serve_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CATS = sorted((REPO / "assets/cats").glob("*.jpg"))
CAT_A, CAT_B = REPO / "assets/pairs/cat_a.jpg", REPO / "assets/pairs/cat_b.jpg"


def spots(n: int) -> list[tuple[float, float]]:
    """``n`` (fx, fy) fractions of a picture, spread over its middle."""
    rng = np.random.default_rng(0)
    return [(float(x), float(y)) for x, y in rng.uniform(0.25, 0.75, size=(n, 2))]


def disk(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


#: the server's temporary folder (set in main)
TEMP: list[Path] = []


def clicks(page, picture: str, engine: str, n: int) -> tuple[list[float], list[float]]:
    """Click ``picture`` ``n`` times; after each, wait for the server's answer drawn by the page's
    ``engine`` (``window.vdParts``, ``window.vdHover[id]``). Returns the milliseconds to the page's
    own answer and to the server's answer drawn; appends the disk the clicks added to ``DISK``."""
    time.sleep(2.5)                     # past the slot's grace: the run's own folders are settled
    start = disk(TEMP[0])
    img = page.locator(picture)
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    n0, a0 = page.evaluate(f"() => [{engine}.pinTimes.length, {engine}.answerTimes.length]")
    for k, (fx, fy) in enumerate(spots(n)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_function(f"(n) => {engine}.answerTimes.length >= n", arg=a0 + k + 1, timeout=120_000)
        time.sleep(0.3)
    end = disk(TEMP[0])
    DISK.append((end[0] - start[0], end[1] - start[1]))
    return page.evaluate(f"() => [{engine}.pinTimes.slice({n0}), {engine}.answerTimes.slice({a0})]")


DISK: list[tuple[int, int]] = []
#: tab -> hover frame times (ms), filled by the tabs with a hover engine
HOVERS: dict[str, list[float]] = {}


def hover_frames(page, source: str, n: int) -> list[float]:
    """Move the mouse ``n`` times over ``#source img`` along a Lissajous curve over its middle; the
    milliseconds from each move event to its overlay drawn (``vdHover[source].frames``)."""
    engine = f"window.vdHover['{source}']"
    img = page.locator(f"#{source} img")
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    start = page.evaluate(f"() => {engine}.moves")
    for k in np.linspace(0, 2 * np.pi, n, endpoint=False):
        page.mouse.move(box["x"] + box["width"] * (0.5 + 0.35 * np.sin(k)),
                        box["y"] + box["height"] * (0.5 + 0.3 * np.sin(2 * k)))
    page.wait_for_function(f"(m) => {engine}.moves >= m", arg=start + n)
    return page.evaluate(f"(n) => {engine}.frames.slice(-n)", n)


def parts(page, n: int, hovers: int) -> tuple[list[float], list[float]]:
    """Part clicks (the Parts tab has no hover engine: ``hovers`` is not used)."""
    page.get_by_role("tab", name="Part co-segmentation").click()
    page.set_input_files("#parts-input input[type=file]", [str(p) for p in CATS[:3]])
    page.wait_for_function("() => document.querySelectorAll('#parts-input img').length >= 3")
    page.click("#parts-run")
    page.wait_for_function("() => document.querySelector('#parts-legend')?.innerText.includes('parts over')",
                           timeout=300_000)
    page.wait_for_function("() => window.vdParts?.ready")
    return clicks(page, "#parts-click img", "window.vdParts", n)


def transfer(page, n: int, hovers: int) -> tuple[list[float], list[float]]:
    page.get_by_role("tab", name="Keypoint transfer").click()
    page.set_input_files("#transfer-input input[type=file]", [str(p) for p in CATS[:4]])
    page.wait_for_function("() => document.querySelectorAll('#transfer-input img').length >= 4")
    page.click("#transfer-run")
    page.wait_for_function("() => window.vdHover?.['transfer-source']?.ready", timeout=300_000)
    out = clicks(page, "#transfer-source img", "window.vdHover['transfer-source']", n)
    HOVERS["transfer"] = hover_frames(page, "transfer-source", hovers)
    return out


def correspondences(page, n: int, hovers: int) -> tuple[list[float], list[float]]:
    page.get_by_role("tab", name="Correspondences").click()
    page.set_input_files("#corr-a-input input[type=file]", str(CAT_A))
    page.set_input_files("#corr-b-input input[type=file]", str(CAT_B))
    page.wait_for_selector("#corr-a-input img")
    page.wait_for_selector("#corr-b-input img")
    page.evaluate("() => { window.vdBenchRun = window.vdHover?.['corr-a-output']?.run; }")
    page.click("#corr-run")
    page.wait_for_function("() => window.vdHover?.['corr-a-output']?.ready && "
                           "window.vdHover['corr-a-output'].run !== window.vdBenchRun", timeout=300_000)
    out = clicks(page, "#corr-a-output img", "window.vdHover['corr-a-output']", n)
    HOVERS["correspondences"] = hover_frames(page, "corr-a-output", hovers)
    return out


def loader(url: str, stop: threading.Event, index: int, done: list[float], refused: list[str]) -> None:
    """Another visitor: co-segmentations of the 5 cats back to back (their descriptors cached after
    the first: clustering and refinement load the CPU)."""
    from gradio_client import Client, handle_file
    c = Client(url, verbose=False, headers={"X-Forwarded-For": f"10.0.1.{index}"})
    while not stop.is_set():
        t = time.perf_counter()
        try:
            c.predict([{"image": handle_file(str(p))} for p in CATS], api_name="/cosegmentation")
            done.append(time.perf_counter() - t)
        except Exception as err:  # noqa: BLE001 - a refusal (busy) is part of the load
            refused.append(str(err)[:200])
            time.sleep(1.0)


def row(name: str, values: list[float]) -> str:
    v = np.asarray(values, float)
    return (f"| {name} | {len(v)} | {np.median(v):.0f} | {np.percentile(v, 95):.0f} | {v.max():.0f} |"
            if len(v) else f"| {name} | 0 | - | - | - |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clicks", type=int, default=20, choices=range(1, 21), metavar="1..20",
                   help="clicks per tab (a transfer keeps 20 points)")
    p.add_argument("--load", type=int, default=0, help="other visitors running co-segmentations meanwhile")
    p.add_argument("--hovers", type=int, default=60, help="mouse moves over each hover picture")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright
    log = Path("/tmp/bench_click_page_server.log")
    tmp = Path(tempfile.mkdtemp(prefix="bench-click-page-"))
    TEMP.append(tmp)
    env = dict(TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"))
    with serve_app(log, "--proxy-hops", "1", env=env) as server, sync_playwright() as pw:
        stop, done, refused = threading.Event(), [], []
        threads = [threading.Thread(target=loader, args=(server.url, stop, i, done, refused), daemon=True)
                   for i in range(args.load)]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(300_000)
        page.goto(server.url)
        page.wait_for_selector("#corr-run")
        results = {}
        for t in threads:
            t.start()
        for name, fn in (("part click", parts), ("transfer click", transfer),
                         ("correspondence click", correspondences)):
            results[name] = fn(page, args.clicks, args.hovers)
        stop.set()
        browser.close()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {args.clicks} clicks per tab, {args.load} other visitor(s) "
          f"co-segmenting meanwhile ({len(done)} co-segmentations done, {len(refused)} refused"
          + (f": {refused[0]}" if refused else "") + ")")
    print("| click, answered | n | p50 (ms) | p95 (ms) | max (ms) |\n|---|--:|--:|--:|--:|")
    for name, (page_ms, server_ms) in results.items():
        print(row(f"{name}: in the page", page_ms))
        print(row(f"{name}: server's answer drawn", server_ms))
    print("\n| hover over the clicked picture, move -> overlay drawn | n | p50 (ms) | p95 (ms) | max (ms) |\n"
          "|---|--:|--:|--:|--:|")
    for name, frames in HOVERS.items():
        print(row(f"{name}: in the page", frames))
    print("\n| clicks | disk added (bytes) | files added |\n|---|--:|--:|")
    for name, (nbytes, nfiles) in zip(results, DISK):
        print(f"| {args.clicks} {name}s | {nbytes} | {nfiles} |")


if __name__ == "__main__":
    main()

"""Soak test of the served demo: N visitors and one hostile client for M minutes, on loopback.

Starts ``python app.py`` on a free 127.0.0.1 port with its own temporary folder (``TMPDIR`` and
``GRADIO_TEMP_DIR`` point inside a fresh directory, so the disk figure is the demo's alone), then:

* ``--visitors`` threads, each a gradio_client ``Client``: find correspondences of an example pair
  (load size 224), click 6 points (``/match_point``), sometimes co-segment the cat set, pause 1-3 s,
  again, until the time is up;
* ``--hostile`` threads doing what a script could: stride 1 at load size 448 (refused by the work
  limit), a text file, a 1 x 1 image and a 20000 x 20000 PNG bomb as images, NaN / inf / 1e308 /
  10**400 coordinates, too few inputs, bursts of 20 clicks without pause, 6 heavy jobs at once
  (the bounded queue), log-binned pairs at load size 448 (filling the session budget).

Every 10 s it samples the server's RSS and the bytes under its temporary folder. At the end it
prints: RSS and disk over time; queue waits of heavy jobs (from the server's log); click latency
percentiles (all clicks, and clicks made while a heavy job was running); errors by client and
type. "unexplained" counts anything that is not one of our sentences (a Gradio text, a generic
error, a dropped connection).

With ``--probe`` (issue 8's probe): also 60 visitors one after another, each a log-binned pair at
load size 448 kept open (~147 MiB per session: 8.6 GiB in all, twice the default budget), and an
auto-clicker clicking as fast as it is answered for 5 minutes; the run ends when both are done (at
most 20 minutes).

Click latency is measured twice: until the answer arrives, and until the three pictures it shows
(A, B, the heat map) are fetched too, at once, as a browser does.

Bounded: at most 8 visitors + 2 hostile clients, at most 15 minutes; loopback only.

    python bench/bench_soak.py --visitors 4 --hostile 1 --minutes 4 --session-memory 128MiB
    python bench/bench_soak.py --visitors 2 --hostile 1 --probe
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from vitdense.web.local_server import serve_app  # noqa: E402

PAIRS = [(REPO / f"assets/pairs/{n}_a.jpg", REPO / f"assets/pairs/{n}_b.jpg")
         for n in ("cat", "coffee", "astronaut")]
CATS = sorted((REPO / "assets/cats").glob("*.jpg"))
MODEL = "dinov2_vits14_imgfocus"

#: one sentence per kind of message (regex on the error text or the summary) -> its type
KINDS = [
    ("accepted (no error)", r"^accepted$"),
    ("refused by gradio_client (never sent)", r"No value provided for required argument|not JSON compliant"),
    ("refused: too much work", r"too much work for this server"),
    ("refused: busy", r"the demo (is|stayed) busy"),
    ("refused: result too large", r"this result needs \d+ MiB, more than"),
    ("refused: not enough memory for the job", r"of memory while it runs, more than"),
    ("queue full", r"receiving too many requests"),
    ("bad file", r"not a readable image|too small|too large \(\d+ megapixels"),
    ("missing inputs", r"missing its inputs|missing inputs"),
    ("bad number", r"finite number|out of range|not a number|is missing|whole number|not one of|outside image"),
    ("session cleared", r"results were cleared|results expired|no longer on the server"),
    ("no run yet", r"first"),
]


def classify(text: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, text, re.IGNORECASE):
            return kind
    return "unexplained"


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: collections.Counter = collections.Counter()
        self.examples: dict[tuple[str, str], str] = {}
        self.clicks: list[tuple[float, float, float, bool]] = []  # (start, answer s, with pictures s, heavy job)
        self.runs: list[float] = []
        self.heavy_running = 0

    def error(self, who: str, text: str) -> str:
        kind = classify(text)
        with self.lock:
            self.errors[(who, kind)] += 1
            self.examples.setdefault((who, kind), " ".join(str(text).split())[:150])
        return kind

    @contextlib.contextmanager
    def heavy(self) -> Iterator[None]:
        with self.lock:
            self.heavy_running += 1
        try:
            yield
        finally:
            with self.lock:
                self.heavy_running -= 1


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_mib(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total / 2**20


def message(err: BaseException) -> str:
    return str(err) or type(err).__name__


def fetch_pictures(result: Any) -> None:
    """Fetch the pictures a click shows (A, B, heat map), at once, as a browser does (the zip is
    only fetched when a visitor presses it)."""
    urls = [r.get("url") for r in (result or [])[:3] if isinstance(r, dict) and r.get("url")]
    if urls:
        with ThreadPoolExecutor(len(urls)) as pool:
            list(pool.map(lambda u: urllib.request.urlopen(u, timeout=60).read(), urls))


def click(client: Any, x: float, y: float, stats: "Stats") -> Any:
    """One click through ``/match_point``: recorded as (start, answer s, answer + pictures s, a heavy
    job was running)."""
    t = time.monotonic()
    busy = stats.heavy_running > 0
    out = client.predict(x, y, api_name="/match_point")
    answered = time.monotonic() - t
    fetch_pictures(out)
    with stats.lock:
        stats.clicks.append((t, answered, time.monotonic() - t, busy))
    return out


def summary_text(result: Any) -> str:
    """The markdown summary among a pair call's outputs (where a cleared session is explained)."""
    if isinstance(result, (list, tuple)):
        for r in result:
            if isinstance(r, str) and not os.path.exists(r) and len(r) > 20:
                return r
    return ""


# --------------------------------------------------------------------------- clients
PROBE_DONE = threading.Event()   # --probe: the other clients stop when the probe's two are done


def on(deadline: float) -> bool:
    return time.monotonic() < deadline and not PROBE_DONE.is_set()


def visitor(url: str, who: str, deadline: float, stats: Stats, seed: int) -> None:
    from gradio_client import Client, handle_file
    rng = random.Random(seed)
    client = Client(url, verbose=False, download_files=False)
    while on(deadline):
        a, b = rng.choice(PAIRS)
        t0 = time.monotonic()
        try:
            with stats.heavy():
                client.predict(handle_file(str(a)), handle_file(str(b)), api_name="/correspondences")
            stats.runs.append(time.monotonic() - t0)
        except Exception as err:  # noqa: BLE001 - counted by type
            stats.error(who, message(err))
            time.sleep(2)
            continue
        w, h = Image.open(a).size
        for _ in range(6):
            if not on(deadline):
                break
            x, y = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
            try:
                text = summary_text(click(client, x, y, stats))
                if classify(text) == "session cleared":
                    stats.error(who, text)
                    break
            except Exception as err:  # noqa: BLE001
                stats.error(who, message(err))
            time.sleep(rng.uniform(0.2, 1.0))
        if rng.random() < 0.25 and on(deadline):
            try:
                with stats.heavy():
                    client.predict([{"image": handle_file(str(p))} for p in CATS], load_size=112,
                                   api_name="/cosegmentation")
            except Exception as err:  # noqa: BLE001
                stats.error(who, message(err))
        time.sleep(rng.uniform(1.0, 3.0))


def hostile(url: str, who: str, deadline: float, stats: Stats, folder: Path, seed: int) -> None:
    from gradio_client import Client, handle_file
    rng = random.Random(seed)
    text = folder / "notes.jpg"
    text.write_text("this is not a picture")
    tiny = folder / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    bomb = folder / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    a, b = (str(p) for p in PAIRS[0])
    client = Client(url, verbose=False, download_files=False)

    def call(*args: Any, **kwargs: Any) -> None:
        try:
            client.predict(*args, **kwargs)
            stats.error(who, "accepted")
        except Exception as err:  # noqa: BLE001
            stats.error(who, message(err))

    step = 0
    while on(deadline):
        step += 1
        call(handle_file(a), handle_file(b), stride="1", load_size=448, api_name="/correspondences")
        for bad in (text, tiny, bomb):
            call(handle_file(str(bad)), handle_file(b), api_name="/correspondences")
        for x, y in ((math.nan, 10), (math.inf, 5), (1e308, 3), (10 ** 400, 1), (-5, 2)):
            call(x, y, api_name="/match_point")
        call(api_name="/match_point")                          # no inputs (the client refuses)
        for body in ('{"data": [NaN, 10]}', '{"data": []}'):   # what gradio_client will not send
            try:
                stats.error(who, raw_error(url, "match_point", body))
            except Exception as err:  # noqa: BLE001
                stats.error(who, message(err))
        if step % 2 == 1:                                      # a real session, then a burst
            try:
                with stats.heavy():
                    client.predict(handle_file(a), handle_file(b), bin="on", load_size=448,
                                   api_name="/correspondences")
            except Exception as err:  # noqa: BLE001
                stats.error(who, message(err))
            for _ in range(20):
                try:
                    out = click(client, rng.uniform(0, 399), rng.uniform(0, 265), stats)
                    if classify(summary_text(out)) == "session cleared":
                        stats.error(who, summary_text(out))
                except Exception as err:  # noqa: BLE001
                    stats.error(who, message(err))
        else:                                                  # 6 heavy jobs at once
            jobs = [client.submit(handle_file(a), handle_file(b), api_name="/correspondences")
                    for _ in range(6)]
            for job in jobs:
                try:
                    job.result(timeout=600)
                    stats.error(who, "accepted")
                except Exception as err:  # noqa: BLE001
                    stats.error(who, message(err))
        time.sleep(1.0)


OPEN_TABS: list = []   # the probe's visitors keep their session open (a closed one is freed at once)


def filler(url: str, who: str, deadline: float, stats: Stats, sessions: int) -> None:
    """The probe's memory pressure: ``sessions`` visitors one after another, each a log-binned pair
    at load size 448 (~147 MiB kept per session), each keeping its session open (as a browser tab
    does) until the end of the run. The cat pair every time: after the first, its descriptors come
    from the server's cache, so the 60 sessions fit in the run; the network load comes from the
    other clients."""
    from gradio_client import Client, handle_file
    a, b = PAIRS[0]
    for _ in range(sessions):
        if not on(deadline):
            break
        tab = Client(url, verbose=False, download_files=False)
        OPEN_TABS.append(tab)
        try:
            with stats.heavy():
                tab.predict(handle_file(str(a)), handle_file(str(b)), bin="on", load_size=448,
                            api_name="/correspondences")
            stats.error(who, "accepted")
        except Exception as err:  # noqa: BLE001
            stats.error(who, message(err))


def autoclicker(url: str, who: str, deadline: float, stats: Stats, seconds: float) -> None:
    """The probe's auto-clicker: clicks on its own pair as fast as they are answered for
    ``seconds``; a cleared session is run again (and counted)."""
    from gradio_client import Client, handle_file
    rng = random.Random(7)
    client = Client(url, verbose=False, download_files=False)
    a, b = PAIRS[0]
    end = min(deadline, time.monotonic() + seconds)
    need_run = True
    while time.monotonic() < end:
        try:
            if need_run:
                client.predict(handle_file(str(a)), handle_file(str(b)), api_name="/correspondences")
                need_run = False
            out = click(client, rng.uniform(0, 399), rng.uniform(0, 265), stats)
            if classify(summary_text(out)) == "session cleared":
                stats.error(who, summary_text(out))
                need_run = True
        except Exception as err:  # noqa: BLE001
            stats.error(who, message(err))
            time.sleep(0.5)


def raw_error(url: str, api: str, body: str) -> str:
    """POST ``body`` as it is (NaN, missing values) and return the event's error text."""
    import json
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    text = urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=120).read().decode()
    data = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    last = data[-1] if data else None
    return last.get("error") or "accepted" if isinstance(last, dict) else "accepted"


# --------------------------------------------------------------------------- server
@contextlib.contextmanager
def serve(folder: Path, args: argparse.Namespace) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """The demo with the soak's budgets, its temporary files under ``folder/tmp`` (measured)."""
    tmp = folder / "tmp"
    tmp.mkdir()
    env = dict(TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"))
    flags = ["--temp-max-age", str(args.temp_max_age)]
    if args.session_memory:
        flags += ["--session-memory", args.session_memory]
    with serve_app(folder / "server.log", *flags, env=env, timeout=300) as server:
        yield server.url, server.proc, tmp


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visitors", type=int, default=4)
    p.add_argument("--hostile", type=int, default=1)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--session-memory", default=None,
                   help="the server's session budget (default: the server's own, 4GiB; the soak "
                        "runs with a small one to show eviction)")
    p.add_argument("--probe", action="store_true",
                   help="issue 8's probe: adds 60 log-binned sessions at load size 448 one after "
                        "another and a 5-minute auto-clicker; ends when both are done")
    p.add_argument("--probe-sessions", type=int, default=60, help=argparse.SUPPRESS)
    p.add_argument("--probe-click-minutes", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--log", default=None, help="keep the server's log in this file")
    p.add_argument("--temp-max-age", type=float, default=60.0,
                   help="seconds before temporary files are deleted (short: the soak shows it)")
    p.add_argument("--every", type=float, default=10.0, help="seconds between RSS / disk samples")
    args = p.parse_args()
    if not (1 <= args.visitors <= 8 and 0 <= args.hostile <= 2 and 0 < args.minutes <= 15):
        raise SystemExit("bounded: 1-8 visitors, 0-2 hostile clients, at most 15 minutes")

    folder = Path(tempfile.mkdtemp(prefix="vitdense-soak-"))
    stats = Stats()
    samples: list[tuple[float, float, float, int, int]] = []
    try:
        with serve(folder, args) as (url, proc, tmp):
            t_start = time.monotonic()
            deadline = t_start + 60 * (20 if args.probe else args.minutes)
            samples.append((0.0, rss_mib(proc.pid), dir_mib(tmp), 0, 0))
            threads = [threading.Thread(target=visitor, args=(url, "visitor", deadline, stats, i), daemon=True)
                       for i in range(args.visitors)]
            threads += [threading.Thread(target=hostile, args=(url, "hostile", deadline, stats, folder, 100 + i),
                                         daemon=True) for i in range(args.hostile)]
            if args.probe:
                probe = [threading.Thread(target=filler, args=(url, "binned sessions", deadline, stats,
                                                               args.probe_sessions), daemon=True),
                         threading.Thread(target=autoclicker, args=(url, "auto-clicker", deadline, stats,
                                                                    60 * args.probe_click_minutes), daemon=True)]
                threads += probe
            for t in threads:
                t.start()
            if args.probe:   # the visitors and the hostile client stop when the probe's two are done
                threading.Thread(target=lambda: ([t.join() for t in probe], PROBE_DONE.set()),
                                 daemon=True).start()
            while any(t.is_alive() for t in threads):
                time.sleep(args.every)
                samples.append((time.monotonic() - t_start, rss_mib(proc.pid), dir_mib(tmp),
                                len(stats.runs), len(stats.clicks)))
                if time.monotonic() > deadline + 600:
                    break
            alive = proc.poll() is None
            log_text = (folder / "server.log").read_text()
            if args.log:
                Path(args.log).write_text(log_text)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    took = samples[-1][0] / 60
    print(f"# {'probe' if args.probe else 'soak'}: {args.visitors} visitors + {args.hostile} hostile"
          + (f" + {args.probe_sessions} binned sessions at load 448 + a {args.probe_click_minutes:g}-minute "
             "auto-clicker" if args.probe else "")
          + f", {took:.1f} min, session budget {args.session_memory or 'the default'}, temp files deleted "
          f"after {args.temp_max_age:g} s, {os.cpu_count()} CPUs")
    print("\n| t (s) | server RSS (MiB) | temp folder (MiB) | runs done | clicks done |")
    print("|--:|--:|--:|--:|--:|")
    stride = max(1, len(samples) // 12)
    for s in samples[::stride] + ([samples[-1]] if (len(samples) - 1) % stride else []):
        print(f"| {s[0]:.0f} | {s[1]:.0f} | {s[2]:.1f} | {s[3]} | {s[4]} |")
    waits = [float(m) for m in re.findall(r"heavy job of \S+ waited ([\d.]+) s", log_text)]
    runs = stats.runs
    answer = [c[1] for c in stats.clicks]
    pictures = [c[2] for c in stats.clicks]
    busy = [c[1] for c in stats.clicks if c[3]]
    busy_pictures = [c[2] for c in stats.clicks if c[3]]
    print("\n| measure | n | p50 | p95 | max |")
    print("|---|--:|--:|--:|--:|")
    for name, vals in [("queue wait of a heavy job (s)", waits), ("visitor's correspondences run (s)", runs),
                       ("click answered, all (s)", answer), ("click answered while a heavy job runs (s)", busy),
                       ("click + its 3 pictures, all (s)", pictures),
                       ("click + its 3 pictures while a heavy job runs (s)", busy_pictures)]:
        print(f"| {name} | {len(vals)} | {pct(vals, 50):.2f} | {pct(vals, 95):.2f} | "
              f"{max(vals) if vals else float('nan'):.2f} |")
    print("\n| client | type | count | example |")
    print("|---|---|--:|---|")
    for (who, kind), n in sorted(stats.errors.items()):
        print(f"| {who} | {kind} | {n} | {stats.examples[(who, kind)]} |")
    evicted = len(re.findall(r"evicted a result", log_text))
    tracebacks = log_text.count("Traceback")
    from vitdense.web.serving.limits import Limits
    from vitdense.web.serving.results import DEFAULT_BUDGET_BYTES, parse_bytes
    budget = parse_bytes(args.session_memory) if args.session_memory else DEFAULT_BUDGET_BYTES
    bound = samples[0][1] + (budget + Limits().cache_bytes) / 2**20
    print(f"\nRSS bound (at rest {samples[0][1]:.0f} MiB + session budget {budget / 2**20:.0f} MiB + "
          f"descriptor cache {Limits().cache_bytes / 2**20:.0f} MiB): {bound:.0f} MiB; "
          f"held: {max(s[1] for s in samples) <= bound}")
    print(f"server alive at the end: {alive}; tracebacks in its log: {tracebacks}; "
          f"results evicted (LRU): {evicted}; "
          f"RSS max {max(s[1] for s in samples):.0f} MiB; temp folder max {max(s[2] for s in samples):.1f} MiB, "
          f"at the end {samples[-1][2]:.1f} MiB")


if __name__ == "__main__":
    main()

"""Fair sharing under a flood, on loopback: 40 hostile threads, an auto-clicker and malformed
payloads against one honest visitor (issue 22), with the demo's default limits.

Starts ``python app.py --proxy-hops 1`` (as behind the Space's proxy: a visitor's address is the
last X-Forwarded-For entry) with its own temporary folder, then for ``--minutes``:

* ``--flood`` hostile threads from one address (10.0.0.66), each its own session (a gradio_client
  ``Client``), each sending log-binned pairs at load size 448 with images no one sent before
  (no descriptor cache), again as soon as it is answered;
* an auto-clicker (10.0.0.67): one pair, then ``/match_point`` from 4 threads as fast as answered;
* a malformed-payload client (10.0.0.68) over raw HTTP: a file payload that is not a file to
  ``/video``, a model the page does not offer, NaN / inf / 1e308 clicks on a session that holds
  results (``/gradio_api/queue/join`` with that session's hash: gradio_client will not send NaN);
* one honest visitor (10.0.0.7): every few seconds a pair at load size 224 (new images), then 6
  clicks with pauses. Its run time alone is measured before the flood starts; its **wait** is its
  run time under the flood minus that.

Then one visitor alone clicks 200 times (the disk growth per click, of the whole temporary folder).
Prints the server's peak RSS against its bound, the honest visitor's runs and wait, click
latencies (honest visitor, auto-clicker), each client's answers by kind, and disk per click.

Bounded: at most 6 minutes of flood, 64 threads; loopback only.

    python bench/bench_fair.py                  # 3 minutes of flood, ~5 minutes in all
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from bench_soak import PAIRS, classify, dir_mib, pct, rss_mib  # noqa: E402
from PIL import Image  # noqa: E402

from vitdense.web.local_server import serve_app  # noqa: E402

HONEST, HOSTILE, CLICKER, MALFORMED = "10.0.0.7", "10.0.0.66", "10.0.0.67", "10.0.0.68"
#: our sentences of this bench (besides bench_soak's KINDS)
FAIR_KINDS = [("one job per visitor", r"already have a job running or waiting"),
              ("clicks rate-limited", r"clicking faster than this demo answers"),
              ("model not offered", r"is not available on this demo; choose one of"),
              ("not a file payload", r"is not a file as the page's 'Use via API' shows it")]


def kind_of(text: str) -> str:
    import re
    for kind, pattern in FAIR_KINDS:
        if re.search(pattern, text):
            return kind
    return classify(text)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: collections.Counter = collections.Counter()
        self.examples: dict[tuple[str, str], str] = {}
        self.clicks: dict[str, list[float]] = collections.defaultdict(list)

    def add(self, who: str, text: str) -> str:
        kind = kind_of(text)
        with self.lock:
            self.kinds[(who, kind)] += 1
            self.examples.setdefault((who, kind), " ".join(str(text).split())[:140])
        return kind


def fresh_image(folder: Path, rng: random.Random, src: Path) -> str:
    """A crop of ``src`` no one sent before (the descriptor cache cannot answer it)."""
    img = Image.open(src).convert("RGB")
    w, h = img.size
    dx, dy = rng.randrange(0, 24), rng.randrange(0, 24)
    path = folder / f"{src.stem}-{rng.getrandbits(40):010x}.jpg"
    img.crop((dx, dy, w - 24 + dx, h - 24 + dy)).save(path, quality=92)
    return str(path)


def client(url: str, address: str) -> Any:
    """A gradio_client session from ``address`` (retried: 40 at once may time out on a busy server)."""
    from gradio_client import Client
    for attempt in range(5):
        try:
            return Client(url, verbose=False, download_files=False, headers={"X-Forwarded-For": address})
        except Exception:  # noqa: BLE001 - the config request timed out
            if attempt == 4:
                raise
            time.sleep(2 + attempt)


def pair_run(c: Any, folder: Path, rng: random.Random, **kw: Any) -> Any:
    from gradio_client import handle_file
    a, b = rng.choice(PAIRS)
    return c.predict(handle_file(fresh_image(folder, rng, a)), handle_file(fresh_image(folder, rng, b)),
                     api_name="/correspondences", **kw)


def timed_click(c: Any, rng: random.Random, tally: Tally, who: str) -> None:
    t = time.monotonic()
    try:
        c.predict(rng.uniform(0, 370), rng.uniform(0, 240), api_name="/match_point")
        tally.add(who, "accepted")
        with tally.lock:
            tally.clicks[who].append(time.monotonic() - t)
    except Exception as err:  # noqa: BLE001 - counted by kind
        tally.add(who, str(err))


def ran(c: Any, folder: Path, rng: random.Random, tally: Tally, who: str) -> bool:
    """A pair at load size 224 (the session then holds results); False when refused (counted)."""
    try:
        pair_run(c, folder, rng, load_size=224)
        return True
    except Exception as err:  # noqa: BLE001
        tally.add(who, str(err))
        return False


HOSTILE_RUNS: list[float] = []       # seconds of the hostile jobs that were accepted


def hostile(url: str, deadline: float, tally: Tally, folder: Path, seed: int) -> None:
    rng = random.Random(seed)
    c = client(url, HOSTILE)
    while time.monotonic() < deadline:
        t = time.monotonic()
        try:
            pair_run(c, folder, rng, bin="on", load_size=448)
            HOSTILE_RUNS.append(time.monotonic() - t)
            tally.add("hostile (40 threads)", "accepted")
        except Exception as err:  # noqa: BLE001
            tally.add("hostile (40 threads)", str(err))
            time.sleep(0.05)


def autoclicker(url: str, deadline: float, tally: Tally, folder: Path) -> None:
    rng = random.Random(1)
    c = client(url, CLICKER)
    while not ran(c, folder, rng, tally, "auto-clicker (4 threads)") and time.monotonic() < deadline:
        time.sleep(1)

    def loop(seed: int) -> None:
        r = random.Random(seed)
        while time.monotonic() < deadline:
            timed_click(c, r, tally, "auto-clicker (4 threads)")
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def queue_join(url: str, session: str, fn_index: int, data: list, address: str) -> str:
    """An event sent as it is (NaN included) in ``session``; the error text, or "accepted"."""
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                       "trigger_id": None})
    headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    urllib.request.urlopen(urllib.request.Request(f"{url}gradio_api/queue/join", body.encode(), headers),
                           timeout=30).read()
    stream = urllib.request.urlopen(urllib.request.Request(
        f"{url}gradio_api/queue/data?session_hash={session}", headers=headers), timeout=120)
    for line in stream:
        if line.startswith(b"data:"):
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                return str(out.get("error") or "accepted")
    return "no answer"


def malformed(url: str, deadline: float, tally: Tally, folder: Path) -> None:
    rng = random.Random(2)
    c = client(url, MALFORMED)
    who = "malformed payloads (raw HTTP)"
    while not ran(c, folder, rng, tally, who) and time.monotonic() < deadline:
        time.sleep(1)
    fn = c._infer_fn_index("/match_point", None)
    video_fn = c._infer_fn_index("/video", None)
    n_video = len(c.config["dependencies"][video_fn]["inputs"])
    while time.monotonic() < deadline:
        for x in (math.nan, math.inf, -math.inf, 1e308):
            tally.add(who, queue_join(url, c.session_hash, fn, [None, x, 10], MALFORMED))
        bad_video = [{"path": 5, "meta": {"_type": "gradio.FileData"}}] + [None] * (n_video - 1)
        tally.add(who, queue_join(url, c.session_hash, video_fn, bad_video, MALFORMED))
        try:
            pair_run(c, folder, rng, model="dino_vitb8")
            tally.add(who, "accepted")
        except Exception as err:  # noqa: BLE001
            tally.add(who, str(err))
        time.sleep(1.0)


def honest(url: str, deadline: float, tally: Tally, folder: Path, runs: list[float]) -> None:
    rng = random.Random(3)
    c = client(url, HONEST)
    while time.monotonic() < deadline:
        t = time.monotonic()
        try:
            pair_run(c, folder, rng, load_size=224)
            runs.append(time.monotonic() - t)
            tally.add("honest visitor", "accepted")
        except Exception as err:  # noqa: BLE001
            tally.add("honest visitor", str(err))
            time.sleep(2)
            continue
        for _ in range(6):
            timed_click(c, rng, tally, "honest visitor")
            time.sleep(rng.uniform(0.3, 0.8))
        time.sleep(rng.uniform(1, 3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flood", type=int, default=40, help="hostile threads (one address)")
    p.add_argument("--minutes", type=float, default=3.0, help="minutes of flood")
    p.add_argument("--clicks", type=int, default=200, help="clicks of the disk-per-click phase")
    args = p.parse_args()
    if not (1 <= args.flood <= 56 and 0 < args.minutes <= 6 and 0 <= args.clicks <= 1000):
        raise SystemExit("bounded: 1-56 hostile threads, at most 6 minutes, 1000 clicks")
    folder = Path(tempfile.mkdtemp(prefix="vitdense-fair-"))
    tmp = folder / "tmp"
    tmp.mkdir()
    env = dict(TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"))
    tally, runs, alone, rss = Tally(), [], [], []
    try:
        with serve_app(folder / "server.log", "--proxy-hops", "1", env=env, timeout=300) as server:
            url, pid = server.url, server.proc.pid
            rest = rss_mib(pid)
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    rss.append(rss_mib(pid))
                    time.sleep(0.5)
            threading.Thread(target=sample, daemon=True).start()
            rng = random.Random(4)
            c = client(url, HONEST)
            for _ in range(3):                                     # the honest run alone
                t = time.monotonic()
                pair_run(c, folder, rng, load_size=224)
                alone.append(time.monotonic() - t)
            t0 = time.monotonic()
            deadline = t0 + 60 * args.minutes
            threads = [threading.Thread(target=hostile, args=(url, deadline, tally, folder, 100 + i), daemon=True)
                       for i in range(args.flood)]
            threads += [threading.Thread(target=autoclicker, args=(url, deadline, tally, folder), daemon=True),
                        threading.Thread(target=malformed, args=(url, deadline, tally, folder), daemon=True)]
            for t in threads:
                t.start()
            time.sleep(5)                                          # the flood has filled the gate
            honest(url, deadline, tally, folder, runs)
            for t in threads:
                t.join(timeout=900)
            flood_rss = max(rss)
            # the disk per click: one visitor alone, after its run; each figure taken past the slot's
            # grace (zips.SLOT_GRACE_S: folders of the last 2 s are kept), after one more click
            c = client(url, HONEST)
            pair_run(c, folder, rng, load_size=224)

            def settled() -> float:
                time.sleep(2.5)
                timed_click(c, rng, tally, "disk phase (one visitor)")
                return dir_mib(tmp)
            before = settled()
            for _ in range(args.clicks):
                timed_click(c, rng, tally, "disk phase (one visitor)")
                time.sleep(0.06)                                   # under the click rate
            after = settled()
            sampling.set()
            log = (folder / "server.log").read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    from vitdense.web.serving.limits import Limits
    lim = Limits()
    bound = rest + (lim.session_bytes + lim.cache_bytes) / 2**20
    base = float(np.median(alone))
    waits = [max(0.0, r - base) for r in runs]
    import os
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared)")
    print(f"# fair sharing: {args.flood} hostile threads + an auto-clicker + malformed payloads + one honest "
          f"visitor, {args.minutes:g} min, default limits, --proxy-hops 1, loopback")
    print("\n| measure | n | p50 | p95 | max |")
    print("|---|--:|--:|--:|--:|")
    rows = [("hostile job accepted (binned pair, load 448) (s)", HOSTILE_RUNS),
            ("honest visitor's run alone, before the flood (s)", alone),
            ("honest visitor's run under the flood (s)", runs),
            ("honest visitor's wait (run under the flood - alone) (s)", waits)]
    rows += [(f"click answered: {who} (s)", v) for who, v in sorted(tally.clicks.items())]
    for name, vals in rows:
        print(f"| {name} | {len(vals)} | {pct(vals, 50):.2f} | {pct(vals, 95):.2f} | "
              f"{max(vals) if vals else float('nan'):.2f} |")
    print("\n| client | answer | count | example |")
    print("|---|---|--:|---|")
    for (who, kind), n in sorted(tally.kinds.items()):
        print(f"| {who} | {kind} | {n} | {tally.examples[(who, kind)]} |")
    print(f"\nserver RSS: at rest {rest:.0f} MiB, peak {max(rss):.0f} MiB (flood {flood_rss:.0f}); bound (rest + "
          f"session budget + descriptor cache) {bound:.0f} MiB: held {max(rss) <= bound}")
    print(f"disk per click: {1024 * (after - before) / max(args.clicks, 1):.2f} KiB ({before:.1f} -> {after:.1f} MiB "
          f"over {args.clicks} clicks); tracebacks in the server log: {log.count('Traceback')}; "
          f"'pydantic' in the log: {'pydantic' in log}")


if __name__ == "__main__":
    main()

"""The work estimate, the refusal sentence, the settings never offered, and the bounded wait."""
from __future__ import annotations

import math
import threading
import time

import pytest

from vitdense.web.serving.workbudget import (
    DEFAULT_MAX_SECONDS,
    Busy,
    ClickLimiter,
    Job,
    WorkGate,
    WorkRefused,
    check,
    check_job,
    estimate,
    grid_tokens,
    max_load_size,
    offered_strides,
    parse_work,
)
from tests import REPO

DEFAULT_MAX_WORK = 6e9      # the units limit before the seconds limit (still a --max-work value)


def test_tokens_follow_the_extractor(bundled_extractor, photos):
    img = photos["coffee"]                                   # 400 x 600
    for stride, load in [(7, 224), (14, 112), (2, 112)]:
        _, geo = bundled_extractor.preprocess(img, load_size=load, stride=stride)
        h, w = geo.grid
        assert grid_tokens((img.shape[1], img.shape[0]), load, 14, stride) == h * w


def test_estimate_and_refusal_of_the_probe():
    # the probe: a 256 x 256 pair, load 224: stride 2 took 36 s, stride 1 took 496 s
    s2 = estimate([(256, 256)] * 2, 224, 14, 2, 12)
    s1 = estimate([(256, 256)] * 2, 224, 14, 1, 12)
    assert s2.tokens == (106 * 106,) * 2 and s2.units == 2 * (106 * 106) ** 2 * 12
    check(s2, DEFAULT_MAX_WORK, 2, 224)                      # accepted (about half a minute)
    with pytest.raises(WorkRefused, match=r"about 4\.8e\+10 units .*above the limit of 6e\+09; use "
                                          r"a larger stride than 1 \(Advanced settings\)"):
        check(s1, DEFAULT_MAX_WORK, 1, 224)
    heavy = estimate([(1024, 1024)] * 2, 448, 14, 1, 12)     # stride 1 at load size 448
    with pytest.raises(WorkRefused, match="smaller load size than 448"):
        check(heavy, DEFAULT_MAX_WORK, 1, 448)
    check(heavy, parse_work("inf"), 1, 448)                   # a local user's --max-work inf


def test_settings_that_are_always_refused_are_not_offered():
    sizes = list(range(112, 449, 14))
    assert max_load_size(14, 7, 12, 2, DEFAULT_MAX_WORK, sizes) == 448
    assert max_load_size(14, 2, 12, 2, DEFAULT_MAX_WORK, sizes) == 252
    assert max_load_size(14, 1, 12, 2, DEFAULT_MAX_WORK, sizes) == 126   # 113**2 patches
    assert offered_strides(14, 12, 2, DEFAULT_MAX_WORK, sizes) == [1, 2, 7, 14]
    assert offered_strides(14, 12, 2, 1e9, sizes) == [2, 7, 14]
    for bad in ("x", "0", "-5", "nan"):
        with pytest.raises(Exception, match="max work"):
            parse_work(bad)


def test_gate_bounds_the_queue_and_the_wait():
    gate = WorkGate(concurrency=1, max_waiting=1, max_wait_s=0.6)
    release = threading.Event()
    errors: list[str] = []

    def hold() -> None:
        with gate.slot():
            release.wait(5)

    def wait_one() -> None:
        try:
            with gate.slot():
                pass
        except Busy as err:
            errors.append(str(err))

    t1 = threading.Thread(target=hold)
    t1.start()
    time.sleep(0.1)
    t2 = threading.Thread(target=wait_one)       # waits, then gives up after 0.6 s
    t2.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    with pytest.raises(Busy, match=r"the demo is busy \(1 job running, 1 waiting"):
        with gate.slot():                        # the waiting room is full: refused at once
            pass
    assert time.monotonic() - t0 < 0.1
    t2.join()
    assert errors and "stayed busy for 1 s" in errors[0]
    release.set()
    t1.join()
    with gate.slot() as waited:                  # free again
        assert waited < 0.1
    assert gate.running == 0 and gate.waiting == 0 and gate.refused == 2


#: one heavy job in a fresh process (the web handler, after a warm-up), its peak RSS above the
#: process at rest less what stays in the result store and the descriptor cache, as
#: bench/bench_job_memory.py measures it; printed as JSON
_MEASURE_JOB = """
import json, re, sys, torch
torch.set_num_threads(2)
from vitdense import web
from vitdense.web import gate
web.configure("cpu")
pair = sys.argv[1:3]
web.run_correspondences(*pair, 10, load_size=112)                   # warm-up
def rss(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read())[1]) << 10
used, cached = gate.JOBS.results.used, web.POOL.cache.num_bytes
rest = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")                        # the peak mark starts here
web.run_correspondences(*pair, 10, load_size=int(sys.argv[3]))
job = gate.JOBS.last_job
print(json.dumps(dict(transient=rss("VmHWM") - rest - (gate.JOBS.results.used - used)
                      - (web.POOL.cache.num_bytes - cached), estimate=job.working_bytes)))
"""


def test_working_memory_estimate_covers_a_measured_job():
    """A real pair job's transient memory (peak RSS of a fresh process above its rest, less what
    stays stored or cached) stays under the working memory the server reserves for it; the
    reservation grows with the patches and with log-binning."""
    import json
    import os
    import subprocess
    import sys

    from vitdense.web.serving.workbudget import WORKING_BYTES_FLOOR, working_bytes
    repo = REPO
    pair = [str(repo / "assets/pairs/cat_a.jpg"), str(repo / "assets/pairs/cat_b.jpg")]
    out = subprocess.run([sys.executable, "-c", _MEASURE_JOB, *pair, "224"], capture_output=True, text=True,
                         timeout=300, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # measured 2026-12-04: 60 MiB transient, 162 MiB reserved (README: bench_job_memory.py's table)
    assert 20 << 20 < got["transient"] <= got["estimate"], got     # measured, and covered
    pair_wh = [(400, 266), (340, 238)]
    plain = working_bytes(pair_wh, 224, 14, 7, 384)
    assert working_bytes(pair_wh, 224, 14, 7, 384, bin=True) > plain
    assert working_bytes(pair_wh, 448, 14, 7, 384) > 3 * (plain - WORKING_BYTES_FLOOR)   # ~4x the patches


def test_one_job_per_visitor_and_the_others_keep_their_turn():
    """A visitor (session or address) holds at most one job running or waiting: a flood from one
    address takes one place in the waiting room, and another visitor's job is next in line."""
    gate = WorkGate(concurrency=1, max_waiting=4, max_wait_s=5)
    flooder = [("session", "s1"), ("address", "10.0.0.66")]
    gate.acquire(visitors=flooder)                        # the flooder's job runs
    for session in ("s2", "s3", "s4"):                    # new sessions, same address: refused at once
        with pytest.raises(Busy, match=r"^you already have a job running or waiting on this demo \(one at a "
                                       r"time per visitor\): wait for it to finish, then press again$"):
            gate.acquire(visitors=[("session", session), ("address", "10.0.0.66")])
    assert gate.waiting == 0 and gate.jobs_of(("address", "10.0.0.66")) == 1
    honest = [("session", "h"), ("address", "10.0.0.7")]
    got = []
    t = threading.Thread(target=lambda: got.append(gate.acquire(visitors=honest)))
    t.start()
    time.sleep(0.2)
    assert gate.waiting == 1                              # first in line
    gate.release(flooder)                                 # the flooder's job ends: the honest one starts
    t.join(5)
    assert got and gate.running == 1 and gate.jobs_of(("address", "10.0.0.66")) == 0
    with pytest.raises(Busy, match="you already have a job"):
        gate.acquire(visitors=honest)                     # the honest visitor's second job
    gate.release(honest)
    assert gate.jobs_of(("session", "h")) == 0 and gate.running == 0


def test_the_wait_bound_counts_only_while_the_queue_does_not_move():
    """Third in line behind two jobs of 0.4 s each with a bound of 0.6 s: the queue moves after
    0.4 s (the job ahead starts), so the third job gets its slot after ~0.8 s instead of being
    told "busy" at 0.6 s; a queue that does not move still gives up at the bound."""
    gate = WorkGate(concurrency=1, max_waiting=2, max_wait_s=0.6)
    got: dict[str, float] = {}

    def job(name: str, hold: float) -> None:
        t = time.monotonic()
        with gate.slot():
            got[name] = time.monotonic() - t
            time.sleep(hold)

    threads = [threading.Thread(target=job, args=(n, 0.4)) for n in "abc"]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert got["c"] > 0.6, got                    # waited past the bound: the queue moved meanwhile
    stuck = WorkGate(concurrency=1, max_waiting=1, max_wait_s=0.3)
    stuck.acquire()
    with pytest.raises(Busy, match="stayed busy for 0 s without the queue moving"):
        stuck.acquire()


def test_a_waiting_job_that_gives_up_frees_its_visitor():
    gate = WorkGate(concurrency=1, max_waiting=2, max_wait_s=0.3)
    gate.acquire(visitors=[("session", "a")])
    with pytest.raises(Busy, match="stayed busy for 0 s"):
        gate.acquire(visitors=[("session", "b")])
    assert gate.jobs_of(("session", "b")) == 0 and gate.waiting == 0


def test_clicks_are_limited_per_visitor():
    now = [0.0]
    limiter = ClickLimiter(rate=20, clock=lambda: now[0])
    a, b = [("session", "a"), ("address", "1.1.1.1")], [("session", "b"), ("address", "2.2.2.2")]
    assert all(limiter.allow(a) for _ in range(20))       # a burst of 20 at once
    assert not limiter.allow(a) and limiter.allow(b)      # the 21st waits; another visitor does not
    now[0] += 0.05                                        # 1/20 s later: one more
    assert limiter.allow(a) and not limiter.allow(a)
    same_address = [("session", "c"), ("address", "1.1.1.1")]
    assert not limiter.allow(same_address)                # a new session from the same address
    assert limiter.sentence() == ("you are clicking faster than this demo answers (20 clicks a second at "
                                  "most per visitor): wait a moment, then click again")


def test_a_job_above_the_seconds_limit_is_refused_with_its_estimate():
    ten = Job(app="pca", sizes_wh=((320, 240),) * 10, load_size=448, patch=14, stride=7, blocks=12,
              embed_dim=384)
    small = Job(app="pca", sizes_wh=((320, 240),) * 2, load_size=224, patch=14, stride=7, blocks=12,
                embed_dim=384)
    check_job(small, math.inf, DEFAULT_MAX_SECONDS)
    assert small.seconds < ten.seconds
    with pytest.raises(WorkRefused, match=rf"^this request is too much work for this server: about "
                                          rf"{ten.seconds:.0f} s \(10 images of up to 5,292 patches, 12 blocks\), "
                                          rf"above the limit of 5 s; .* or run the demo locally with a higher "
                                          rf"--max-seconds$"):
        check_job(ten, math.inf, 5)


def test_the_work_meter_counts_the_process_cpu_time_shared_by_the_running_jobs():
    """Seconds of work = process CPU seconds / the 2 vCPUs of the fit, each job charged its share
    while several run; past twice the estimate, one sentence."""
    from vitdense.web.serving.workbudget import Overrun, WorkMeter
    cpu, running = [100.0], [1]
    meter = WorkMeter(3.0, running=lambda: running[0], cpu=lambda: cpu[0])
    cpu[0] += 8.0                                         # 8 CPU s alone: 4 s of work
    assert meter.seconds() == 4.0
    meter.check()                                         # 4 <= 2 x 3
    running[0], cpu[0] = 2, cpu[0] + 6.0                  # 6 CPU s shared with another job: 1.5 s
    assert meter.seconds() == 5.5
    running[0], cpu[0] = 1, cpu[0] + 2.0                  # alone again: 6.5 s > 2 x 3 s
    with pytest.raises(Overrun, match=r"^stopped after 6.5 s of work: more than twice its estimate of 3 s; "
                                      r"try fewer or smaller images$"):
        meter.check()
    off = WorkMeter(1.0, factor=math.inf, cpu=lambda: cpu[0])
    cpu[0] += 1e6
    off.check()                                           # inf: never stopped


def test_a_job_holding_the_slot_past_the_hold_while_others_wait_is_stopped():
    """Wall time counts only while another visitor waits: past max(hold, 2 x estimate) then, one
    sentence; alone, a job slowed by the machine's load runs on (its CPU work is what counts)."""
    from vitdense.web.serving.workbudget import Overrun, WorkMeter
    wall, waiting = [0.0], [0]
    meter = WorkMeter(15.0, cpu=lambda: 0.0, hold_s=60.0, waiting=lambda: waiting[0], clock=lambda: wall[0])
    assert meter.hold_limit_s == 60.0                     # max(60, 2 x 15)
    wall[0] = 500.0
    meter.check()                                         # nobody waits: no limit on wall time
    waiting[0] = 1
    with pytest.raises(Overrun, match=r"^stopped after 500 s while other visitors waited \(a job keeps the demo "
                                      r"at most 60 s when others wait; this server is busy\)"):
        meter.check()
    long = WorkMeter(45.0, cpu=lambda: 0.0, hold_s=60.0, waiting=lambda: 1, clock=lambda: wall[0])
    assert long.hold_limit_s == 90.0                      # its own allowance is longer: 2 x 45
    wall[0] += 89.0
    long.check()
    never = WorkMeter(1.0, cpu=lambda: 0.0, waiting=lambda: 1, clock=lambda: wall[0])   # hold inf (default)
    wall[0] += 1e6
    never.check()

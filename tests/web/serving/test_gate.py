"""The job gate (vitdense.web.serving.gate) without Gradio: admission in its documented order, what
an admitted job holds until it is released, and limits replaced while the server runs."""
from __future__ import annotations

import dataclasses

import pytest

from vitdense.errors import ParameterError
from vitdense.web.serving.gate import JobGate
from vitdense.web.serving.limits import Limits
from vitdense.web.serving.workbudget import Busy, Job, WorkRefused

#: a correspondence pair of two 640 x 480 photos at the bundled model's settings (patch 14, stride 7)
PAIR = Job(app="correspondences", sizes_wh=((640, 480), (640, 480)), load_size=224, patch=14, stride=7,
           blocks=12, embed_dim=384)


def test_an_admitted_job_holds_a_slot_and_its_memory_until_released():
    gate = JobGate(Limits(session_bytes=1 << 30))
    held = gate.admit(PAIR, visitors=("a",))
    assert PAIR.working_bytes > 0 and held.reserved == PAIR.working_bytes
    assert gate.results.reserved == PAIR.working_bytes and gate.work.running == 1
    assert held.job is PAIR and gate.last_job is PAIR and held.waited < 1.0
    with pytest.raises(Busy, match="already have a job"):      # one job per visitor
        gate.admit(PAIR, visitors=("a",))
    JobGate.release(held)
    assert gate.results.reserved == 0 and gate.work.running == 0
    JobGate.release(gate.admit(PAIR, visitors=("a",)))      # the visitor's turn came back


def test_too_much_work_or_memory_is_refused_before_waiting():
    gate = JobGate(Limits(max_work=PAIR.work.units / 2))
    with pytest.raises(WorkRefused):
        gate.admit(PAIR, visitors=("a",))
    small = JobGate(Limits(session_bytes=PAIR.working_bytes // 2))
    with pytest.raises(ParameterError, match="MiB of memory while it runs"):
        small.admit(PAIR, visitors=("a",))
    for g in (gate, small):                                  # nothing was taken
        assert g.work.running == 0 and g.work.waiting == 0 and g.results.reserved == 0


def test_a_full_waiting_room_answers_busy_at_once():
    gate = JobGate(Limits(concurrency=1, max_waiting=0))
    held = gate.admit(PAIR, visitors=("a",))
    with pytest.raises(Busy, match="busy"):
        gate.admit(PAIR, visitors=("b",))
    JobGate.release(held)
    assert gate.work.running == 0


def test_the_seconds_scale_counts_in_the_estimate_and_the_limit():
    base = JobGate(Limits())
    slow = JobGate(Limits(seconds_scale=4.0))
    assert slow.seconds(PAIR) == pytest.approx(4 * base.seconds(PAIR))
    tight = JobGate(Limits(max_seconds=base.seconds(PAIR) * 2, seconds_scale=4.0))
    assert base.fits(PAIR) and not tight.fits(PAIR)
    with pytest.raises(WorkRefused):
        tight.check(PAIR)


def test_configure_rebuilds_only_the_parts_whose_limits_changed():
    gate = JobGate(Limits())
    results, work, clicks = gate.results, gate.work, gate.clicks
    held = gate.admit(PAIR, visitors=("a",))
    gate.configure(dataclasses.replace(gate.limits, max_work=gate.limits.max_work * 2))
    assert (gate.results, gate.work, gate.clicks) == (results, work, clicks)
    gate.configure(dataclasses.replace(gate.limits, concurrency=2))
    assert gate.work is not work and gate.results is results and gate.clicks is clicks
    JobGate.release(held)                                   # released into the gate that admitted it
    assert work.running == 0 and results.reserved == 0
    gate.configure(dataclasses.replace(gate.limits, click_rate=1.0, session_bytes=1 << 30))
    assert gate.clicks is not clicks and gate.results is not results


def test_clicks_are_limited_per_visitor_and_free_without_one():
    gate = JobGate(Limits(click_rate=2.0))
    allowed = [gate.allow_click(("a",)) for _ in range(20)]
    assert allowed[0] and not all(allowed)                  # a burst past the rate is refused
    assert gate.allow_click(("b",))                         # another visitor is not
    assert all(gate.allow_click(()) for _ in range(20))     # no visitor key: nothing to count

"""The Gradio side of the hardening, without a server: status lines, cleared sessions, raw inputs,
the work gate's slot, the settings offered, app.py's limit flags, a full queue's sentence, a bad
video upload."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
import math
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

import app
from vitdense.errors import ParameterError
from vitdense.web import gate, patches, status
from vitdense.web.errors import ui_errors
from vitdense.web.pool import stride_choices
from vitdense.web.serving import validate
from vitdense.web.serving.limits import Limits
from vitdense.web.serving.results import SessionCleared
from vitdense.web.serving.workbudget import Job
from tests import REPO


def pair_job(stride: int, **kw: object) -> Job:
    """A 256 x 256 pair at load size 224 with the bundled ViT-S/14's patch, 12 blocks."""
    return Job(sizes_wh=((256, 256),) * 2, load_size=224, patch=14, stride=stride, blocks=12, **kw)


def test_status_line_follows_errors_successes_and_cleared_sessions():
    tab = __name__.rsplit(".", 1)[-1]   # ui_errors names the tab after the handler's module
    read = status.status_reader(tab)

    @ui_errors
    def fails() -> None:
        raise ParameterError("x=nan is not a number")

    @ui_errors
    def works() -> tuple:
        return 1, 2, status.Done("Found 3 pairs.")

    @ui_errors(cleared=lambda msg: (gr.skip(), msg))
    def cleared() -> tuple:
        raise SessionCleared("Your results were cleared to make room for other visitors: press X again.")

    with pytest.raises(gr.Error, match="x=nan is not a number"):
        fails()
    assert read() == "x=nan is not a number"
    assert works() == (1, 2) and read().startswith("Found 3 pairs. (")
    out = cleared()                                  # no error: the outputs carry the sentence
    assert out[1].startswith("Your results were cleared") and read() == out[1]


def test_a_visitors_clicks_run_one_at_a_time():
    """Clicks sent without waiting for the previous answer (the page's trigger mode "multiple")
    each read what the previous click saved: none of the two is lost."""
    import threading
    import time
    saved: list[list[str]] = [[]]

    @ui_errors
    def click(name: str) -> None:
        clicks = list(saved[0])          # read ...
        time.sleep(0.05)
        saved[0] = clicks + [name]       # ... modify, save

    threads = [threading.Thread(target=click, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(saved[0]) == ["a", "b"]


def test_heavy_slot_is_released_when_the_handler_ends():
    old = gate.JOBS.limits
    gate.configure(max_work=1e9, max_waiting=0)
    try:
        @ui_errors
        def heavy(stride: int) -> str:
            gate.admit(pair_job(stride))
            assert gate.JOBS.work.running == 1
            return "done"

        assert heavy(7) == "done" and gate.JOBS.work.running == 0
        with pytest.raises(gr.Error, match="too much work"):
            heavy(2)                                  # 3.0e9 > 1e9: refused before the gate
        assert gate.JOBS.work.running == 0 and gate.JOBS.work.waiting == 0
        assert stride_choices("dinov2_vits14_imgfocus") == ["auto", "2", "7", "14"]  # 1 never fits
    finally:
        gate.JOBS.configure(old)
    assert stride_choices("dinov2_vits14_imgfocus")[:1] + stride_choices("dinov2_vits14_imgfocus")[-3:] == \
        ["auto", "2", "7", "14"]


def test_a_heavy_job_holds_its_working_memory_until_it_ends():
    from vitdense.web.serving.workbudget import working_bytes
    need = working_bytes([(256, 256)] * 2, 224, 14, 7, 384)
    old = gate.JOBS.limits
    gate.configure(session_bytes=need + (1 << 20))
    try:
        @ui_errors
        def heavy(bin: bool) -> int:
            gate.admit(pair_job(7, embed_dim=384, bin=bin))
            return gate.JOBS.results.reserved

        assert heavy(False) == need and gate.JOBS.results.reserved == 0
        with pytest.raises(gr.Error, match=r"needs about \d+ MiB of memory while it runs"):
            heavy(True)                               # 17 x wider descriptors: refused at once
        assert gate.JOBS.work.running == 0 and gate.JOBS.results.reserved == 0
    finally:
        gate.JOBS.configure(old)


def test_raw_inputs_and_too_few_values():
    n = patches.raw(gr.Number(None, precision=0, minimum=0))
    assert math.isnan(n.preprocess(math.nan)) and n.preprocess(10 ** 400) == 10 ** 400
    d = patches.raw(gr.Dropdown(["a", "b"]))
    assert d.preprocess("zzz") == "zzz"             # our validator answers, not Gradio's choice check

    class Fn:
        api_name, inputs = "match_point", [1, 2, 3]

    with pytest.raises(gr.Error, match=r"this call is missing inputs: /match_point takes 3 values .* 1 were "
                                       r"given") as info:
        with gr.Blocks() as demo:
            pass
        patches.check_api_inputs(demo)
        demo.validate_inputs(Fn(), [5])
    assert "object at 0x" not in info.value.message


def test_app_flags_become_limits():
    assert app.limits(app.parse_args([])) == {}     # every default is Limits'
    assert (Limits().temp_max_bytes, Limits().queue_size) == (2 << 30, 64)
    limits = Limits(**app.limits(app.parse_args(["--temp-max-disk", "512MiB", "--temp-max-age", "60",
                                                       "--queue-size", "8"])))
    assert (limits.temp_max_bytes, limits.temp_max_age_s, limits.temp_every_s) == (512 << 20, 60.0, 15.0)
    assert limits.queue_size == 8
    memory = Limits(**app.limits(app.parse_args(["--session-memory", "1GiB", "--cache-memory", "64MiB"])))
    assert (memory.session_bytes, memory.cache_bytes) == (1 << 30, 64 << 20)
    with pytest.raises(ParameterError, match="'lots' is not a size"):
        app.limits(app.parse_args(["--temp-max-disk", "lots"]))
    fair = Limits(**app.limits(app.parse_args(["--max-seconds", "30", "--click-rate", "5", "--proxy-hops", "1"])))
    assert (fair.max_seconds, fair.click_rate, fair.proxy_hops) == (30.0, 5.0, 1)
    assert Limits.resolve(cuda=False).max_seconds == 60.0 and Limits.resolve(cuda=True).max_seconds == math.inf
    with pytest.raises(ParameterError, match="max seconds 'soon' is not a number"):
        app.limits(app.parse_args(["--max-seconds", "soon"]))
    stop = Limits(**app.limits(app.parse_args(["--overrun-factor", "3", "--seconds-scale", "1.5"])))
    assert (stop.overrun, stop.seconds_scale) == (3.0, 1.5) and Limits.resolve(cuda=False).overrun == 2.0
    assert Limits.resolve(cuda=True).overrun == math.inf      # the estimate counts the CPU's work
    hold = Limits(**app.limits(app.parse_args(["--max-hold", "45"])))
    assert hold.hold_s == 45.0 and Limits.resolve(cuda=False).hold_s == Limits.resolve(cuda=True).hold_s == 60.0


def test_a_full_queue_answers_our_sentence():
    from gradio.data_classes import PredictBodyInternal
    with gr.Blocks() as demo:
        text = gr.Textbox()
        gr.Button().click(lambda x: x, text, text, api_name="echo")
    demo.queue(max_size=2)
    patches.own_queue_full(demo)

    async def push_four() -> list:
        return [await demo._queue.push(PredictBodyInternal(data=["hi"], fn_index=0, session_hash=f"s{i}"),
                                       None, None) for i in range(4)]

    answers = asyncio.run(push_four())
    assert [state for _, _, state in answers] == ["success", "success", "queue_full", "queue_full"]
    assert answers[2][:2] == (False, "the demo is receiving too many requests right now (2 waiting, the "
                                     "most it holds): try again in a minute, or run it locally (python app.py)")


def test_a_bad_video_upload_is_told_at_once(tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.warns(UserWarning, match="notes.mp4: not a readable video"):     # the toast
        status.check_upload_value(str(notes), "video", validate.check_video_upload)
    assert status.status_reader("video")().startswith("notes.mp4: not a readable video (upload an MP4")


def test_heavy_handlers_run_in_a_low_priority_thread():
    """On the CPU a heavy handler runs niced (with the caller's context), so that clicks keep most
    of the cores; a click's handler runs where it is called."""
    import contextvars
    import os
    import threading
    marker = contextvars.ContextVar("marker", default="none")

    def where() -> tuple[str, int, str]:
        return (threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                marker.get())

    @ui_errors(heavy=True)
    def heavy() -> tuple:
        return where() + (gate.in_job_thread(where)[0],)     # nested: the same thread

    @ui_errors
    def click() -> tuple:
        return where()

    marker.set("request")
    base = where()[1]
    name, nice, seen, nested = heavy()
    assert name.startswith("vitdense-job") and nested == name and seen == "request"
    assert nice == min(19, base + gate.JOB_NICENESS)
    assert click()[:2] == (threading.current_thread().name, base)   # the caller's priority untouched


def test_a_picture_shown_twice_is_replaced_whole_not_rewritten_in_place(tmp_path):
    """A download of a cached picture that is under way keeps reading the complete file when the
    same picture is written again (Gradio alone truncated it in place)."""
    import os

    from gradio import processing_utils
    from PIL import Image
    patches.atomic_picture_cache()
    img = Image.fromarray((np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3))
    first = processing_utils.save_pil_to_cache(img, str(tmp_path), format="png")
    size = os.path.getsize(first)
    with open(first, "rb") as download:                    # a visitor's download, under way
        head = download.read(10)
        again = processing_utils.save_img_array_to_cache(np.asarray(img), str(tmp_path), format="png")
        rest = download.read()
        # the file the download holds open was never written to: a new file took its name
        assert os.fstat(download.fileno()).st_ino != os.stat(again).st_ino
    assert again == first and len(head) + len(rest) == size == os.path.getsize(again)
    assert [p.name for p in Path(first).parent.iterdir()] == [Path(first).name]   # no staging file left
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(img))


def test_a_visitors_slot_keeps_its_newest_folders_and_keeps_its_parents_young(tmp_path, monkeypatch):
    """In a visitor's event, each output folder goes to the visitor's slot (tab and kind), which
    deletes its folders beyond the newest two once they are older than the grace period."""
    import os
    import time

    from gradio.context import LocalContext

    from vitdense.web import zips
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    token = LocalContext.request.set(SimpleNamespace(session_hash="visitor-1", headers={}, client=None))
    tab = gate.CURRENT_TAB.set("correspondences")
    try:
        folders = [zips.output_folder("corr-") for _ in range(4)]
        assert len({f.parent for f in folders}) == 1              # one slot, all younger than the grace
        assert len(list(folders[0].parent.iterdir())) == 4
        old = time.time() - 60
        for i, f in enumerate((*folders, folders[0].parent, folders[0].parent.parent, zips.output_root())):
            os.utime(f, (old + i, old + i))                        # a minute ago, in creation order
        newest = zips.output_folder("corr-")
        assert sorted(folders[0].parent.iterdir()) == sorted([folders[-1], newest])
        assert time.time() - zips.output_root().stat().st_mtime < 10    # the janitor sees a live tree
    finally:
        gate.CURRENT_TAB.reset(tab)
        LocalContext.request.reset(token)
    assert zips.output_folder("corr-").parent == zips.output_root()      # outside an event: no slot


def test_the_visitors_address_behind_a_proxy():
    req = SimpleNamespace(headers={"x-forwarded-for": "6.6.6.6, 203.0.113.9"}, client=SimpleNamespace(host="10.16.3.80"))
    assert gate.client_address(req, 0) == "10.16.3.80"          # no proxy trusted: the connection's peer
    assert gate.client_address(req, 1) == "203.0.113.9"         # what the nearest proxy saw (not the claim)
    assert gate.client_address(req, 2) == "6.6.6.6"
    no_header = SimpleNamespace(headers={}, client=SimpleNamespace(host="10.16.3.80"))
    assert gate.client_address(no_header, 1) == "10.16.3.80"


def test_a_job_past_twice_its_estimate_is_stopped_and_the_previous_results_stay(bundled_extractor):
    """A real co-segmentation whose estimate the limits make small (``seconds_scale``) stops between
    its extraction chunks with one sentence; its slot and memory are given back, and the visitor's
    previous result is still there."""
    import re

    from PIL import Image

    from vitdense import web
    cats = sorted(str(p) for p in (REPO / "assets/cats").glob("*.jpg"))
    web.POOL.put(bundled_extractor)
    previous = web.run_cosegmentation([{"image": p} for p in cats[:2]], load_size=112)[-1]
    full_calls = bundled_extractor.num_forward_calls
    web.run_cosegmentation([{"image": p} for p in cats], load_size=112)    # all 5 (cached: 2)
    full_calls = bundled_extractor.num_forward_calls - full_calls
    job = Job(app="cosegmentation", sizes_wh=tuple(Image.open(p).size for p in cats), load_size=224,
              patch=14, stride=7, blocks=12, embed_dim=384)
    old = gate.JOBS.limits
    gate.configure(seconds_scale=0.25 / job.seconds)      # estimated at 0.25 s: allowed 0.5 s of work
    calls = bundled_extractor.num_forward_calls
    try:
        with pytest.raises(gr.Error) as info:
            web.run_cosegmentation([{"image": p} for p in cats], load_size=224)
    finally:
        gate.JOBS.configure(old)
    m = re.fullmatch(r"stopped after ([\d.]+) s of work: more than twice its estimate of ([\d.]+) s; "
                     r"try fewer or smaller images", info.value.message)
    # the sentence rounds to 0.1 s: work just past 0.5 s reads "0.5 s"
    assert m and float(m[1]) + 0.05 > 2 * float(m[2]) and abs(float(m[2]) - 0.25) < 0.01
    assert 0 < bundled_extractor.num_forward_calls - calls < full_calls      # stopped between chunks
    assert gate.JOBS.work.running == 0 and gate.JOBS.results.reserved == 0
    assert gate.JOBS.results.get(previous) is not None                        # the previous result stays
    assert status.status_reader("cosegmentation")() == info.value.message


def test_a_job_past_its_allowance_is_stopped_inside_a_network_pass(bundled_extractor):
    """The allowance runs out in the middle of a pair's first network pass: the pass stops between
    two transformer blocks (a stop point of vitdense.stops), not at its end."""
    import traceback

    from PIL import Image

    from vitdense import web
    from vitdense.web.serving.workbudget import Overrun
    from vitdense.web.tabs.correspondences import pair_session
    from tests.web.test_app_client import CAT_A, CAT_B
    web.POOL.put(bundled_extractor)
    job = Job(app="correspondences", sizes_wh=tuple(Image.open(p).size for p in (CAT_A, CAT_B)), load_size=224,
              patch=14, stride=14, blocks=12, embed_dim=384)
    old = gate.JOBS.limits
    gate.configure(seconds_scale=0.05 / job.seconds)     # a fraction of the first pass's work
    try:
        with pytest.raises(Overrun) as info:
            pair_session(str(CAT_A), str(CAT_B), load_size=224)
    finally:
        gate.JOBS.configure(old)
        gate.release_held()
    where = [(f.filename, f.name) for f in traceback.extract_tb(info.value.__traceback__)]
    assert any(f.endswith("features/extractor.py") and n == "forward" for f, n in where), where[-4:]
    assert gate.JOBS.work.running == 0


def test_the_cosegmentation_tab_on_real_photos_matches_the_hand_drawn_masks(bundled_extractor):
    """The web tab's quality on bench/data/coseg_sets/felines_2 (hand-drawn masks) at the page's
    defaults: the masks it keeps for the visitor score as the library's (Jaccard > 0.85; README 0.877)."""
    from PIL import Image

    from vitdense import web
    from vitdense.eval.metrics import jaccard
    root = REPO / "bench/data/coseg_sets/felines_2"
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    web.POOL.put(bundled_extractor)
    key = web.run_cosegmentation([{"image": str(root / "images" / f"{s}.jpg")} for s in stems])[-1]
    masks = gate.JOBS.results.get(key).result.masks
    truth = [np.asarray(Image.open(root / "masks" / f"{s}.png")) > 0 for s in stems]
    scores = [jaccard(m, g) for m, g in zip(masks, truth)]
    assert np.mean(scores) > 0.85 and min(scores) > 0.75, dict(zip(stems, scores))

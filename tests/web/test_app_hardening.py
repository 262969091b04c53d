"""The served demo under hostile use, through a real client: ``python app.py`` with a tiny session
budget and a short temporary-file age, on a free loopback port, called with gradio_client (and
raw HTTP where gradio_client refuses to send the value)."""
from __future__ import annotations

import collections
import contextlib
import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image
from tests.web.test_app_client import CAT_A, CAT_B, CATS

from vitdense.web.local_server import serve_app

TEMP_AGE_S = 4
CLICK_RATE = 8        # clicks a second per visitor (20 by default): a burst of 40 surely goes over it
PAIR_112 = dict(load_size=112, api_name="/correspondences")


@contextlib.contextmanager
def serve(tmp: Path, *flags: str) -> Iterator[str]:
    """The demo with ``flags``, its temporary files under ``tmp`` (the tests count them)."""
    env = dict(TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"))
    with serve_app(tmp / "server.log", *flags, env=env) as server:
        yield server.url


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A server whose memory budget holds one pair job at load size 112 while it runs plus 512 KiB
    (so a visitor's result is evicted when the next visitor's job starts), and whose temporary
    files live 4 s. The job is the default's: image B also described mirrored."""
    from vitdense.web.serving.workbudget import working_bytes
    tmp = tmp_path_factory.mktemp("server")
    pair = [Image.open(p).size for p in (CAT_A, CAT_B)]
    budget = working_bytes(pair + pair[1:], 112, 14, 7, 384) + (512 << 10)   # ViT-S/14, stride 7
    with serve(tmp, "--session-memory", str(budget), "--temp-max-age", str(TEMP_AGE_S),
               "--click-rate", str(CLICK_RATE)) as url:
        yield url, tmp


def client(url: str):
    from gradio_client import Client
    return Client(url, verbose=False)


def raw_call(url: str, api: str, body: str) -> str:
    """POST ``body`` as it is (JSON with NaN, huge integers...) and return the event's error text."""
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    text = urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=120).read().decode()
    data = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    return data[-1]["error"] if isinstance(data[-1], dict) else str(data[-1])


def test_eviction_gives_the_sentence_and_the_server_keeps_answering(server):
    from gradio_client import handle_file
    url, _ = server
    first, second = client(url), client(url)
    first.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), **PAIR_112)
    assert "| a |" in first.predict(200, 100, api_name="/match_point")[3]
    second.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), **PAIR_112)  # no room for both
    t = time.perf_counter()
    out = first.predict(200, 100, api_name="/match_point")                         # no error badge:
    assert out[3] == ("**Your results were cleared to make room for other visitors: press Find "
                      "correspondences again.**")                                    # the sentence
    assert time.perf_counter() - t < 2.0
    a, b, heat, md, points, _ = second.predict(200, 100, api_name="/match_point")  # still answering
    assert [c["id"] for c in points["clicks"]] == ["a"] and "| a |" in md


@pytest.mark.parametrize("settings, message", [
    # 3 images: the default also describes B mirrored (vitdense.ops.mirror)
    (dict(stride="1"), r"too much work for this server: about \d+ s \(3 images .* above the limit of 60 s; use "
                       r"a smaller load size than 448 .* a higher --max-seconds$"),
    (dict(bin="on"), r"this request needs about \d+ MiB of memory while it runs, more than the demo's "
                     r"\d+ MiB for visitors' results .* no log-binning")], ids=["work", "memory"])
def test_a_request_above_a_limit_is_refused_at_once(server, settings, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    url, _ = server
    t = time.perf_counter()
    with pytest.raises(AppError, match=message):
        client(url).predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), load_size=448,
                            api_name="/correspondences", **settings)
    assert time.perf_counter() - t < 5.0


def test_every_message_is_one_of_ours(server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    url, _ = server
    c = client(url)
    notes, tiny, bomb = tmp_path / "notes.jpg", tmp_path / "tiny.png", tmp_path / "bomb.png"
    notes.write_text("not a picture")
    Image.new("RGB", (1, 1)).save(tiny)
    Image.new("1", (20000, 20000)).save(bomb)
    for path, message in [(notes, r"notes.jpg: not a readable image \(upload a JPEG"),
                          (tiny, r"tiny.png: 1 x 1 pixels is too small \(the shorter side must be at least 32"),
                          (bomb, r"bomb.png: too large \(400 megapixels, the limit is 50\)")]:
        with pytest.raises(AppError, match=message):
            c.predict(handle_file(str(path)), handle_file(str(CAT_B)), api_name="/correspondences")
    notes_clip = tmp_path / "notes.mp4"
    notes_clip.write_text("not a video")
    with pytest.raises(AppError, match=r"notes.mp4: not a readable video \(upload an MP4"):
        c.predict(handle_file(str(notes_clip)), api_name="/video")
    c.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), **PAIR_112)
    for x, message in [(1e308, r"the point \(x=1e\+308, y=10.0\) is outside image A \(400 x 266"),
                       (10 ** 400, "x must be a finite number, not a 401-digit number"),
                       ("abc", "x='abc' is not a number")]:
        with pytest.raises(AppError, match=message):
            c.predict(x, 10, api_name="/match_point")
    with pytest.raises(AppError, match="num_pairs=1e\\+06 is out of range: expected from 1 to 50"):
        c.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), num_pairs=1e6, **PAIR_112)
    c.predict([{"image": handle_file(str(p))} for p in CATS[:2]], load_size=112, api_name="/part_cosegmentation")
    with pytest.raises(AppError, match="image index=99 is out of range: expected from 0 to 1"):
        c.predict(99, api_name="/part_view")
    # what gradio_client will not send: NaN, too few values
    for body, message in [('{"data": [NaN, 10]}', "run correspondences first"),
                          ('{"data": []}', "this call is missing inputs: /match_point takes 3 values")]:
        text = raw_call(url, "match_point", body)
        assert message in text and "object at 0x" not in text and "gradio" not in text


def test_temporary_files_are_deleted_after_the_configured_age(server):
    from gradio_client import handle_file
    url, tmp = server
    c = client(url)
    c.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), **PAIR_112)
    ours = tmp / "gradio" / "vitdense-app"                      # inside Gradio's cache folder
    zips = lambda: sorted(p.name for p in tmp.rglob("*.zip"))  # noqa: E731
    assert any(ours.iterdir()) and zips()                       # the download (served as it is)
    deadline = time.monotonic() + TEMP_AGE_S + 20
    while (zips() or any(ours.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert zips() == [] and not any(ours.iterdir())


def test_a_full_queue_is_refused_with_our_sentence(tmp_path):
    with serve(tmp_path, "--queue-size", "0", "--no-preload") as url:   # every queued event: full
        req = urllib.request.Request(f"{url}gradio_api/call/match_point", data=b'{"data": [1, 2]}',
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=30)
        body = info.value.read()                  # while the server is up (it closes the socket)
    assert info.value.code == 503
    assert json.loads(body)["detail"] == (
        "the demo is receiving too many requests right now (0 waiting, the most it holds): try again "
        "in a minute, or run it locally (python app.py)")


def queue_join(url: str, session: str, fn_index: int, data: list) -> str:
    """An event sent as it is (NaN included) in ``session`` (a gradio_client's, whose state holds
    results); the error text, or "accepted"."""
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                       "trigger_id": None})
    req = urllib.request.Request(f"{url}gradio_api/queue/join", body.encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream:
            msg = json.loads(line[5:]) if line.startswith(b"data:") else {}
            if msg.get("msg") == "process_completed":
                return str((msg.get("output") or {}).get("error") or "accepted")
    return "no answer"


def test_one_heavy_job_per_visitor_and_a_click_rate(server, tmp_path):
    """A second heavy job of the same visitor (its session, or its address: a new session from the
    same address) is refused at once; an auto-clicker's clicks beyond 20 a second are told to slow
    down (8 a second in this server), the others are answered."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    url, _ = server
    # (the pictures of a burst's older clicks are replaced by the newer ones: not downloaded here)
    c, same_address = Client(url, verbose=False, download_files=False), client(url)
    pair = (handle_file(str(CAT_A)), handle_file(str(CAT_B)))
    jobs = []             # three jobs at once, on images no one sent (each runs the network)
    for k, who in enumerate((c, c, same_address)):
        fresh = []
        for src in (CAT_A, CAT_B):
            fresh.append(tmp_path / f"fresh_{k}_{Path(src).name}")
            img = Image.open(src)            # a 2-pixel crop: as large as the budget allows
            img.crop((2 - k % 2, 2, img.width - 2 - k % 2, img.height - 2)).save(fresh[-1])
        jobs.append(who.submit(*(handle_file(str(f)) for f in fresh), **PAIR_112))
    answers = []
    for job in jobs:
        try:
            job.result(timeout=120)
            answers.append("accepted")
        except AppError as err:
            answers.append(str(err))
    assert sorted(answers) == ["accepted"] + ["you already have a job running or waiting on this demo (one at a "
                                              "time per visitor): wait for it to finish, then press again"] * 2
    c.predict(*pair, **PAIR_112)                                  # its turn again once the first ended
    jobs = [c.submit(10 + i, 10, api_name="/match_point") for i in range(40)]
    answers = collections.Counter()
    for job in jobs:
        try:
            job.result(timeout=60)
            answers["answered"] += 1
        except AppError as err:
            assert str(err) == (f"you are clicking faster than this demo answers ({CLICK_RATE} clicks a second "
                                "at most per visitor): wait a moment, then click again")
            answers["slow down"] += 1
    assert answers["answered"] >= CLICK_RATE and answers["slow down"] >= 1, answers


def test_api_values_are_judged_before_gradio_and_nan_clicks_on_a_session(server):
    """A file payload that is not a file, a model the page does not offer, and NaN / inf clicks on
    a session that holds results: one sentence each, no pydantic text, no traceback in the log."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    url, tmp = server
    c = client(url)
    video = c._infer_fn_index("/video", None)
    n = len(c.config["dependencies"][video]["inputs"])
    bad = json.dumps({"data": [{"path": 5, "meta": {"_type": "gradio.FileData"}}] + [None] * (n - 1)})
    text = raw_call(url, "video", bad)
    assert text.startswith("/video: value 1 (") and "is not a file as the page's 'Use via API' shows it" in text
    with pytest.raises(AppError, match=r"^model 'dino_vitb8' is not available on this demo; choose one of "
                                       r"dinov2_vits14_imgfocus"):
        c.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), model="dino_vitb8", **PAIR_112)
    c.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), **PAIR_112)
    match = c._infer_fn_index("/match_point", None)
    for x, message in [(math.nan, "x must be a finite number, not nan"),
                       (math.inf, "x must be a finite number, not inf"),
                       (-math.inf, "x must be a finite number, not -inf")]:
        assert message in queue_join(url, c.session_hash, match, [None, x, 10])
    assert "| a |" in c.predict(200, 100, api_name="/match_point")[3]     # the results are still there
    log = (tmp / "server.log").read_text()
    assert "pydantic" not in log and "Traceback" not in log


def test_clicks_write_no_zip_and_the_download_is_the_cli_layout(server, tmp_path):
    """Ten clicks write no download (issue 22: no disk per click for zips); "Prepare download"
    (/correspondences_download) then zips the pair with its ten clicks, in the command line's
    layout (the demo's stems carry A_ / B_ so that two uploads with one name stay apart)."""
    import shutil
    import zipfile

    from gradio_client import handle_file

    from vitdense.cli.main import main
    url, tmp = server
    c = client(url)
    c.predict(handle_file(str(CAT_A)), handle_file(str(CAT_B)), **PAIR_112)
    before = set(tmp.rglob("*.zip"))                              # the run's zip
    for i in range(10):
        points = c.predict(20 + 10 * i, 50, api_name="/match_point")[4]
        time.sleep(1 / CLICK_RATE)
    assert set(tmp.rglob("*.zip")) - before == set() and len(points["clicks"]) == 10
    with zipfile.ZipFile(c.predict(api_name="/correspondences_download")) as zf:
        names = set(zf.namelist())
        assert len(json.loads(zf.read("points.json"))["clicks"]) == 10
    (tmp_path / "pairs" / "cat").mkdir(parents=True)
    for src in (CAT_A, CAT_B):
        shutil.copy(src, tmp_path / "pairs" / "cat")
    assert main(["correspondences", str(tmp_path / "pairs"), "--out", str(tmp_path / "out"), "--model",
                 "dinov2_vits14_imgfocus", "--device", "cpu", "--load-size", "112", "--quiet"]) == 0
    cli = {str(p.relative_to(tmp_path / "out" / "cat")) for p in (tmp_path / "out" / "cat").rglob("*") if p.is_file()}
    assert {n.replace("A_cat_a", "cat_a").replace("B_cat_b", "cat_b") for n in names} == cli, (names, cli)

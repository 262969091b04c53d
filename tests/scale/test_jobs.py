"""vitdense.scale.jobs on a local Ray (CPU, bundled model, real photographs): data-set extraction equal to
the Extractor bit for bit, resume without recomputation, failures listed, per-set jobs equal to the
single-process CLI, and one line without Ray."""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitdense.cli.main import main
from vitdense.scale.jobs import extract_dataset
from vitdense.scale.store import open_descriptors, read_manifest
from tests import REPO

MODEL = dict(model="dinov2_vits14_imgfocus", device="cpu", load_size=112)
CLI_MODEL = ["--model", "dinov2_vits14_imgfocus", "--device", "cpu", "--load-size", "112", "--quiet"]


@pytest.fixture(scope="module")
def dataset(photos, tmp_path_factory) -> dict:
    """A folder of 7 real photos (4 of equal size, so they share batches; 3 of other sizes, in a
    sub-folder), a truncated JPEG and a text file named .png."""
    root = tmp_path_factory.mktemp("scale") / "photos"
    (root / "assets").mkdir(parents=True)
    for name, arr in photos.items():
        Image.fromarray(arr[:200, :260]).save(root / f"{name}.png")
    for i in (1, 2, 4):
        (root / "assets" / f"cat_{i}.jpg").write_bytes((REPO / "assets" / "cats" / f"cat_{i}.jpg").read_bytes())
    (root / "truncated.jpg").write_bytes((REPO / "assets" / "cats" / "cat_3.jpg").read_bytes()[:2500])
    (root / "notes.png").write_text("field notes, not an image\n")
    good = sorted([str(root / f"{n}.png") for n in photos] + [str(root / "assets" / f"cat_{i}.jpg") for i in (1, 2, 4)])
    return {"root": root, "good": good, "bad": [str(root / "truncated.jpg"), str(root / "notes.png")]}


@pytest.fixture(scope="module")
def extracted(ray_local, dataset, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("scale") / "store"
    summary = extract_dataset(dataset["root"], out, **MODEL, include_cls=True, saliency=True, shard_size=3,
                              num_workers=2, progress=False)
    return {"out": out, "summary": summary}


def test_extract_dataset_equals_extractor_bit_for_bit(extracted, dataset, bundled_extractor):
    s = extracted["summary"]
    assert (s.num_listed, s.num_extracted, s.num_skipped) == (9, 7, 0)
    store = open_descriptors(extracted["out"])
    assert store.paths == dataset["good"]
    records = read_manifest(extracted["out"])
    assert sorted(r["path"] for r in records) == sorted(dataset["good"] + dataset["bad"])   # each once
    assert len({r["shard"] for r in records if r["shard"]}) >= 3                  # 7 images, 3 per shard
    for path in dataset["good"]:
        [ref] = bundled_extractor.extract(path, load_size=112, include_cls=True, saliency=True)
        got = store[path]
        assert got.descs.dtype == torch.float32 and torch.equal(got.descs, ref.descs)
        assert torch.equal(got.saliency, ref.saliency) and torch.equal(got.cls, ref.cls)
        assert got.geometry == ref.geometry and got.params["model"] == "dinov2_vits14_imgfocus"
        rec = store.record(path)
        assert rec["hash"] == hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
        assert torch.equal(store[rec["hash"]].descs, ref.descs)                 # by content hash too
        assert rec["vitdense_version"] and rec["grid"] == list(ref.grid)
    assert torch.equal(store["assets/cat_1.jpg"].descs, store[dataset["good"][0]].descs)  # relative path


def test_corrupt_file_and_non_image_listed_as_failed(extracted, dataset):
    failed = extracted["summary"].failed
    assert sorted(failed) == sorted(dataset["bad"])
    assert "truncated" in failed[dataset["bad"][0]] and "not a readable image" in failed[dataset["bad"][1]]
    store = open_descriptors(extracted["out"])
    assert store.failed == failed and dataset["bad"][0] not in store
    from vitdense.errors import ParameterError
    with pytest.raises(ParameterError, match="its extraction failed"):
        store[dataset["bad"][0]]


def test_applications_run_on_the_stored_dataset(extracted, dataset, bundled_extractor):
    from vitdense.apps.cosegmentation import cosegment_descriptors
    cats = [p for p in dataset["good"] if "cat_" in p]
    stored = cosegment_descriptors(open_descriptors(extracted["out"]).load(cats), refine=False)
    fresh = cosegment_descriptors(bundled_extractor.extract(cats, load_size=112, include_cls=True, saliency=True),
                                  refine=False)
    assert all(np.array_equal(a, b) for a, b in zip(stored.masks, fresh.masks))
    assert 0.05 < np.mean([m.mean() for m in stored.masks]) < 0.95


def test_interrupted_run_resumes_without_recomputing(ray_local, dataset, extracted, tmp_path, capsys):
    out = tmp_path / "store"

    class Stop(Exception):
        pass

    seen = []

    def stop_after_first_shard(record):
        seen.append(record)
        if len({r["shard"] for r in seen}) > 1:
            raise Stop                                       # like a kill: the job stops mid-way

    kw = dict(**MODEL, include_cls=True, store_dtype="fp16", pca_dim=24, pca_sample=3, shard_size=2)
    with contextlib.suppress(Stop):
        extract_dataset(dataset["root"], out, **kw, num_workers=1, progress=False, on_record=stop_after_first_shard)
    # The workers may have finished more shards than the driver had seen when it stopped: a kill
    # loses what was in flight, so keep the first finished shard only, whatever the timing.
    parts = sorted((out / "manifest").glob("*.jsonl"))
    assert parts, "no shard was finished before the stop"
    for part in parts[1:]:
        part.unlink()
        (out / "shards" / f"{part.stem}.safetensors").unlink(missing_ok=True)
    first = {r["path"] for r in read_manifest(out)}
    assert 0 < len(first) < 9
    shards = {p.name: p.read_bytes() for p in (out / "shards").glob("*.safetensors")}
    pca = (out / "pca.safetensors").read_bytes()

    rc = main(["extract-dataset", str(dataset["root"]), "--out", str(out), *CLI_MODEL, "--include-cls",
               "--store-dtype", "fp16", "--pca-dim", "24", "--pca-sample", "3", "--shard-size", "2",
               "--workers", "1"])
    assert rc == 1                                              # the two bad files failed
    assert f"{len(first)} already stored" in capsys.readouterr().out
    records = read_manifest(out)
    assert sorted(r["path"] for r in records) == sorted(dataset["good"] + dataset["bad"])   # none twice
    assert all((out / "shards" / n).read_bytes() == b for n, b in shards.items())          # untouched
    assert (out / "pca.safetensors").read_bytes() == pca                                    # not refitted

    store, full = open_descriptors(out), open_descriptors(extracted["out"])
    assert store.paths == full.paths and store.pca.components.shape == (384, 24)
    for path in store.paths:                                   # fp16 PCA of the same descriptors
        got, ref = store[path], full[path]
        assert got.descs.shape == (ref.descs.shape[0], 24)
        expected = store.pca.project(ref.descs)
        assert torch.allclose(got.descs, expected, atol=2e-2 * expected.abs().max().item(), rtol=0)
        assert torch.equal(got.saliency, ref.saliency) and torch.equal(got.cls, ref.cls)
    evr = store.pca.explained_variance_ratio
    assert bool((evr[:-1] >= evr[1:]).all()) and 0.3 < float(evr.sum()) <= 1.0


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_set_jobs_on_two_workers_equal_the_single_process_cli(ray_local, tmp_path, capsys):
    root = tmp_path / "root"
    for name, files in {"cats": ["cats/cat_1.jpg", "cats/cat_2.jpg", "cats/cat_4.jpg"],
                        "cups": ["cups/cup_1.jpg", "cups/cup_2.jpg", "cups/cup_3.jpg"],
                        "pairs": ["pairs/cat_a.jpg", "pairs/cat_b.jpg"]}.items():
        (root / name).mkdir(parents=True)
        for f in files:
            (root / name / Path(f).name).write_bytes((REPO / "assets" / f).read_bytes())
    (root / "zbroken").mkdir()
    (root / "zbroken" / "bad.png").write_bytes(b"not a png")
    single, ray_out = tmp_path / "single", tmp_path / "ray"
    assert main(["cosegment", str(root), "--out", str(single), *CLI_MODEL]) == 1
    single_err = capsys.readouterr().err
    from vitdense.cli.main import cosegment_sets  # = vitdense cosegment ROOT --out OUT --workers 2
    status = cosegment_sets(root, ray_out, num_workers=2, model="dinov2_vits14_imgfocus", device="cpu",
                            load_size=112)
    ray_err = capsys.readouterr().err
    assert status["cats"] == "ok" and status["zbroken"].startswith("failed: ")
    a, b = _tree(single), _tree(ray_out)
    assert sorted(a) == sorted(b) and len(a) > 20
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]           # byte for byte
    assert json.loads(a["summary.json"])["failed"] == ["zbroken"]
    line = [x for x in single_err.splitlines() if "zbroken" in x]
    assert line and line == [x for x in ray_err.splitlines() if "zbroken" in x]    # the same report


def test_without_ray_one_line_names_the_install_command(monkeypatch, dataset, tmp_path, capsys):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ray", None)
    for argv in (["extract-dataset", str(dataset["root"]), "--out", str(tmp_path / "x")],
                 ["cosegment", str(REPO / "assets" / "cats"), "--out", str(tmp_path / "y"), "--workers", "2"],
                 ["parts", str(REPO / "assets" / "cats"), "--out", str(tmp_path / "z"), "--workers", "2"]):
        assert main([*argv, *CLI_MODEL]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'pip install "vitdense[scale]"' in err[0], err
    assert not (tmp_path / "x").exists()
    from vitdense.cli.main import part_cosegment_sets
    from vitdense.scale.jobs import RayUnavailableError
    with pytest.raises(RayUnavailableError, match="requirements-scale.txt"):
        part_cosegment_sets(REPO / "assets" / "cats", tmp_path / "p", num_workers=2, model="dinov2_vits14_imgfocus",
                            load_size=112, crf=False)


def test_extract_dataset_keywords_are_the_settings_and_the_job_fields():
    """The keyword function keeps its documented signature (the settings, then DatasetJob's fields)
    and refuses an unknown or absurd option in one sentence before any Ray work."""
    import inspect
    from dataclasses import fields

    from vitdense.errors import ParameterError
    from vitdense.scale.jobs import DATASET_SETTINGS, DatasetJob
    params = inspect.signature(extract_dataset).parameters
    assert list(params)[:2] == ["source", "out_dir"]
    assert {n: params[n].default for n in DATASET_SETTINGS} == DATASET_SETTINGS
    assert {f.name: params[f.name].default for f in fields(DatasetJob)} == \
        {f.name: f.default for f in fields(DatasetJob)}
    assert params["layer"].default == 11 and params["store_dtype"].default == "fp32" and "on_record" in params
    with pytest.raises(ParameterError, match="unknown extract_dataset option.*shardsize"):
        extract_dataset("nowhere", "out", shardsize=3)
    with pytest.raises(ParameterError, match="store_dtype='int3'"):
        DatasetJob(store_dtype="int3").check()
    with pytest.raises(ParameterError, match="shard_size"):
        DatasetJob(shard_size=0).check()


def test_one_call_writes_its_shard_while_the_next_extracts(dataset, tmp_path, monkeypatch):
    """An extraction actor runs two calls at once (Ray's threads, ``CALLS_PER_WORKER``): the first
    call's shard is written while the second call's images are extracted. Each write here waits
    until the other call has started extracting; were the write inside the device turn, the two
    would wait for each other and the first write would time out."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import TEST_CHECKPOINT
    from vitdense.scale import jobs
    from vitdense.version import __version__
    kw = dict(layer=11, facet="key", stride=14, load_size=112, bin=False, hierarchy=2, include_cls=False,
              saliency=False, batch_size=4)
    job = {"params_key": "test", "params": kw, "store": {"store_dtype": "fp32"}, "version": __version__}
    worker = jobs._ExtractWorker(str(tmp_path), "run", {"model": MODEL["model"], "device": "cpu",
                                                        "checkpoint": TEST_CHECKPOINT}, kw, 1, "fp32", None, job)
    assert worker.error is None
    extracting = [threading.Event(), threading.Event()]
    write, extract = jobs.write_shard, worker._extract
    calls = iter(range(2))

    def extract_in_turn(images):
        extracting[next(calls)].set()
        return extract(images)

    def write_after_the_other_started(*args, **kwargs):
        started = [e.is_set() for e in extracting]
        assert all(started) or extracting[1].wait(60), "the other call could not extract while this one wrote"
        return write(*args, **kwargs)

    monkeypatch.setattr(worker, "_extract", extract_in_turn)
    monkeypatch.setattr(jobs, "write_shard", write_after_the_other_started)
    rows = jobs.list_source([p for p in dataset["good"] if p.endswith(".png")])
    shards = [{k: np.array([r.get(k) for r in part], dtype=object) for k in rows[0]} for part in (rows[:2], rows[2:4])]
    with ThreadPoolExecutor(jobs.CALLS_PER_WORKER) as pool:
        outs = list(pool.map(lambda s: worker(jobs._read_and_hash(s, frozenset())), shards))
    records = [json.loads(r) for out in outs for r in out["record"]]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert len({r["shard"] for r in records}) == 2

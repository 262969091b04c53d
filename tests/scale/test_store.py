"""vitdense.scale.store: shards + manifest written and read back without Ray."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vitdense.errors import ParameterError
from vitdense.scale.store import open_descriptors, read_manifest, safetensors_offsets, write_shard
from tests import REPO



def test_write_shard_then_read_lazily(bundled_extractor, tmp_path):
    paths = [str(REPO / "assets" / "cups" / f"cup_{i}.jpg") for i in (1, 2)]
    descs = bundled_extractor.extract(paths, load_size=112, saliency=True)
    recs = [{"path": p, "hash": f"h{i}"} for i, p in enumerate(paths)]
    written = write_shard(tmp_path, "run-w-00000", descs, recs, [{"path": "x.jpg", "hash": "hx", "reason": "bad"}],
                          store_dtype="fp16")
    assert [r["status"] for r in written] == ["ok", "ok", "failed"] and read_manifest(tmp_path) == json.loads(
        json.dumps(written))
    offsets = safetensors_offsets(tmp_path / written[0]["shard"])
    assert written[1]["offsets"]["descs"] == offsets["descs_1"] and "cls" not in written[1]["offsets"]
    store = open_descriptors(tmp_path)
    assert store.paths == sorted(paths) and store.failed == {"x.jpg": "bad"} and len(store) == 2
    got = store["h1"]
    assert got.descs.dtype == torch.float32 and torch.equal(got.descs, descs[1].descs.half().float())
    assert torch.equal(got.saliency, descs[1].saliency) and got.cls is None and got.geometry == descs[1].geometry
    with pytest.raises(ParameterError, match="not in the data set"):
        store["missing.jpg"]
    with pytest.raises(ParameterError, match="not a descriptor data set"):
        open_descriptors(tmp_path / "shards")


def test_a_shard_from_the_device_is_read_back(device_extractor, tmp_path):
    """Descriptors on the test device (two batches of different sizes, saliency and CLS) go to the
    shard in one copy per dtype (:func:`vitdense.ops.host.to_host`) and read back the same."""
    paths = [str(REPO / "assets" / "cups" / f"cup_{i}.jpg") for i in (1, 2)]
    descs = device_extractor.extract(paths, load_size=112, saliency=True, include_cls=True)
    descs += device_extractor.extract(paths[:1], load_size=98, saliency=True, include_cls=True)
    written = write_shard(tmp_path, "run-w-00000", descs, [{"path": f"{i}.jpg", "hash": f"h{i}"} for i in range(3)],
                          [], store_dtype="fp16")
    store = open_descriptors(tmp_path)
    for i, d in enumerate(descs):
        back = store[f"h{i}"]
        assert torch.equal(back.descs, d.descs.cpu().half().float()) and torch.equal(back.saliency, d.saliency.cpu())
        assert torch.equal(back.cls, d.cls.cpu()) and written[i]["grid"] == list(d.grid)


def test_reader_does_not_import_ray():
    code = "import sys, vitdense.scale.store; assert 'ray' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "ok", out.stderr

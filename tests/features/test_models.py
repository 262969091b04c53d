"""The model registry, checkpoint formats, offline behaviour and the default model."""
from __future__ import annotations

import time

import pytest
import timm
import torch

from vitdense.errors import ParameterError, WeightsUnavailableError
from vitdense.features import models
from vitdense.features.extractor import Extractor

REQUIRED = ["dino_vits8", "dino_vits16", "dino_vitb8", "dino_vitb16", "dinov2_vits14", "dinov2_vitb14",
            "dinov2_vits14_reg", "dinov2_vitb14_reg", "vit_small_patch16_224", "vit_base_patch16_224",
            "dinov2_vits14_imgfocus"]


def test_registry_entries():
    assert set(REQUIRED) <= set(models.MODELS)
    for name in REQUIRED:
        spec = models.get_spec(name)
        assert spec.patch_size % spec.default_stride == 0
        assert spec.saliency_heads is None or max(spec.saliency_heads) < spec.num_heads
        with torch.device("meta"):  # shapes only: no weight initialisation
            model = timm.create_model(spec.arch, pretrained=False, num_classes=0)
        assert model.patch_embed.patch_size[0] == spec.patch_size
        assert model.embed_dim == spec.embed_dim and len(model.blocks) == spec.depth
        assert model.num_prefix_tokens == spec.num_prefix_tokens
    assert models.get_spec("dinov2_vitb14_reg").num_registers == 4
    assert models.get_spec("dino_vits8").default_facet == "key"
    assert models.get_spec("dinov2_vits14").default_facet == "token"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, empty torch hub cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_offline_failure_is_fast_and_explains(offline):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        models.load_model("dino_vits8")
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("dino_vits8", "hub cache", "dino_deitsmall8_pretrain.pth", "no network",
                 "--model dinov2_vits14_imgfocus", "--checkpoint"):
        assert part in msg
    assert not models.weights_status("dino_vits8").available


def test_default_model_falls_back_with_notice(offline):
    name, notice = models.default_model_name()
    assert name == "dinov2_vits14_imgfocus"
    assert "dino_vits8" in notice and "bundled" in notice
    ex = Extractor("auto", device="cpu")
    assert ex.model_name == "dinov2_vits14_imgfocus" and ex.notice == notice


def _random_state(arch: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=0).state_dict()


def test_official_checkpoint_in_torch_hub_cache_becomes_default(offline):
    state = _random_state("vit_small_patch8_224")
    (offline / "checkpoints").mkdir(parents=True)
    torch.save(state, offline / "checkpoints" / "dino_deitsmall8_pretrain.pth")
    assert models.weights_status("dino_vits8").available
    assert models.default_model_name() == ("dino_vits8", None)
    ex = Extractor("auto", device="cpu")
    assert ex.model_name == "dino_vits8" and ex.notice is None
    torch.testing.assert_close(ex.model.blocks[3].attn.qkv.weight, state["blocks.3.attn.qkv.weight"])


@pytest.mark.parametrize("fmt", ["dino_pth", "teacher_wrapped", "timm_safetensors"])
def test_checkpoint_formats(tmp_path, fmt):
    state = _random_state("vit_small_patch16_224")
    if fmt == "dino_pth":
        path = tmp_path / "dino_deitsmall16_pretrain.pth"
        torch.save(state, path)
    elif fmt == "teacher_wrapped":  # a DINO training checkpoint: teacher backbone + projection head
        path = tmp_path / "checkpoint.pth"
        teacher = {f"backbone.{k}": v for k, v in state.items()}
        teacher["head.mlp.0.weight"] = torch.zeros(8, 384)
        torch.save({"teacher": teacher, "epoch": torch.tensor(100)}, path)
    else:
        from safetensors.torch import save_file
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
    ex = Extractor("dino_vits16", device="cpu", checkpoint=path)
    for key in ("pos_embed", "blocks.11.mlp.fc2.weight", "norm.bias"):
        torch.testing.assert_close(ex.model.state_dict()[key], state[key])


def test_checkpoint_of_wrong_architecture(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(_random_state("vit_small_patch16_224"), path)
    with pytest.raises(ParameterError, match="small.pth does not fit this architecture: .*size mismatch"):
        models.load_model("dino_vitb16", checkpoint=path)


def test_unreadable_checkpoint(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ParameterError, match="cannot read checkpoint broken.pth"):
        models.load_model("dino_vits16", checkpoint=path)
    with pytest.raises(ParameterError, match="checkpoint file not found"):
        models.load_model("dino_vits16", checkpoint=tmp_path / "missing.pth")


def test_registers_never_enter_the_grid(tmp_path, photos):
    """DINOv2 with 4 registers: 5 prefix tokens are dropped from descriptors and saliency."""
    path = tmp_path / "reg.safetensors"
    from safetensors.torch import save_file
    save_file(_random_state("vit_small_patch14_reg4_dinov2"), str(path))
    ex = Extractor("dinov2_vits14_reg", device="cpu", checkpoint=path)
    x, geo = ex.preprocess(photos["coffee"], load_size=112, stride=14)
    out = ex.forward(x[None], [6], "key", stride=14, saliency=True)
    h, w = geo.grid
    assert out.features[6].shape[1] == 5 + h * w
    assert out.cls_attention.shape == (1, h * w)
    [d] = ex.extract(photos["coffee"], layer=6, facet="key", stride=14, load_size=112, include_cls=True)
    torch.testing.assert_close(d.descs, out.features[6][0, 5:])
    torch.testing.assert_close(d.cls, out.features[6][0, 0])

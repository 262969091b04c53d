"""Dense ViT descriptors: facets of any layer, overlapping patches, log-binning, saliency.

One forward pass gives every requested layer's facet and the last block's CLS attention; it stops
after the deepest block it needs, uses fused attention (``F.scaled_dot_product_attention``) and
never builds a T x T attention matrix (saliency needs only the CLS query against the keys).

Shapes: ``B`` images, ``T = h * w`` patch tokens on an ``h x w`` grid, ``D`` channels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vitdense.errors import ImageError, OutOfMemoryError, ParameterError, check_range
from vitdense.features import rope as _rope
from vitdense.features.cache import DescriptorCache
from vitdense.features.descriptors import (  # noqa: F401 (FACETS, DescriptorSettings: re-exported)
    FACETS, DescriptorSettings, Geometry, ImageDescriptors, indexed_device)
from vitdense.features.images import (ImageLike, as_image_list, host_array, load_image, load_pixels, map_threads,
                                      pil_pixels, pixel_size, resized_size)
from vitdense.features.models import ModelSpec, get_spec, load_model, resolve_model_name
from vitdense.stops import stop_point

log = logging.getLogger(__name__)

#: channel layouts of key/query/value descriptors: "head" (vitdense: heads concatenated, channel =
#: head * head_dim + j) or "dim" (the official dino-vit-features code: channel = j * heads + head)
CHANNEL_ORDERS = ("head", "dim")
RESIZE_MODES = ("lanczos", "device")  # the resize to load_size: PIL LANCZOS (threads) or on the device
MAX_TOKENS = 65_536    # refuse grids above this many patches (time grows with its square)
PIPELINE_IMAGES = 64   # images per network pass on CUDA while the next ones are prepared
MAX_LOAD_SIZE = 2048   # largest accepted ``load_size`` (smaller image side after resize, px)


class DeviceFallbackWarning(UserWarning):
    """The GPU ran out of memory even for one image and the extractor moved to the CPU."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a device or host out-of-memory error (torch raises several kinds)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and ("out of memory" in str(err)
                                              or "can't allocate memory" in str(err))


@dataclass
class ForwardOutput:
    """Raw output of one batched forward pass."""

    features: dict[int, torch.Tensor]  # layer -> B x (P + T) x D, P prefix tokens (CLS, registers)
    cls_attention: torch.Tensor | None  # B x T, last block's CLS->patch attention, heads averaged
    grid: tuple[int, int]


def log_bin(x: torch.Tensor, hierarchy: int = 2) -> torch.Tensor:
    """The paper's log-binning: B x D x h x w -> B x (1 + 8 * hierarchy) D x h x w.

    Level ``k`` average-pools the grid with a ``3^k`` window (stride 1, padding not counted) and
    takes the pooled values at offsets ``{-3^k, 0, 3^k}^2`` around each cell (level 0 all nine, later
    levels the eight off-centre ones); neighbours off the grid clamp to the nearest border cell.
    Bins are concatenated level by level, row-major within a level.
    """
    return torch.cat(_log_bin_views(x, hierarchy), dim=1)


def _log_bin_views(x: torch.Tensor, hierarchy: int) -> list[torch.Tensor]:
    """The ``1 + 8 * hierarchy`` bins of :func:`log_bin`, each B x D x h x w (views, not copies)."""
    if hierarchy < 1:
        raise ParameterError(f"hierarchy={hierarchy} must be at least 1")
    _, _, h, w = x.shape
    bins = []
    for level in range(hierarchy):  # a handful of levels: the spatial work is all tensor ops
        win = 3 ** level
        pooled = x if win == 1 else F.avg_pool2d(x, win, stride=1, padding=win // 2,
                                                 count_include_pad=False)
        padded = F.pad(pooled, (win, win, win, win), mode="replicate")  # clamp to the border
        for dy in (-win, 0, win):
            for dx in (-win, 0, win):
                if level > 0 and dy == 0 and dx == 0:
                    continue
                bins.append(padded[:, :, win + dy:win + dy + h, win + dx:win + dx + w])
    return bins


def log_bin_tokens(descs: torch.Tensor, grid: tuple[int, int], hierarchy: int = 2) -> torch.Tensor:
    """:func:`log_bin` of T x D row-major descriptors -> T x (1 + 8 * hierarchy) D.

    Writes the bins straight into the token-major result (one allocation of the binned size).
    """
    return _log_bin_batch(descs[None], grid, hierarchy)[0]


def _log_bin_batch(descs: torch.Tensor, grid: tuple[int, int], hierarchy: int) -> torch.Tensor:
    """:func:`log_bin_tokens` of a batch: B x T x D -> B x T x (1 + 8 * hierarchy) D."""
    B = descs.shape[0]
    h, w = grid
    x = descs.reshape(B, h, w, -1).permute(0, 3, 1, 2)  # a channels-last view, no copy
    views = [v.permute(0, 2, 3, 1) for v in _log_bin_views(x, hierarchy)]  # each B x h x w x D
    return torch.cat(views, dim=-1).reshape(B, h * w, -1)


def min_max(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Min-max normalise along ``dim`` to [0, 1] (a constant row becomes zeros)."""
    lo = x.amin(dim=dim, keepdim=True)
    hi = x.amax(dim=dim, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when present, else CPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ParameterError(f"device={device!r} is not a torch device") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' was asked for but no CUDA GPU is available")
    return indexed_device(dev)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None -> float32; names ``"fp32"``, ``"fp16"``, ``"bf16"`` (half precision on GPUs only)."""
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in names:
            raise ParameterError(f"dtype={dtype!r}: expected one of fp32, fp16, bf16")
        dtype = names[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ParameterError(f"dtype={dtype} is not supported: expected fp32, fp16 or bf16")
    if dtype == torch.float16 and device.type == "cpu":
        raise ParameterError("dtype fp16 needs a GPU; use fp32 (default) or bf16 on the CPU")
    return dtype


def image_digest(image: Image.Image | np.ndarray | torch.Tensor) -> str:
    """Content hash of an RGB image (pixels and size), 32 hex digits: a PIL image and its
    H x W x 3 uint8 pixels hash the same.

    SHA-256, not BLAKE2: CPUs with SHA instructions (x86 SHA-NI, ARMv8) hash 2-3x faster with it
    through OpenSSL, which halves the digest's cost per 224 px image (docs/GPU.md).
    """
    h = hashlib.sha256(f"{pixel_size(image)}".encode())
    h.update(image.tobytes() if isinstance(image, Image.Image) else np.ascontiguousarray(host_array(image)).data)
    return h.hexdigest()[:32]


class Extractor:
    """Dense descriptors from a ViT.

    >>> ex = Extractor("dinov2_vits14_imgfocus")
    >>> [d] = ex.extract("cat.jpg", layer=11, facet="key", stride=7, saliency=True)
    >>> d.descs.shape, d.grid          # (h * w) x 384, (h, w)

    Out of memory: a batch is halved and retried (that size is kept for the rest of the call); when one
    image still does not fit on the GPU, ``cpu_fallback=True`` moves the model to the CPU (fp32)
    with a notice (``self.notice``, a :class:`DeviceFallbackWarning` and the log), otherwise a
    one-line :class:`~vitdense.errors.OutOfMemoryError` says what to reduce.
    """

    def __init__(self, model: str | None = "auto", device: str | torch.device | None = "auto",
                 dtype: str | torch.dtype | None = None, checkpoint: str | os.PathLike | None = None,
                 cache: DescriptorCache | None = None, pretrained: bool = True,
                 cpu_fallback: bool = False) -> None:
        name, self.notice = resolve_model_name(model)
        self.spec: ModelSpec = get_spec(name)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.pretrained = pretrained
        self.model: nn.Module = load_model(name, checkpoint, pretrained).to(self.device, self.dtype)
        self.cache = cache
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._rope_cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self._constants: dict[tuple[str, str], torch.Tensor] = {}   # (name, device) -> see _constant
        if _rope.has_rope(self.model):  # DINOv3: rotary coordinates of the strided grid
            _rope.check_supported(self.model)
        self.num_forward_calls = 0  # how many network passes ran (the cache's tests read it)
        # on CUDA, images per network pass while the next ones are prepared on the host (one
        # 256-image pass would leave the device idle while all 256 are read; batch 64 runs within
        # ~5% of batch 256's speed on an H200, README "GPU"); elsewhere the batch as asked
        self.pipeline_images: int | None = PIPELINE_IMAGES if self.device.type == "cuda" else None
        self.cpu_fallback = cpu_fallback

    @property
    def model_name(self) -> str:
        return self.spec.name

    def resolve_stride(self, stride: int | None) -> int:
        """``None`` -> the model's default stride (half the patch: the paper's 4 for patch 8)."""
        return DescriptorSettings(stride=stride).resolve(self.spec).stride

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self, load_size: int | None, hierarchy: int, batch_size: int) -> None:
        """The extraction's own limits (the descriptor settings are checked by
        :meth:`DescriptorSettings.check`)."""
        if load_size is not None:
            check_range("load_size", load_size, self.spec.patch_size, MAX_LOAD_SIZE)
        check_range("hierarchy", hierarchy, 1, 6)
        check_range("batch_size", batch_size, 1)

    # -- preprocessing ------------------------------------------------------------------------
    def preprocess(self, image: ImageLike, load_size: int | None = 224,
                   stride: int | None = None) -> tuple[torch.Tensor, Geometry]:
        """One image -> normalised ``3 x H x W`` tensor (CPU) cropped to the grid, and its geometry.

        The smaller side is resized to ``load_size`` (LANCZOS; None keeps the size), then the image
        is cropped to ``patch + (h - 1) * stride`` pixels per side so that the grid is exact.
        """
        stride = self.resolve_stride(stride)
        return self._preprocess_rgb(load_image(image), load_size, stride)

    def _preprocess_rgb(self, img: Image.Image, load_size: int | None,
                        stride: int) -> tuple[torch.Tensor, Geometry]:
        pixels, geometry = self._prepare(img, load_size, stride)
        return self._normalise(torch.from_numpy(np.array(pixels))[None], "cpu", torch.float32)[0], geometry

    def _prepare(self, img: Image.Image, load_size: int | None, stride: int,
                 resize: str = "lanczos") -> tuple[np.ndarray, Geometry]:
        """One RGB image -> its ``H x W x 3`` uint8 pixels resized (LANCZOS) and cropped to the grid,
        and its geometry (no float work: that happens batched, on the device, in :meth:`forward`).
        ``resize="device"``: the pixels as they are (resized and cropped later, see :meth:`_resize_pixels`)."""
        geometry = self._geometry(img.size, load_size, stride)
        return self._pixels(img, geometry, resize), geometry

    def _geometry(self, size: tuple[int, int], load_size: int | None, stride: int) -> Geometry:
        """The grid of an image of ``size`` (W, H): size arithmetic only, every limit checked."""
        W0, H0 = size
        patch = self.spec.patch_size
        if load_size is not None:
            W1, H1 = resized_size((W0, H0), load_size)
            if H1 * W1 > MAX_TOKENS * stride * stride:
                raise ImageError(f"image of {W0} x {H0} resized to {W1} x {H1} would make more than "
                                 f"{MAX_TOKENS} patches: aspect ratio too extreme")
        else:
            W1, H1 = W0, H0
        if H1 < patch or W1 < patch:
            raise ImageError(f"image of {W1} x {H1} pixels is smaller than one {patch} x {patch} patch")
        h, w = 1 + (H1 - patch) // stride, 1 + (W1 - patch) // stride
        if h * w > MAX_TOKENS:
            raise ImageError(f"{h} x {w} patches is above the limit of {MAX_TOKENS}: "
                             "use a smaller load_size or a larger stride")
        return Geometry((H0, W0), (H1, W1), (h, w), patch, stride)

    @staticmethod
    def _pixel_shape(g: Geometry, resize: str) -> tuple[int, int, int]:
        """The shape of :meth:`_pixels` for geometry ``g`` (known before any pixel is touched)."""
        if resize != "lanczos" and tuple(g.orig_size) != tuple(g.resized_size):
            return (*g.orig_size, 3)
        return g.patch + (g.grid[0] - 1) * g.stride, g.patch + (g.grid[1] - 1) * g.stride, 3

    def _pixels(self, img: Image.Image | np.ndarray | torch.Tensor, g: Geometry,
                resize: str = "lanczos") -> np.ndarray | torch.Tensor:
        """The uint8 pixels of ``img`` (PIL, or H x W x 3 pixels from :meth:`load_pixels`) for geometry
        ``g`` (LANCZOS-resized and cropped to the grid; with ``resize="device"`` and another size,
        as they are). Pixels of the right size are only cropped (a view: no PIL, no copy). A PIL
        image gives H x W x 4 (:func:`~vitdense.features.images.pil_pixels`: its memory as it is)."""
        H1, W1 = g.resized_size
        if self._lanczos_needed(img, g, resize):
            if not isinstance(img, Image.Image):
                img = Image.fromarray(host_array(img))
            img = img.resize((W1, H1), Image.Resampling.LANCZOS)
        arr = pil_pixels(img) if isinstance(img, Image.Image) else img
        if pixel_size(img) == (W1, H1):
            arr = arr[: g.patch + (g.grid[0] - 1) * g.stride, : g.patch + (g.grid[1] - 1) * g.stride]
        return arr

    @staticmethod
    def _lanczos_needed(img: Image.Image | np.ndarray | torch.Tensor, g: Geometry, resize: str) -> bool:
        """Whether :meth:`_pixels` resizes ``img`` with PIL's LANCZOS (host work worth a thread)."""
        return resize == "lanczos" and pixel_size(img) != tuple(g.resized_size[::-1])

    def _resize_pixels(self, pixels: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """``resize="device"``: B x H0 x W0 x 3 uint8 -> B x H x W x 3 uint8 on the device, resized to
        ``geometry.resized_size`` (antialiased bicubic, one op for the batch), rounded, cropped to the grid."""
        (H1, W1), (h, w), p, s = geometry.resized_size, geometry.grid, geometry.patch, geometry.stride
        x = pixels.to(self.device, non_blocking=True)[..., :3].permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(H1, W1), mode="bicubic", antialias=True, align_corners=False)
        x = x[:, :, : p + (h - 1) * s, : p + (w - 1) * s].round_().clamp_(0, 255)
        return x.to(torch.uint8).permute(0, 2, 3, 1)

    def _normalise(self, pixels: torch.Tensor, device: torch.device | str,
                   dtype: torch.dtype) -> torch.Tensor:
        """B x H x W x C uint8 pixels (C = 3, or 4 with an unused 4th byte) -> B x 3 x H x W
        ``(x - mean) / std`` in ``dtype`` on ``device``.

        One copy of the uint8 batch (non-blocking from pinned memory), then one batched op on the
        device; the arithmetic is float32 as on the PIL path (bit-equal on the CPU).
        """
        x = pixels.to(device, non_blocking=True)[..., :3].permute(0, 3, 1, 2).float()
        mean, std = (self._constant(name, x.device) for name in ("mean", "std"))
        return ((x - mean) / std).to(dtype)

    def _constant(self, name: str, device: torch.device) -> torch.Tensor:
        """A small tensor of the model's numbers on ``device``, made once per device (made from
        Python numbers on CUDA each time, it would be a blocking copy: a host sync per batch).
        ``mean`` / ``std``: 1 x 3 x 1 x 1 in pixel units; ``heads``: the saliency heads' indices."""
        key = (name, str(device))
        if key not in self._constants:
            if name == "heads":
                t = torch.tensor(self.spec.saliency_heads, dtype=torch.long)
            else:
                t = torch.tensor(getattr(self.spec, name), dtype=torch.float32).view(1, 3, 1, 1) * 255.0
            self._constants[key] = t.to(device)
        return self._constants[key]

    # -- the network --------------------------------------------------------------------------
    def _patch_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """1 x (h * w) x D patch position embedding, resized with plain bicubic (no antialias)."""
        if (h, w) not in self._pos_cache:
            m = self.model
            pos = m.pos_embed[:, 0 if m.no_embed_class else m.num_prefix_tokens:]
            g0, g1 = m.patch_embed.grid_size
            if (g0, g1) != (h, w):
                grid = pos.reshape(1, g0, g1, -1).permute(0, 3, 1, 2).float()
                grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
                pos = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(m.pos_embed.dtype)
            self._pos_cache[(h, w)] = pos
        return self._pos_cache[(h, w)]

    def _embed(self, images: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """B x 3 x H x W -> tokens B x (P + T) x D (prefix first), and the grid."""
        m = self.model
        proj = m.patch_embed.proj
        x = F.conv2d(images, proj.weight, proj.bias, stride=stride)  # overlapping when stride < patch
        h, w = x.shape[-2:]
        x = m.patch_embed.norm(x.flatten(2).transpose(1, 2))
        if m.pos_embed is not None:  # absolute position embedding (DINOv3 has RoPE instead)
            x = x + self._patch_pos_embed(h, w)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (m.cls_token, m.reg_token) if t is not None]
        prefix = torch.cat(prefix, dim=1)
        if not m.no_embed_class and m.pos_embed is not None:
            prefix = prefix + m.pos_embed[:, :m.num_prefix_tokens]
        return m.norm_pre(torch.cat([prefix, x], dim=1)), (h, w)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, layers: Sequence[int], facet: str = "key",
                stride: int | None = None, saliency: bool = False) -> ForwardOutput:
        """One pass over a batch, stopping after the deepest block it needs.

        images: B x 3 x H x W normalised floats, or B x H x W x 3 (or 4) uint8 pixels (normalised here, on
        the device: what :meth:`extract` sends).
        """
        stride = self.resolve_stride(stride)
        DescriptorSettings(tuple(layers), facet, stride).check(self.spec)
        m, spec = self.model, self.spec
        if images.dtype == torch.uint8:
            images = self._normalise(images, self.device, self.dtype)
        x, grid = self._embed(images.to(self.device, self.dtype), stride)
        rope = self._rope_table(grid, stride)
        last = max([*layers, spec.depth - 1] if saliency else layers)
        features: dict[int, torch.Tensor] = {}
        cls_attention = None
        self.num_forward_calls += 1
        for i, blk in enumerate(m.blocks[:last + 1]):
            stop_point()
            want_qkv = (i in layers and facet != "token") or (saliency and i == spec.depth - 1)
            if not want_qkv:
                x = blk(x) if rope is None else blk(x, rope=rope)
            else:
                attn = blk.attn
                B, N, C = x.shape
                if rope is None:
                    qkv = attn.qkv(blk.norm1(x)).reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
                    q, k, v = qkv.unbind(0)                               # each B x H x N x d
                    q, k = attn.q_norm(q), attn.k_norm(k)
                    q_rot, k_rot = q, k
                else:  # facets before the rotation; attention and saliency use the rotated ones
                    q, k, v, q_rot, k_rot = _rope.qkv(blk, x, rope)
                if i in layers and facet != "token":
                    chosen = {"query": q, "key": k, "value": v}[facet]
                    features[i] = chosen.transpose(1, 2).reshape(B, N, C)  # heads concatenated
                if saliency and i == spec.depth - 1:
                    cls_attention = self._cls_attention(q_rot, k_rot)
                if i == last and not (facet == "token" and i in layers):
                    break  # nothing after this block's q, k, v is needed
                if rope is not None:
                    x = _rope.finish_block(blk, x, q_rot, k_rot, v)
                    if i in layers and facet == "token":
                        features[i] = x
                    continue
                out = F.scaled_dot_product_attention(q, k, v)
                out = attn.proj(attn.norm(out.transpose(1, 2).reshape(B, N, C)))
                x = x + blk.ls1(out)
                x = x + blk.ls2(blk.mlp(blk.norm2(x)))
            if i in layers and facet == "token":
                features[i] = x
        return ForwardOutput(features, cls_attention, grid)

    def _rope_table(self, grid: tuple[int, int], stride: int) -> torch.Tensor | None:
        """T x 2d rotary table of the strided grid's true patch centres (None without RoPE)."""
        if not _rope.has_rope(self.model):
            return None
        key = (*grid, stride)
        if key not in self._rope_cache:
            self._rope_cache[key] = _rope.rope_embed(self.model, grid, stride, self.spec.patch_size)
        return self._rope_cache[key]

    def _cls_attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """CLS query against all keys (B x H x N, never N x N) -> B x T, selected heads averaged.

        A product and a sum over the head dimension rather than a batched matmul: the result of an
        image then does not depend on the other images of its batch (bit for bit on the CPU).
        """
        scale = q.shape[-1] ** -0.5
        logits = (q[:, :, :1].float() * scale * k.float()).sum(dim=-1)    # B x H x N
        attn = torch.softmax(logits, dim=-1)
        if self.spec.saliency_heads:
            attn = attn.index_select(1, self._constant("heads", attn.device))
        return attn[:, :, self.spec.num_prefix_tokens:].mean(dim=1)

    # -- the public entry point ---------------------------------------------------------------
    def extract(self, images: ImageLike | Sequence[ImageLike], layer: int | Sequence[int] = 11,
                facet: str | None = None, stride: int | None = None, load_size: int | None = 224,
                bin: bool = False, hierarchy: int = 2, include_cls: bool = False,
                saliency: bool = False, batch_size: int = 8, upsample: str | None = None,
                upsample_size: int | None = None, channel_order: str = "head",
                resize: str = "lanczos") -> list[ImageDescriptors]:
        """Descriptors of every image (see :class:`ImageDescriptors`), in input order.

        ``facet=None`` and ``stride=None`` take the model's defaults (``spec.default_facet``: the
        paper's ``key``, ``token`` for DINOv2; ``spec.default_stride``: half the patch).
        ``layer``: one block index or several (their facets are concatenated along D in the given
        order). Images whose preprocessed sizes are equal share a batch of ``batch_size``.
        ``upsample`` ``"jbu"`` / ``"bilinear"`` returns one descriptor per pixel of the image resized
        to smaller side ``upsample_size`` (None: ``load_size``), see :mod:`vitdense.features.upsample`; the
        cache holds the grid descriptors, so changing the upsampling never re-runs the network.
        ``channel_order`` (key/query/value only): ``"head"`` concatenates the heads (channel
        ``head * head_dim + j``); ``"dim"`` is the official code's flattening of ``d x heads``
        (channel ``j * heads + head``), for descriptor files interchangeable with it. Cosine
        similarities, and so every application, are the same either way. ``resize``: ``"lanczos"``
        (PIL, in worker threads; the reference) or ``"device"`` (antialiased bicubic on the
        extractor's device, batched per image size: measured against LANCZOS in the README "GPU").
        """
        settings = DescriptorSettings(layer if isinstance(layer, (int, np.integer)) else tuple(layer), facet,
                                      stride, load_size, bool(bin), hierarchy).resolve(self.spec)
        settings.check(self.spec)
        layers, facet, stride = settings.layers, settings.facet, settings.stride
        self._check_params(load_size, hierarchy, batch_size)
        if channel_order not in CHANNEL_ORDERS:
            raise ParameterError(f"channel_order={channel_order!r}: expected 'head' or 'dim'")
        if resize not in RESIZE_MODES:
            raise ParameterError(f"resize={resize!r} is unknown: expected one of {', '.join(RESIZE_MODES)}")
        if upsample is not None and upsample not in ("bilinear", "jbu"):
            raise ParameterError(f"upsample={upsample!r} is unknown: expected 'jbu', 'bilinear' or None")
        images = as_image_list(images)
        params = dict(model=self.spec.name, checkpoint=self.checkpoint, pretrained=self.pretrained,
                      layer=layers, facet=facet,
                      stride=stride, load_size=load_size, bin=bin, hierarchy=hierarchy,
                      include_cls=include_cls, saliency=saliency, dtype=str(self.dtype))
        if channel_order != "head" and facet != "token":  # default stays out: cache keys unchanged
            params["channel_order"] = channel_order
        if resize != "lanczos":
            params["resize"] = resize
        rgbs = self.load_pixels(images, load_size, resize)
        results: list[ImageDescriptors | None] = [None] * len(rgbs)
        keys = [None] * len(rgbs)
        if self.cache is not None:  # the digest only when there is a cache (hashed in worker threads)
            for i, digest in enumerate(map_threads(image_digest, rgbs)):
                keys[i] = self.cache.key(digest, params)
                results[i] = self.cache.get(keys[i])
        todo = [i for i, r in enumerate(results) if r is None]
        geoms = {i: self._geometry(pixel_size(rgbs[i]), load_size, stride) for i in todo}   # every limit, up front
        shapes = [(self._pixel_shape(geoms[i], resize), geoms[i].resized_size) for i in todo]
        step = min(batch_size, self.pipeline_images or batch_size)
        chunks = [b[s:s + step] for b in _batches(todo, shapes, batch_size) for s in range(0, len(b), step)]

        def pixels_of(chunk: list[int]) -> torch.Tensor:
            def one(i: int) -> np.ndarray | torch.Tensor:
                return self._pixels(rgbs[i], geoms[i], resize)
            # a LANCZOS resize is worth a worker thread; a view (crop of memory) is not
            resizing = any(self._lanczos_needed(rgbs[i], geoms[i], resize) for i in chunk)
            return self._stack_pixels(map_threads(one, chunk) if resizing else [one(i) for i in chunk])

        # the next chunk's pixels are read, resized and stacked while the device runs this one
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitdense-prefetch") as prefetch:
            ahead = prefetch.submit(pixels_of, chunks[0]) if chunks else None
            for j, batch in enumerate(chunks):
                pixels = ahead.result()
                if j + 1 < len(chunks):
                    ahead = prefetch.submit(pixels_of, chunks[j + 1])
                geometry = geoms[batch[0]]
                if resize == "device" and tuple(geometry.orig_size) != tuple(geometry.resized_size):
                    pixels = self._resize_pixels(pixels, geometry)
                for start, out in self._forward_chunks(pixels, layers, facet, stride, saliency):
                    done = self._finish_batch(out, [geoms[i] for i in batch[start:]], layers, bin,
                                              hierarchy, include_cls, params)
                    for i, r in zip(batch[start:], done):
                        if self.cache is not None:  # its own storage, not a view of the batch
                            r = dataclasses.replace(r, descs=r.descs.clone())
                            self.cache.put(keys[i], r)
                        results[i] = r
        if any(r.descs.device != self.device for r in results):  # a fallback to the CPU happened
            results = [r.to(self.device) for r in results]
        if upsample is not None:
            from vitdense.features.upsample import upsample_image_descriptors
            results = [upsample_image_descriptors(r, rgb, upsample, upsample_size)
                       for r, rgb in zip(results, rgbs)]
        return results  # type: ignore[return-value]

    def load_pixels(self, images: ImageLike | Sequence[ImageLike], load_size: int | None = 224,
                    resize: str = "lanczos", errors: str = "raise") -> list:
        """Images -> per image a PIL image or H x W x 3 uint8 pixels (:func:`~vitdense.features.images.load_pixels`:
        arrays and tensors as views, RGB JPEGs decoded by torchvision, on this device when no
        LANCZOS resize follows), what :meth:`extract` reads."""
        return load_pixels(as_image_list(images), self.device, load_size if resize == "lanczos" else None,
                           errors=errors)

    def _stack_pixels(self, arrays: list[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """H x W x C uint8 pixels of one size -> B x H x W x C uint8, pinned when bound for CUDA;
        pixels already on a device (decoded there, or given there) are stacked on this device.
        C is 4 when every image is PIL's H x W x 4 memory (copied whole: a memcpy), else 3."""
        if any(a.shape[2] != arrays[0].shape[2] for a in arrays):
            arrays = [a[..., :3] for a in arrays]
        if any(isinstance(a, torch.Tensor) for a in arrays):
            return torch.stack([(a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a))).to(self.device)
                                for a in arrays])
        pinned = self.device.type == "cuda" and torch.cuda.is_available()
        out = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.uint8, pin_memory=pinned)
        buffer = out.numpy()
        # one copy per image straight into the (pinned) buffer, a slice of the batch per worker
        # thread (numpy copies release the GIL)
        slices = np.array_split(np.arange(len(arrays)), max(1, min(8, len(arrays) // 16)))
        map_threads(lambda idx: [np.copyto(buffer[i], arrays[i]) for i in idx], slices, min_items=2)
        return out

    def _forward_chunks(self, tensors: torch.Tensor, layers: list[int], facet: str, stride: int,
                        saliency: bool) -> Iterable[tuple[int, ForwardOutput]]:
        """Forward passes over a batch (see :meth:`forward`) -> ``(first index, output)`` per chunk.

        Out of memory halves the chunk (down to one image; kept for the rest of this call), then falls back to the CPU when
        allowed, else raises :class:`OutOfMemoryError`.
        """
        B = tensors.shape[0]
        H, W = tensors.shape[1:3] if tensors.dtype == torch.uint8 else tensors.shape[2:]
        start, limit = 0, B
        while start < B:
            size = min(B - start, limit)
            try:
                out = self.forward(tensors[start:start + size], layers, facet, stride, saliency)
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
                if not is_out_of_memory(err):
                    raise
                self._release_memory()
                if size > 1:
                    limit = size // 2
                    log.info("out of memory on %s for %d images: retrying %d at a time",
                             self.device, size, limit)
                    continue
                if self.cpu_fallback and self.device.type != "cpu":
                    self._fall_back_to_cpu(W, H)
                    continue
                raise OutOfMemoryError(f"out of memory on {self.device} even for one image of {W} x {H} "
                                       "pixels: reduce load_size or use a larger stride") from err
            yield start, out
            start += size

    def _release_memory(self) -> None:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _fall_back_to_cpu(self, W: int, H: int) -> None:
        """Move the model to the CPU (fp32 unless bf16) and say so once."""
        was = self.device
        self.dtype = torch.bfloat16 if self.dtype == torch.bfloat16 else torch.float32
        self.model = self.model.to("cpu", self.dtype)
        self.device = torch.device("cpu")
        self._pos_cache.clear()
        self._rope_cache.clear()
        if was.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.notice = (f"the GPU ({was}) ran out of memory even for one image of {W} x {H} pixels: "
                       "continuing on the CPU (slower); a smaller load size or a larger stride "
                       "would fit on the GPU")
        log.warning(self.notice)
        warnings.warn(self.notice, DeviceFallbackWarning, stacklevel=3)

    def _finish_batch(self, out: ForwardOutput, geometries: list[Geometry], layers: list[int], bin: bool,
                      hierarchy: int, include_cls: bool, params: dict) -> list[ImageDescriptors]:
        """A batch's output -> one ImageDescriptors per image (float32, on the device).

        Every step is one op over the batch (B x T x D); the images' tensors are views of it (no
        per-image kernels or host syncs).
        """
        P = self.spec.num_prefix_tokens
        h, w = out.grid
        per_layer = [out.features[layer].float() for layer in layers]    # B x (P + T) x D each
        B, N = per_layer[0].shape[:2]
        if params.get("channel_order") == "dim":  # heads x d -> d x heads, the official flattening
            heads = self.spec.num_heads
            per_layer = [f.reshape(B, N, heads, -1).transpose(2, 3).reshape(B, N, -1) for f in per_layer]
        descs = torch.cat([f[:, P:] for f in per_layer], dim=-1)            # B x T x D
        if bin:
            descs = _log_bin_batch(descs, (h, w), hierarchy)
        descs = descs.contiguous()
        cls = torch.cat([f[:, 0] for f in per_layer], dim=-1) if include_cls else None
        sal = None
        if out.cls_attention is not None:
            sal = min_max(out.cls_attention.float()).reshape(B, h, w)
        return [ImageDescriptors(descs[b], geometries[b], None if sal is None else sal[b],
                                 None if cls is None else cls[b], dict(params)) for b in range(B)]


def _batches(indices: list[int], shapes: list[tuple], batch_size: int) -> Iterable[list[int]]:
    """Group image indices by equal preprocessed shape, in chunks of ``batch_size``."""
    groups: dict[tuple, list[int]] = {}
    for i, shape in zip(indices, shapes):
        groups.setdefault(shape, []).append(i)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


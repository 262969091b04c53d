"""Rotary position encoding (DINOv3, timm's ``Eva``) on overlapping patch grids.

DINOv3 has no absolute position embedding: every block rotates the patch tokens' queries and keys
by angles proportional to the patch centre's coordinates, normalised to [-1, 1] over the image
(timm ``RotaryEmbeddingDinoV3``: 0.5-centred cell positions divided by the grid size). With a
stride ``s`` smaller than the patch ``p`` the grid has ``1 + (H - p) // s`` cells per side; the
coordinates here are those of the TRUE patch centres of that grid, ``(i * s + p / 2) / L`` with
``L = p + (n - 1) * s`` the covered extent in pixels, so a stride-``s`` cell that coincides with
a stride-``p`` cell gets exactly the stride-``p`` coordinates. Re-spacing a fresh [-1, 1] grid over
the ``n`` strided cells (what timm's own ``get_embed(shape=(h, w))`` would do) shifts them.

Shapes: ``B`` images, ``N = P + T`` tokens (``P`` prefix: CLS and registers, never rotated),
``H`` heads of ``d`` channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitdense.errors import ParameterError


def has_rope(model: nn.Module) -> bool:
    """Whether ``model`` is a timm Eva with rotary position encoding (DINOv3)."""
    return getattr(model, "rope", None) is not None


def check_supported(model: nn.Module) -> None:
    """Raise :class:`ParameterError` for RoPE variants this module does not reproduce."""
    rope = model.rope
    if type(rope).__name__ != "RotaryEmbeddingDinoV3" or getattr(rope, "grid_indexing", "ij") != "ij":
        raise ParameterError(f"{type(model).__name__} with {type(rope).__name__}: only DINOv3's RoPE "
                             "('ij' grid) is supported for dense descriptors")
    if getattr(model, "rope_mixed", False) or any(b.attn.gate is not None for b in model.blocks):
        raise ParameterError("mixed RoPE and gated attention are not supported for dense descriptors")


def patch_centre_coords(grid: tuple[int, int], stride: int, patch: int,
                        normalize: str = "separate", offset: float = 0.0) -> torch.Tensor:
    """T x 2 rotary coordinates ``(y, x)`` in [-1, 1] of the true patch centres of a strided grid.

    In patch units cell ``i`` is centred at ``i * stride / patch + 0.5`` of an extent of
    ``1 + (n - 1) * stride / patch``; with ``stride == patch`` this is timm's ``(i + 0.5) / n``,
    bit for bit. ``normalize``: ``"separate"`` (each axis by its own extent), ``"min"``, ``"max"``.
    """
    r = stride / patch
    extents = [1.0 + (n - 1) * r for n in grid]
    if normalize == "min":
        extents = [min(extents)] * 2
    elif normalize == "max":
        extents = [max(extents)] * 2
    elif normalize != "separate":
        raise ParameterError(f"normalize={normalize!r}: expected separate, min or max")
    axes = [(torch.arange(n, dtype=torch.float32) * r + 0.5 + offset) / e
            for n, e in zip(grid, extents)]
    coords = torch.stack(torch.meshgrid(axes, indexing="ij"), dim=-1)  # h x w x 2
    return (2.0 * coords - 1.0).reshape(-1, 2)


def respaced_coords(grid: tuple[int, int]) -> torch.Tensor:
    """T x 2 coordinates of a fresh [-1, 1] grid over the cells (the naive choice; tests compare)."""
    return patch_centre_coords(grid, 1, 1)


def rope_embed(model: nn.Module, grid: tuple[int, int], stride: int, patch: int,
               coords: torch.Tensor | None = None) -> torch.Tensor:
    """T x 2d ``[sin, cos]`` rotary table of the grid (float32, on the model's device)."""
    rope = model.rope
    if coords is None:
        coords = patch_centre_coords(grid, stride, patch, rope.normalize_coords, rope.grid_offset)
    sin, cos = rope._get_pos_embed_from_coords(coords)
    return torch.cat([sin, cos], dim=-1)


def qkv(blk: nn.Module, x: torch.Tensor, rope: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An Eva block's attention inputs from tokens ``x`` (B x N x C).

    Returns ``(q, k, v, q_rot, k_rot)``, each B x H x N x d: ``q``/``k`` before the rotation (the
    descriptors: content, not position) and ``q_rot``/``k_rot`` rotated (what attention uses).
    """
    from timm.layers import apply_rot_embed_cat

    attn = blk.attn
    B, N, _ = x.shape
    y = blk.norm1(x)
    if attn.qkv is not None:
        bias = None if attn.q_bias is None else torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
        q, k, v = F.linear(y, attn.qkv.weight, bias).reshape(B, N, 3, attn.num_heads, -1) \
            .permute(2, 0, 3, 1, 4).unbind(0)
    else:
        q, k, v = (p(y).reshape(B, N, attn.num_heads, -1).transpose(1, 2)
                   for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    q, k = attn.q_norm(q), attn.k_norm(k)
    P, half = attn.num_prefix_tokens, attn.rotate_half

    def rotate(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[:, :, :P], apply_rot_embed_cat(t[:, :, P:], rope, half=half)], dim=2).type_as(v)

    return q, k, v, rotate(q), rotate(k)


def finish_block(blk: nn.Module, x: torch.Tensor, q_rot: torch.Tensor, k_rot: torch.Tensor,
                 v: torch.Tensor) -> torch.Tensor:
    """The rest of an Eva block after :func:`qkv`: attention, layer scale, MLP -> B x N x C."""
    attn = blk.attn
    B, N, _ = x.shape
    out = F.scaled_dot_product_attention(q_rot, k_rot, v).transpose(1, 2).reshape(B, N, -1)
    out = attn.proj(attn.norm(out))
    x = x + (out if blk.gamma_1 is None else blk.gamma_1 * out)
    mlp = blk.mlp(blk.norm2(x))
    return x + (mlp if blk.gamma_2 is None else blk.gamma_2 * mlp)

"""Refinement on the device: a mean-field dense CRF in torch, batched over images.

Co-segmentation refines its coarse masks with GrabCut and part co-segmentation smooths its part
maps with ``pydensecrf``'s dense CRF, both CPU libraries. On a GPU they dominated the wall time
(issue 19), so ``refine="auto"`` picks per device: the CPU libraries on the CPU (today's quality and
speed), this module on CUDA. ``refine="torch"`` runs it on the CPU too (tests, quality benches).

The CRF is Kraehenbuehl & Koltun's (2011) with ``pydensecrf``'s defaults of
:data:`vitdense.ops.crf.CRF_DEFAULTS`: a Gaussian (smoothness) kernel plus a bilateral (appearance)
kernel, Potts compatibilities, symmetric normalisation, mean-field iterations. Instead of the
permutohedral lattice it filters exactly, with the kernels truncated at :data:`WINDOW_SIGMAS`
standard deviations, on a lattice ``lattice`` times coarser than the pixels (average-pooled colours
and energies); the last iteration's message is upsampled (bilinear) and added to the full-resolution
energies, so labels keep pixel resolution. Images of different sizes share one padded batch
(padding carries no weight). Every step is a tensor op over the whole batch: an unfold of the
``(2R + 1)^2`` window and one weighted sum per iteration; no Python loop over pixels or images.

Shapes: ``B`` images, ``C`` labels, ``H x W`` pixels, ``N = h x w`` lattice nodes, ``O`` window offsets.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vitdense.ops.crf import CRF_DEFAULTS
from vitdense.errors import ParameterError

REFINERS = ("auto", "cpu", "torch")
WINDOW_SIGMAS = 2.0        # kernel truncation: the window reaches 2 sigma of the widest kernel
DEFAULT_LATTICE = 2        # pixels per lattice node along each axis
MASK_CONFIDENCE = 0.7      # co-segmentation: probability a coarse mask gives its own label
_CHUNK_ELEMENTS = 1 << 27  # images per chunk: B * C * O * N floats of the unfolded marginals (512 MB)


def resolve_refiner(refine: str, device: torch.device | str | None) -> str:
    """``"auto"`` -> ``"torch"`` on CUDA, ``"cpu"`` (GrabCut / pydensecrf) elsewhere."""
    if refine not in REFINERS:
        raise ParameterError(f"refiner={refine!r} is unknown: expected one of {', '.join(REFINERS)}")
    if refine != "auto":
        return refine
    return "torch" if torch.device(device or "cpu").type == "cuda" else "cpu"


def pad_batch(maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """C x H_i x W_i maps -> (B x C x H x W zero-padded batch, B x 1 x H x W validity)."""
    H = max(m.shape[-2] for m in maps)
    W = max(m.shape[-1] for m in maps)
    out = maps[0].new_zeros((len(maps), maps[0].shape[0], H, W))
    valid = torch.zeros((len(maps), 1, H, W), dtype=torch.bool, device=out.device)
    for i, m in enumerate(maps):  # one copy per image, no host sync
        out[i, :, :m.shape[-2], :m.shape[-1]] = m
        valid[i, :, :m.shape[-2], :m.shape[-1]] = True
    return out, valid


def _pool(x: torch.Tensor, valid: torch.Tensor, s: int) -> torch.Tensor:
    """Average of the valid pixels in each ``s x s`` block: B x C x H x W -> B x C x ceil(H/s) x ceil(W/s)."""
    if s == 1:
        return x
    v = valid.to(x.dtype)
    num = F.avg_pool2d(x * v, s, ceil_mode=True)
    return num / F.avg_pool2d(v, s, ceil_mode=True).clamp_min(1e-6)


def _window(x: torch.Tensor, radius: int) -> torch.Tensor:
    """B x C x h x w -> B x C x O x N, every node's ``(2R + 1)^2`` neighbours (zeros off the map)."""
    B, C, h, w = x.shape
    k = 2 * radius + 1
    return F.unfold(x, k, padding=radius).view(B, C, k * k, h * w)


def crf_weights(image: torch.Tensor, valid: torch.Tensor, radius: int, lattice: int, *,
                gaussian_sxy: float, gaussian_compat: float, bilateral_sxy: float,
                bilateral_srgb: float, bilateral_compat: float) -> torch.Tensor:
    """Pairwise weights B x O x N of the lattice: both kernels, normalised and compatibility-weighted.

    image: B x 3 x h x w colours (0-255) of the lattice nodes, valid: B x 1 x h x w. Kernel ``m``
    between nodes i and j is ``k_m(i, j) / sqrt(d_m(i) d_m(j))`` with ``d_m(i) = sum_j k_m(i, j)``
    (symmetric normalisation; the node itself included, as in ``pydensecrf``).
    """
    B, _, h, w = image.shape
    k = 2 * radius + 1
    dy, dx = torch.meshgrid(torch.arange(-radius, radius + 1, device=image.device),
                            torch.arange(-radius, radius + 1, device=image.device), indexing="ij")
    dist2 = ((dy ** 2 + dx ** 2).reshape(1, k * k, 1) * float(lattice) ** 2).to(image.dtype)  # pixels^2
    vn = _window(valid.to(image.dtype), radius)[:, 0]                                     # B x O x N
    colour2 = (_window(image, radius) - image.reshape(B, 3, 1, h * w)).square().sum(1)    # B x O x N
    total = torch.zeros_like(colour2)
    for sxy, srgb, compat in ((gaussian_sxy, None, gaussian_compat),
                              (bilateral_sxy, bilateral_srgb, bilateral_compat)):
        logk = -dist2 / (2 * sxy ** 2)
        if srgb is not None:
            logk = logk - colour2 / (2 * srgb ** 2)
        kern = torch.exp(logk) * vn                                                      # B x O x N
        norm = kern.sum(1, keepdim=True).clamp_min(1e-20).rsqrt()                        # B x 1 x N
        norm_j = _window(norm.reshape(B, 1, h, w), radius)[:, 0]                         # B x O x N
        total = total + compat * kern * norm * norm_j
    return total * valid.reshape(B, 1, h * w)


def dense_crf_batch(image: torch.Tensor, unary: torch.Tensor, valid: torch.Tensor | None = None, *,
                    lattice: int = DEFAULT_LATTICE, **crf_params: float) -> torch.Tensor:
    """Mean-field dense CRF over a batch -> B x H x W int64 MAP labels (on ``unary``'s device).

    image: B x 3 x H x W colours (0-255, any float or uint8). unary: B x C x H x W energies (lower =
    more likely, e.g. ``-log p``). valid: B x 1 x H x W (None: every pixel), see :func:`pad_batch`.
    ``crf_params`` override :data:`vitdense.ops.crf.CRF_DEFAULTS` (same names and meaning).
    """
    unknown = set(crf_params) - set(CRF_DEFAULTS)
    if unknown:
        raise ParameterError(f"unknown CRF parameter(s) {sorted(unknown)}: expected some of {sorted(CRF_DEFAULTS)}")
    p = {**CRF_DEFAULTS, **crf_params}
    iterations = int(p.pop("iterations"))
    B, C, H, W = unary.shape
    if valid is None:
        valid = torch.ones((B, 1, H, W), dtype=torch.bool, device=unary.device)
    unary = unary.float()
    if iterations == 0 or C == 1:
        return unary.argmin(1)
    s = int(lattice)
    radius = max(1, math.ceil(WINDOW_SIGMAS * max(p["gaussian_sxy"], p["bilateral_sxy"]) / s))
    per_image = C * (2 * radius + 1) ** 2 * math.ceil(H / s) * math.ceil(W / s)
    step = max(1, _CHUNK_ELEMENTS // per_image)
    return torch.cat([_mean_field(image[b:b + step], unary[b:b + step], valid[b:b + step], s, radius,
                                  iterations, p) for b in range(0, B, step)])


def _mean_field(image: torch.Tensor, unary: torch.Tensor, valid: torch.Tensor, s: int, radius: int,
                iterations: int, p: dict) -> torch.Tensor:
    """One chunk of :func:`dense_crf_batch` (same arguments) -> B x H x W labels."""
    B, C, H, W = unary.shape
    img_l = _pool(image.float(), valid, s)
    un_l = _pool(unary, valid, s)
    valid_l = F.max_pool2d(valid.float(), s, ceil_mode=True) > 0 if s > 1 else valid
    h, w = un_l.shape[-2:]
    weights = crf_weights(img_l, valid_l, radius, s, **p)                                # B x O x N
    q = torch.softmax(-un_l, dim=1)
    for _ in range(iterations):
        message = torch.einsum("bkon,bon->bkn", _window(q, radius), weights).reshape(B, C, h, w)
        q = torch.softmax(message - un_l, dim=1)
    if s > 1:  # the message at pixel resolution; the pixels' own energies keep their detail
        message = F.interpolate(message, size=(math.ceil(H / s) * s, math.ceil(W / s) * s),
                                mode="bilinear", align_corners=False)[..., :H, :W]
    return (message - unary).argmax(1)


def grid_to_pixels(grid_map: torch.Tensor, grid: tuple[int, int], patch: int, stride: int,
                   size: tuple[int, int]) -> torch.Tensor:
    """h x w x C grid values -> C x H1 x W1 at the load size, bilinear between patch centres.

    The same sampling as :meth:`vitdense.features.descriptors.Geometry.upsample` at the resized size (pixel
    ``y`` reads the grid at ``(y + 0.5 - patch / 2) / stride``, clamped), on ``grid_map``'s device.
    """
    h, w = grid
    dev = grid_map.device
    t = grid_map.reshape(h, w, -1).permute(2, 0, 1).float()                       # C x h x w
    out = t
    for axis, (n_out, n_grid) in enumerate(zip(size, grid)):  # rows, then columns (two axes)
        g = ((torch.arange(n_out, device=dev) + 0.5 - patch / 2) / stride).clamp(0, n_grid - 1)
        i0 = g.floor().long().clamp(max=n_grid - 1)
        i1 = (i0 + 1).clamp(max=n_grid - 1)
        f = g - i0
        shape = (1, -1, 1) if axis == 0 else (1, 1, -1)
        a, b = out.index_select(axis + 1, i0), out.index_select(axis + 1, i1)
        out = a * (1 - f.view(shape)) + b * f.view(shape)
    return out


def unary_from_masks(masks: torch.Tensor, confidence: float = MASK_CONFIDENCE) -> torch.Tensor:
    """B x H x W bool masks -> B x 2 x H x W energies ``-log p`` (label 1 = foreground)."""
    fg = masks.float() * (2 * confidence - 1) + (1 - confidence)                   # p(fg)
    return -torch.log(torch.stack([1 - fg, fg], dim=1))


def rgb_tensors(rgbs: Sequence[np.ndarray], device: torch.device | str) -> list[torch.Tensor]:
    """H x W x 3 uint8 arrays -> 3 x H x W uint8 tensors on ``device`` (non-blocking copies)."""
    return [torch.from_numpy(np.array(r, dtype=np.uint8)).permute(2, 0, 1).to(device, non_blocking=True)
            for r in rgbs]


def crf_labels(rgbs: Sequence[np.ndarray], unaries: Sequence[torch.Tensor], **crf_params: float) -> list[torch.Tensor]:
    """One :func:`dense_crf_batch` over images of any sizes -> H_i x W_i int64 labels (unaries' device).

    rgbs: H_i x W_i x 3 uint8; unaries: C x H_i x W_i energies. Portrait images are transposed to
    landscape for the batch (the kernels are isotropic) so that the padding stays small when
    orientations mix, and transposed back.
    """
    device = unaries[0].device
    tall = [u.shape[-2] > u.shape[-1] for u in unaries]
    flip = lambda x, t: x.transpose(-2, -1) if t else x  # noqa: E731
    images, valid = pad_batch([flip(r, t) for r, t in zip(rgb_tensors(rgbs, device), tall)])
    unary, _ = pad_batch([flip(u, t) for u, t in zip(unaries, tall)])
    labels = dense_crf_batch(images, unary, valid, **crf_params)
    out = []
    for i, (u, t) in enumerate(zip(unaries, tall)):
        h, w = (u.shape[-1], u.shape[-2]) if t else u.shape[-2:]
        out.append(flip(labels[i, :h, :w], t))
    return out


def refine_masks(rgbs: Sequence[np.ndarray], masks: Sequence[torch.Tensor], device: torch.device | str,
                 **crf_params: float) -> list[torch.Tensor]:
    """Coarse H_i x W_i bool masks -> refined masks (bool, on ``device``), one batched CRF.

    rgbs: the images at the masks' size (H_i x W_i x 3 uint8). Two labels, unaries from the masks
    (:data:`MASK_CONFIDENCE`), the dense CRF of :data:`vitdense.ops.crf.CRF_DEFAULTS`.
    """
    unaries = [unary_from_masks(torch.as_tensor(m, device=device)[None])[0] for m in masks]
    return [lab > 0 for lab in crf_labels(rgbs, unaries, **crf_params)]


def smooth_grid_unaries(unaries: Sequence[torch.Tensor], geometries: Sequence, rgbs: Sequence[np.ndarray],
                        **crf_params: float) -> list[torch.Tensor]:
    """Part co-segmentation's smoothing, batched: T_i x C grid energies -> H1 x W1 int64 labels.

    Each image's energies are sampled at its load-size pixels (:func:`grid_to_pixels`, bilinear as
    :data:`vitdense.apps.parts.UNARY_UPSAMPLING`), then one :func:`dense_crf_batch` over
    every image; rgbs: the images at the load size (H1 x W1 x 3 uint8). On the energies' device.
    """
    maps = [grid_to_pixels(u, g.grid, g.patch, g.stride, tuple(g.resized_size))
            for u, g in zip(unaries, geometries)]
    return crf_labels(rgbs, maps, **crf_params)


def resize_labels(labels: torch.Tensor, size: tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """H x W labels (int) or mask (bool) -> ``size``: nearest for labels; ``"bilinear"`` on a mask's
    0/1 values thresholded at 0.5 (as :func:`vitdense.apps.cosegmentation.resize_mask`)."""
    if tuple(labels.shape) == tuple(size):
        return labels
    x = labels[None, None].float()
    if mode == "bilinear":
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)[0, 0] >= 0.5
    return F.interpolate(x, size=tuple(size), mode="nearest")[0, 0].to(labels.dtype)

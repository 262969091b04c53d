"""Pixel-resolution descriptors without training: joint bilateral upsampling (JBU).

A ViT gives one descriptor per patch cell (an ``h x w`` grid, ``stride`` pixels apart). This module
turns it into one descriptor per pixel of the image, guided by the image itself, as joint bilateral
upsampling does (Kopf et al., SIGGRAPH 2007; FeatUp's JBU learns its kernels, here they are fixed):

    f(p) = sum_q F(q) * exp(-|p - q|^2 / (2 s^2)) * exp(-|I(p) - I(q)|^2 / (2 r^2)) / normaliser

over the ``(2R + 1)^2`` grid cells ``q`` around the cell nearest to pixel ``p`` (distances in grid
cells), where ``I(p)`` is the pixel's colour and ``I(q)`` the mean colour of patch ``q`` (what the
descriptor saw). Parameters are fixed and documented below; nothing is learned. ``"bilinear"``
is the same machinery with a tent kernel and no colour term.

Output geometry: a :class:`~vitdense.features.extractor.Geometry` whose "cells" are pixels (``patch =
stride = 1``) of the image resized so its smaller side is ``size`` (default: the load size the
network saw), cropped like the descriptor grid; so ``cell_to_pixel`` / ``pixel_to_cell`` keep
working in original pixels. Work is done in row chunks: the peak extra memory is about
``chunk_elements`` floats plus the output.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitdense.errors import ParameterError

__all__ = ["UPSAMPLE_METHODS", "JBU_SIGMA_SPATIAL", "JBU_SIGMA_RANGE", "JBU_RADIUS",
           "upsampled_geometry", "upsample_descriptors", "upsample_image_descriptors"]

UPSAMPLE_METHODS = ("bilinear", "jbu")
JBU_SIGMA_SPATIAL = 1.0   # spatial Gaussian, in grid cells
JBU_SIGMA_RANGE = 0.15    # colour Gaussian, Euclidean RGB distance with channels in [0, 1]
JBU_RADIUS = 2            # window: (2R + 1)^2 cells around the nearest cell
_CHUNK_ELEMENTS = 1 << 23  # floats per gathered block (32 MB)


def upsampled_geometry(geometry: Any, size: int | None = None) -> Any:
    """The pixel-level geometry of ``geometry``'s grid at smaller side ``size`` (None: load size).

    Returns a Geometry with ``patch = stride = 1`` whose grid covers the same crop as the
    descriptor grid, in pixels of the image resized to ``size``.
    """
    from vitdense.features.descriptors import Geometry
    H1, W1 = geometry.resized_size
    if size is None:
        H2, W2 = H1, W1
    else:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096:
            raise ParameterError(f"upsample_size={size!r} must be an integer number of pixels in [8, 4096]")
        s = size / min(H1, W1)
        H2, W2 = max(1, round(H1 * s)), max(1, round(W1 * s))
    h, w = geometry.grid
    crop_h = geometry.patch + (h - 1) * geometry.stride    # load-size pixels the grid covers
    crop_w = geometry.patch + (w - 1) * geometry.stride
    gh, gw = max(1, int(crop_h * H2 / H1)), max(1, int(crop_w * W2 / W1))
    if gh * gw > 16_777_216:
        raise ParameterError(f"upsampling to {gw} x {gh} pixels is too large: choose a smaller upsample_size")
    return Geometry(tuple(geometry.orig_size), (H2, W2), (gh, gw), 1, 1)


def _guidance(image: Any, geometry: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(3 x gh x gw pixel colours at the target resolution, 3 x h x w mean colour of each patch)."""
    from vitdense.features.images import load_image
    img = load_image(image)
    if img.size != (geometry.orig_size[1], geometry.orig_size[0]):
        raise ParameterError(f"the guidance image is {img.size[0]} x {img.size[1]} but the descriptors "
                             f"were extracted from {geometry.orig_size[1]} x {geometry.orig_size[0]}")
    H1, W1 = geometry.resized_size
    H2, W2 = target.resized_size
    hi = np.asarray(img.resize((W2, H2), Image.Resampling.BILINEAR) if (W2, H2) != img.size else img)
    hi_t = torch.from_numpy(hi[: target.grid[0], : target.grid[1]].astype(np.float32) / 255.0).permute(2, 0, 1)
    lo = np.asarray(img.resize((W1, H1), Image.Resampling.LANCZOS) if (W1, H1) != img.size else img)
    lo_t = torch.from_numpy(lo.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    patch_mean = F.avg_pool2d(lo_t, geometry.patch, stride=geometry.stride)[0]   # 3 x h x w
    return hi_t, patch_mean[:, : geometry.grid[0], : geometry.grid[1]]


def upsample_descriptors(descs: torch.Tensor, geometry: Any, image: Any = None, method: str = "jbu",
                         size: int | None = None, chunk_elements: int = _CHUNK_ELEMENTS
                         ) -> tuple[torch.Tensor, Any]:
    """``T x D`` descriptors on ``geometry``'s grid -> ``(gh * gw) x D`` per-pixel descriptors.

    Args:
        descs: T x D, T = h * w (row-major), as in ImageDescriptors.descs.
        geometry: the descriptors' Geometry.
        image: the original image (path / PIL / ndarray / bytes), needed by ``"jbu"``.
        method: ``"jbu"`` (joint bilateral, image-guided) or ``"bilinear"``.
        size: smaller side of the output image in pixels (None: the load size).
        chunk_elements: floats per gathered block (bounds the extra memory).

    Returns:
        ``(descs_up, geometry_up)``: ``(gh * gw) x D`` float32 on ``descs``' device, row-major over
        the pixel grid, and its Geometry (:func:`upsampled_geometry`).
    """
    if method not in UPSAMPLE_METHODS:
        raise ParameterError(f"upsample={method!r} is unknown: expected one of {', '.join(UPSAMPLE_METHODS)}")
    if method == "jbu" and image is None:
        raise ParameterError("upsample='jbu' needs the image (it guides the upsampling)")
    h, w = geometry.grid
    if descs.ndim != 2 or descs.shape[0] != h * w:
        raise ParameterError(f"descs must be {h * w} x D for grid {h} x {w}, got {tuple(descs.shape)}")
    target = upsampled_geometry(geometry, size)
    gh, gw = target.grid
    dev, D = descs.device, descs.shape[1]
    grid = descs.float().reshape(h, w, D)
    # fractional grid coordinate of every output pixel (cell centres are integers)
    H1, W1 = geometry.resized_size
    H2, W2 = target.resized_size
    gy = ((torch.arange(gh, dtype=torch.float32) + 0.5) * H1 / H2 - geometry.patch / 2) / geometry.stride
    gx = ((torch.arange(gw, dtype=torch.float32) + 0.5) * W1 / W2 - geometry.patch / 2) / geometry.stride
    gy, gx = gy.clamp(0, h - 1).to(dev), gx.clamp(0, w - 1).to(dev)
    if method == "jbu":
        hi, lo = (t.to(dev) for t in _guidance(image, geometry, target))
        radius, base_y, base_x = JBU_RADIUS, gy.round().long(), gx.round().long()
    else:
        hi = lo = None
        radius, base_y, base_x = 1, gy.floor().long(), gx.floor().long()
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)] \
        if method == "jbu" else [(0, 0), (0, 1), (1, 0), (1, 1)]
    flat = grid.reshape(h * w, D)
    out = torch.empty(gh * gw, D, device=dev)
    rows = max(1, chunk_elements // max(1, gw * max(D, len(offsets) * 4)))
    for r0 in range(0, gh, rows):  # row chunks bound the memory
        r1 = min(gh, r0 + rows)
        weights, cells = [], []
        for dy, dx in offsets:  # (2R+1)^2 window offsets, each a vectorised rows x gw step
            ny, nx = base_y[r0:r1] + dy, base_x + dx
            valid = ((ny >= 0) & (ny < h))[:, None] & ((nx >= 0) & (nx < w))[None, :]
            ny, nx = ny.clamp(0, h - 1), nx.clamp(0, w - 1)
            ddy, ddx = ny.float() - gy[r0:r1], nx.float() - gx
            if method == "jbu":
                wgt = torch.exp(-(ddy[:, None] ** 2 + ddx[None, :] ** 2) / (2 * JBU_SIGMA_SPATIAL ** 2))
                dist2 = ((hi[:, r0:r1] - lo[:, ny][:, :, nx]) ** 2).sum(0)
                wgt = wgt * torch.exp(-dist2 / (2 * JBU_SIGMA_RANGE ** 2))
            else:
                wgt = (1 - ddy.abs()).clamp_min(0)[:, None] * (1 - ddx.abs()).clamp_min(0)[None, :]
            weights.append(wgt * valid)
            cells.append(ny[:, None] * w + nx[None, :])
        wgt = torch.stack(weights, dim=-1).reshape(-1, len(offsets))        # N x K
        wgt = wgt / wgt.sum(dim=1, keepdim=True).clamp_min(1e-12)
        n = wgt.shape[0]
        # the N x (h*w) interpolation matrix has K non-zeros per row: one sparse product
        with warnings.catch_warnings():  # torch notes that sparse CSR is "beta"; it is exact here
            warnings.simplefilter("ignore", UserWarning)
            mat = torch.sparse_csr_tensor(
                torch.arange(0, n * len(offsets) + 1, len(offsets), device=dev),
                torch.stack(cells, dim=-1).reshape(-1), wgt.reshape(-1), size=(n, h * w),
                check_invariants=False)
        out[r0 * gw:r1 * gw] = mat @ flat
    return out, target


def upsample_image_descriptors(d: Any, image: Any = None, method: str = "jbu",
                               size: int | None = None) -> Any:
    """An :class:`~vitdense.features.extractor.ImageDescriptors` at pixel resolution (see
    :func:`upsample_descriptors`); saliency is upsampled bilinearly, the CLS descriptor kept."""
    from vitdense.features.descriptors import ImageDescriptors
    descs, target = upsample_descriptors(d.descs, d.geometry, image, method, size)
    sal = None
    if d.saliency is not None:
        s, _ = upsample_descriptors(d.saliency.reshape(-1, 1), d.geometry, None, "bilinear", size)
        sal = s.reshape(target.grid)
    params = {**d.params, "upsample": method, "upsample_size": size}
    return ImageDescriptors(descs, target, sal, d.cls, params)


"""PCA visualisation of descriptors (the official ``pca.py``).

The descriptors of one or several images are stacked (``sum_i T_i x D``), centred and reduced to
``n_components`` principal components jointly; each image gets its component maps ``h x w x n``.
Defaults follow the official script: layer 11, no binning, 4 components; the facet is the model's
default (``facet=None``: the paper's ``key`` for DINO v1, ``token`` for DINOv2).
:func:`pca_rgb` turns three components into RGB images, min-max normalised per channel over all
images jointly (so colours are comparable across images).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from vitdense.errors import ParameterError, check_int
from vitdense.features.descriptors import check_descriptor_set

if TYPE_CHECKING:  # pragma: no cover
    from vitdense.features.descriptors import Geometry, ImageDescriptors
    from vitdense.features.extractor import Extractor

__all__ = ["PCAResult", "pca", "pca_descriptors", "pca_rgb"]

# Above this descriptor dimension, a seeded randomized SVD replaces the exact covariance eigh.
_EXACT_MAX_DIM = 1024


@dataclass
class PCAResult:
    """Joint PCA of the descriptors of N images.

    Attributes:
        components: N arrays ``h_i x w_i x n`` float32, the projections of each image's centred
            descriptors on the principal axes (component 0 = largest variance).
        explained_variance: n float64, variance of the stacked data along each axis (ddof=1),
            descending.
        explained_variance_ratio: n float64, ``explained_variance / total variance``.
        axes: n x D float32, orthonormal principal axes (sign: largest-magnitude entry positive).
        mean: D float32, the mean descriptor removed before projection.
        geometries: N :class:`Geometry` (grid <-> original pixels, for upsampling maps).
        params: extraction parameters and ``n_components``.
    """

    components: list[np.ndarray]
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    axes: np.ndarray
    mean: np.ndarray
    geometries: list["Geometry"]
    params: dict[str, Any] = field(default_factory=dict)

    def rgb(self, channels: Sequence[int] = (0, 1, 2)) -> list[np.ndarray]:
        """Components ``channels`` as RGB images: N arrays ``h_i x w_i x 3`` float32 in [0, 1]."""
        return pca_rgb(self.components, channels)


def pca_rgb(components: np.ndarray | Sequence[np.ndarray],
            channels: Sequence[int] = (0, 1, 2)) -> np.ndarray | list[np.ndarray]:
    """Three PCA components as RGB images, min-max normalised per channel over ALL images.

    Args:
        components: one ``h x w x n`` array or a sequence of them (``n >= 3``).
        channels: the three component indices used as R, G, B (negative indices allowed: the
            official script's default was the last three, ``(-3, -2, -1)``).

    Returns:
        ``h x w x 3`` float32 in [0, 1] (a list of them when a sequence was given). A constant
        channel maps to 0.
    """
    single = isinstance(components, np.ndarray)
    maps = [np.asarray(c, dtype=np.float32) for c in ([components] if single else components)]
    if not maps or any(m.ndim != 3 for m in maps) or len({m.shape[2] for m in maps}) != 1:
        raise ParameterError("components must be h x w x n arrays with the same n")
    n = maps[0].shape[2]
    ch = list(channels)
    if len(ch) != 3 or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -n <= c < n
                           for c in ch):
        raise ParameterError(f"channels={tuple(channels)!r} must be 3 component indices in [-{n}, {n})")
    flat = np.concatenate([m.reshape(-1, n)[:, ch] for m in maps], axis=0)   # sum(h*w) x 3
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    out = [np.clip((m[..., ch] - lo) / scale, 0.0, 1.0).astype(np.float32) for m in maps]
    return out[0] if single else out


def _principal_axes(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``n`` eigenpairs of the scatter matrix of centred ``x`` (T x D).

    Returns ``(sq, axes)``: ``sq`` n float64, squared singular values (descending), ``axes``
    n x D float64 unit rows. Exact (float64 covariance eigh) for D <= 1024, otherwise a seeded
    randomized SVD (10 extra dimensions, 4 power iterations), which is exact to float precision
    for the top components of descriptor data and far cheaper for binned descriptors.
    """
    t, d = x.shape
    if d <= _EXACT_MAX_DIM:
        xd = x.double()
        evals, evecs = torch.linalg.eigh(xd.t() @ xd)           # ascending
        return evals.flip(0)[:n].clamp_min(0), evecs.flip(1)[:, :n].t()
    g = torch.Generator(device="cpu").manual_seed(0)
    q = min(n + 10, t, d)
    omega = torch.randn(d, q, generator=g, dtype=torch.float32).to(x.device)
    y = x @ omega                                               # T x q
    for _ in range(4):
        qm, _ = torch.linalg.qr(y)
        y = x @ (x.t() @ qm)
    qm, _ = torch.linalg.qr(y)
    _, s, vh = torch.linalg.svd((qm.t() @ x).double(), full_matrices=False)  # q x D
    return (s[:n] ** 2), vh[:n]


def pca_descriptors(descs: "ImageDescriptors | Sequence[ImageDescriptors]",
                    n_components: int = 4) -> PCAResult:
    """Joint PCA of one or several images' descriptors (``T_i x D`` each, same D)."""
    ds = [descs] if hasattr(descs, "descs") else list(descs)
    mats = check_descriptor_set(ds)
    dev = mats[0].device
    x = torch.cat([m.to(dev).float() for m in mats], dim=0)     # sum(T) x D
    t, d = x.shape
    n = check_int("n_components", n_components, 1, min(d, max(t - 1, 1)))
    with torch.no_grad():
        mean = x.mean(dim=0)
        xc = x - mean
        sq, axes = _principal_axes(xc, n)
        # deterministic sign: the largest-magnitude entry of every axis is positive
        sign = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
        axes = axes * torch.where(sign == 0, torch.ones_like(sign), sign)
        proj = xc @ axes.t().float()                             # sum(T) x n
        denom = max(t - 1, 1)
        total = float(xc.pow(2).sum(dtype=torch.float64)) / denom
        var = (sq / denom).cpu().numpy()
    comps = []
    for d_i, part in zip(ds, torch.split(proj, [m.shape[0] for m in mats])):
        comps.append(part.reshape(*tuple(d_i.grid), n).cpu().numpy())
    return PCAResult(
        components=comps, explained_variance=var,
        explained_variance_ratio=var / total if total > 0 else np.zeros_like(var),
        axes=axes.float().cpu().numpy(), mean=mean.cpu().numpy(),
        geometries=[d_i.geometry for d_i in ds],
        params={**dict(getattr(ds[0], "params", {}) or {}), "n_components": n})


def pca(extractor: "Extractor", images: Any, *, n_components: int = 4, load_size: int | None = 224,
        layer: int = 11, facet: str | None = None, bin: bool = False, hierarchy: int = 2,
        stride: int | None = None) -> PCAResult:
    """Extract ``images`` (one or a sequence) and run :func:`pca_descriptors` on them jointly.

    ``stride=None`` / ``facet=None`` are the model's defaults (half the patch; key / token).
    """
    n_components = check_int("n_components", n_components, 1)
    ds = extractor.extract(images, layer=layer, facet=facet, stride=stride,
                           load_size=load_size, bin=bin, hierarchy=hierarchy)
    return pca_descriptors(ds, n_components)

"""Descriptor types: what an extraction returns, and the settings that produce it.

A leaf of the features layer (it imports only :mod:`vitdense.errors` and :mod:`vitdense.defaults`): the
extractor fills these types, the cache stores them and every application reads them, without any
of them importing each other for it.

Shapes: ``T = h * w`` patch tokens on an ``h x w`` grid, ``D`` channels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitdense.errors import ParameterError

FACETS = ("key", "query", "value", "token")

#: the descriptor settings every application shares (model independent; None = the model's default)
DESCRIPTOR_KNOBS = ("layer", "facet", "stride", "load_size", "bin", "hierarchy")


def indexed_device(device: str | torch.device) -> torch.device:
    """``device`` as a tensor's ``.device`` names it: ``"cuda"`` -> ``cuda:<current index>``
    (``torch.device("cuda") != torch.device("cuda:0")``, so an unindexed device never equals a
    tensor's)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass(frozen=True)
class Geometry:
    """How the patch grid of one image sits on the caller's original image.

    Coordinates are continuous pixel positions ``(y, x)``: pixel ``k`` covers ``[k, k + 1)``.
    The grid covers the top-left ``patch + (h - 1) * stride`` pixels of the resized image.
    """

    orig_size: tuple[int, int]      # (H0, W0) of the original image (EXIF applied)
    resized_size: tuple[int, int]   # (H1, W1) after resizing to ``load_size``
    grid: tuple[int, int]           # (h, w)
    patch: int
    stride: int

    @property
    def scale(self) -> tuple[float, float]:
        """Original pixels per resized pixel, (y, x)."""
        return (self.orig_size[0] / self.resized_size[0], self.orig_size[1] / self.resized_size[1])

    def cell_centers(self) -> np.ndarray:
        """T x 2 centres ``(y, x)`` of every cell in original pixels, row-major over the grid."""
        return self.cell_to_pixel(np.arange(self.grid[0] * self.grid[1]))

    def cell_to_pixel(self, index: int | np.ndarray) -> np.ndarray:
        """Centre(s) ``(y, x)`` in original pixels of flat cell index/indices (... x 2)."""
        index = np.asarray(index)
        i, j = np.divmod(index, self.grid[1])
        y = (i * self.stride + self.patch / 2) * self.scale[0]
        x = (j * self.stride + self.patch / 2) * self.scale[1]
        return np.stack([y, x], axis=-1)

    def grid_to_pixel(self, gy: float | np.ndarray, gx: float | np.ndarray) -> np.ndarray:
        """Fractional grid coordinates (cell centres are integers) -> ``(y, x)`` original pixels."""
        y = (np.asarray(gy, dtype=np.float64) * self.stride + self.patch / 2) * self.scale[0]
        x = (np.asarray(gx, dtype=np.float64) * self.stride + self.patch / 2) * self.scale[1]
        return np.stack([y, x], axis=-1)

    def contains(self, y: float, x: float) -> bool:
        """Whether ``(y, x)`` (original pixels) lies inside the original image."""
        return 0 <= y < self.orig_size[0] and 0 <= x < self.orig_size[1]

    def pixel_to_cell(self, y: float, x: float) -> int:
        """Flat index of the cell whose centre is nearest to pixel ``(y, x)`` (clamped)."""
        if not self.contains(y, x):
            raise ParameterError(f"point (y={y}, x={x}) is outside the image of "
                                 f"{self.orig_size[0]} x {self.orig_size[1]} pixels")
        gy, gx = self._grid_coords(np.array([int(y) + 0.5]), np.array([int(x) + 0.5]))
        i = int(np.clip(np.rint(gy[0]), 0, self.grid[0] - 1))
        j = int(np.clip(np.rint(gx[0]), 0, self.grid[1] - 1))
        return i * self.grid[1] + j

    def _grid_coords(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-pixel positions -> fractional grid coordinates (cell centres are integers)."""
        gy = (ys / self.scale[0] - self.patch / 2) / self.stride
        gx = (xs / self.scale[1] - self.patch / 2) / self.stride
        return gy, gx

    def upsample(self, grid_map: np.ndarray | torch.Tensor, mode: str = "bilinear") -> np.ndarray:
        """``h x w`` (or ``h x w x C``) map -> ``H0 x W0`` (x C) at the original resolution.

        Every original pixel samples the map at its own grid position (``"nearest"`` or
        ``"bilinear"``), so values stay aligned with the patch centres.
        """
        if mode not in ("nearest", "bilinear"):
            raise ParameterError(f"mode={mode!r}: expected 'nearest' or 'bilinear'")
        t = torch.as_tensor(grid_map).detach().to("cpu")
        squeeze = t.ndim == 2
        if squeeze:
            t = t[..., None]
        dtype = t.dtype
        t = t.permute(2, 0, 1)[None].float()  # 1 x C x h x w
        H0, W0 = self.orig_size
        h, w = self.grid
        gy, gx = self._grid_coords(np.arange(H0) + 0.5, np.arange(W0) + 0.5)
        gy = torch.from_numpy(np.clip(gy, 0, h - 1)).float()
        gx = torch.from_numpy(np.clip(gx, 0, w - 1)).float()
        if mode == "nearest":
            out = t[0][:, gy.round().long()][:, :, gx.round().long()]
        else:  # separable bilinear: rows then columns, never an H0 x W0 x 2 sampling grid
            y0 = gy.floor().long().clamp(max=h - 1)
            y1 = (y0 + 1).clamp(max=h - 1)
            fy = (gy - y0.float())[None, :, None]
            rows = t[0][:, y0] * (1 - fy) + t[0][:, y1] * fy            # C x H0 x w
            x0 = gx.floor().long().clamp(max=w - 1)
            x1 = (x0 + 1).clamp(max=w - 1)
            fx = (gx - x0.float())[None, None, :]
            out = rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx       # C x H0 x W0
        out = out.permute(1, 2, 0)
        if mode == "nearest":
            out = out.to(dtype)
        out = out.numpy()
        return out[..., 0] if squeeze else out


@dataclass
class ImageDescriptors:
    """Descriptors of one image (tensors live on the extractor's device)."""

    descs: torch.Tensor            # T x D patch descriptors, row-major over the grid
    geometry: Geometry
    saliency: torch.Tensor | None  # h x w in [0, 1] (min-max per image), or None
    cls: torch.Tensor | None       # D, the CLS token's descriptor (never binned), or None
    params: dict = field(default_factory=dict)  # everything that produced it

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w), T = h * w."""
        return self.geometry.grid

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.descs, self.saliency, self.cls)
                   if t is not None)

    def to(self, device: str | torch.device) -> "ImageDescriptors":
        """The same descriptors with every tensor on ``device`` (self when already there)."""
        device = indexed_device(device)
        if self.descs.device == device:
            return self

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return ImageDescriptors(mv(self.descs), self.geometry, mv(self.saliency), mv(self.cls),
                                dict(self.params))


@dataclass(frozen=True)
class DescriptorSettings:
    """The descriptor settings of one extraction: the one settings object, resolved once against
    the task's defaults and the model (:meth:`for_model`), then passed down.

    ``facet``, ``stride`` and ``bin`` may be None: the model's own default
    (:class:`vitdense.features.models.ModelSpec`), filled in by :meth:`resolve`.
    """

    layer: int | tuple[int, ...] = 11
    facet: str | None = None
    stride: int | None = None
    load_size: int | None = 224
    bin: bool | None = False
    hierarchy: int = 2

    @classmethod
    def for_task(cls, task: str, model_name: str | None = None, **overrides: Any) -> "DescriptorSettings":
        """The settings of ``task`` for ``model_name`` from :func:`vitdense.defaults.task_defaults`,
        with ``overrides`` (None values ignored) applied."""
        from vitdense.defaults import task_defaults
        table = task_defaults(task, model_name)
        values = {k: table[k] for k in DESCRIPTOR_KNOBS if k in table}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("layer"), list):
            values["layer"] = tuple(values["layer"])
        return cls(**values)

    @classmethod
    def for_model(cls, task: str, spec: Any, **overrides: Any) -> "DescriptorSettings":
        """:meth:`for_task` for ``spec`` (a :class:`~vitdense.features.models.ModelSpec`), resolved
        and checked: what an application extracts with when the caller leaves settings unset."""
        out = cls.for_task(task, spec.name, **overrides).resolve(spec)
        out.check(spec)
        return out

    def resolve(self, spec: Any) -> "DescriptorSettings":
        """The model's own defaults for the None ``facet``, ``stride`` and ``bin`` of ``spec``
        (key facet for DINO v1, token for DINOv2; half the patch; log-binning on for DINO v1)."""
        return dataclasses.replace(
            self, facet=self.facet or spec.default_facet,
            stride=spec.default_stride if self.stride is None else self.stride,
            bin=spec.default_bin if self.bin is None else bool(self.bin))

    def check(self, spec: Any) -> None:
        """One :class:`ParameterError` sentence for a setting the model cannot take."""
        layers = self.layers
        if not layers:
            raise ParameterError("layer: give at least one layer")
        for layer in layers:
            if not isinstance(layer, (int, np.integer)) or not 0 <= layer < spec.depth:
                raise ParameterError(f"layer={layer!r} is out of range for {spec.name} "
                                     f"({spec.depth} blocks): expected 0..{spec.depth - 1}")
        if self.facet is not None and self.facet not in FACETS:
            raise ParameterError(f"facet={self.facet!r} is unknown: expected one of {', '.join(FACETS)}")
        patch = spec.patch_size
        if self.stride is not None and (not isinstance(self.stride, (int, np.integer)) or self.stride < 1
                                        or patch % self.stride):
            divisors = [d for d in range(1, patch + 1) if patch % d == 0]
            raise ParameterError(f"stride={self.stride!r} must divide the patch size {patch} of "
                                 f"{spec.name}: choose one of {divisors}")

    @property
    def layers(self) -> list[int]:
        """The layer(s) as a list (one layer, or several concatenated along D)."""
        return [self.layer] if isinstance(self.layer, (int, np.integer)) else list(self.layer)

    def replace(self, **changes: Any) -> "DescriptorSettings":
        return dataclasses.replace(self, **changes)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Extractor.extract`` / the applications' descriptor options."""
        out = dataclasses.asdict(self)
        if isinstance(out["layer"], tuple):
            out["layer"] = list(out["layer"])
        return out


def check_descriptor_set(descs: Any, name: str = "descs", minimum: int = 1,
                         same_dim: bool = True) -> list[torch.Tensor]:
    """The one validator of descriptors given to an application.

    ``descs``: one :class:`ImageDescriptors` or a sequence of them. Each must hold a ``T x D``
    tensor with ``T = h * w`` of its grid; with ``same_dim`` all share ``D``. Returns the ``T x D``
    tensors; raises :class:`ParameterError` naming ``name`` (``name[i]`` for an item of a sequence).
    """
    single = isinstance(descs, ImageDescriptors) or hasattr(descs, "descs")
    if not single and (descs is None or isinstance(descs, (str, bytes, torch.Tensor))
                       or not hasattr(descs, "__iter__")):
        raise ParameterError(f"{name} must be ImageDescriptors or a list of them, not {type(descs).__name__}")
    items = [descs] if single else list(descs)
    if not items:
        raise ParameterError(f"{name} is empty: give the descriptors of at least one image")
    if len(items) < minimum:
        raise ParameterError(f"{name} holds {len(items)} image(s): give at least {minimum}")
    out = []
    for i, d in enumerate(items):
        label = name if single else f"{name}[{i}]"
        t = getattr(d, "descs", None)
        if not isinstance(t, torch.Tensor) or t.ndim != 2:
            raise ParameterError(f"{label} must be ImageDescriptors with a T x D descs tensor")
        h, w = d.grid
        if t.shape[0] != h * w:
            raise ParameterError(f"{label} has {t.shape[0]} rows but its grid is {h} x {w} (needs {h * w})")
        out.append(t)
    dims = sorted({int(t.shape[1]) for t in out})
    if same_dim and len(dims) > 1:
        raise ParameterError(f"descriptors have different dimensions {dims}: all must have the same "
                             "dimension D (extract every image with the same layer/facet/bin settings)")
    return out

"""Results off the device in one copy: tensors of any shapes on one device become CPU tensors with
one device-to-host copy per device and dtype (one host sync, not one per image or per tensor)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["to_host"]


def to_host(tensors: Sequence[np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
    """Tensors (or arrays) -> the same values as CPU tensors, in order. Those on a device are
    flattened into one tensor per (device, dtype) there, copied once, and split back into
    contiguous views of that copy; CPU ones are returned as they are."""
    ts = [torch.as_tensor(t).detach() for t in tensors]
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(ts):
        if t.device.type != "cpu":
            groups.setdefault((t.device, t.dtype), []).append(i)
    for idx in groups.values():
        flat = torch.cat([ts[i].reshape(-1) for i in idx]).cpu()
        for i, part in zip(idx, flat.split([ts[i].numel() for i in idx])):
            ts[i] = part.view(ts[i].shape)
    return ts

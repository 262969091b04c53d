"""vitdense.ops.host.to_host: results off the device in one copy per device and dtype.

On the CPU the tensors come back as they are; on a GPU (``VITDENSE_TEST_DEVICE=cuda``, part of
bench/gpu_check.sh's CUDA layer) this is the flatten / copy once / split path."""
from __future__ import annotations

import numpy as np
import torch

from vitdense.ops.host import to_host


def test_mixed_shapes_and_dtypes_come_back_equal_in_order(test_device):
    g = torch.Generator().manual_seed(0)
    given = [torch.randn(17, 5, generator=g).to(test_device),                      # float32
             torch.randint(0, 9, (3, 4, 2), generator=g).to(test_device),           # int64
             torch.randn(6, generator=g).half().to(test_device),                    # float16
             torch.randn(2, 3, generator=g).to(test_device),                        # float32 again
             np.arange(4, dtype=np.int32),                                          # an array
             torch.randn(8, 8, generator=g).t().to(test_device),                    # not contiguous
             torch.zeros(0, 3, device=test_device)]                                 # empty
    got = to_host(given)
    assert len(got) == len(given)
    for t, want in zip(got, given):
        want = torch.as_tensor(want).cpu()
        assert t.device.type == "cpu" and t.dtype == want.dtype and t.shape == want.shape
        assert torch.equal(t, want)
    if test_device.type != "cpu":  # one copy per dtype: the float32 ones share one host buffer
        assert got[0].untyped_storage().data_ptr() == got[3].untyped_storage().data_ptr()
        assert all(t.is_contiguous() for t in got)

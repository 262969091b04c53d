"""Where one batched ``Extractor.extract`` call spends its time (GPU check; CPU with --device cpu).

Prints images/s of the raw forward and of ``extract`` for PIL, uint8-array and uint8-tensor inputs at several
pipeline depths (``Extractor.pipeline_images``), then the top of a cProfile of one PIL call.

    python bench/profile_extract.py --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def timed(fn, device: str, reps: int = 3) -> float:
    fn()
    C.sync(device)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        C.sync(device)
        out.append(time.perf_counter() - t)
    return sorted(out)[reps // 2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    photos = [im for _, im in C.photo_set()]
    ex = C.random_weights_extractor(device=a.device, dtype=a.dtype)
    pils = [photos[i % len(photos)].resize((224, 224)) for i in range(a.batch)]
    arrays = [np.asarray(im) for im in pils]
    kw = dict(layer=11, facet="key", stride=8, load_size=224, batch_size=a.batch)
    batch = torch.from_numpy(np.stack(arrays))  # B x H x W x 3 on the host (the PIL-free path)
    x = batch.to(a.device)
    raw = timed(lambda: ex.model.forward_features(ex._normalise(x, a.device, ex.dtype)), a.device)
    print(f"raw forward ({a.dtype}, {a.batch} images): {a.batch / raw:.0f} images/s")
    for depth in (None, 128, 64, 32):
        ex.pipeline_images = depth
        for name, inputs in (("PIL", pils), ("uint8 arrays", arrays), ("uint8 tensor", batch)):
            t = timed(lambda: ex.extract(inputs, **kw), a.device)
            print(f"extract {name:12s} pipeline {str(depth):4s}: {a.batch / t:6.0f} images/s ({raw / t:.2f}x raw)")
    ex.pipeline_images = 64
    pr = cProfile.Profile()
    pr.enable()
    ex.extract(pils, **kw)
    C.sync(a.device)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
    print(s.getvalue()[:3500])


if __name__ == "__main__":
    main()

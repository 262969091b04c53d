"""Host preparation (inputs -> the uint8 batch that goes to the device) before and after the PIL-free
path, side by side in one run; and end-to-end ``Extractor.extract`` for arrays before / after.

"before" is the code path of the previous release: every input through ``load_image`` (arrays
become PIL images), then PIL's ``tobytes`` into the batch; "after" is ``Extractor.load_pixels``
(arrays and tensors as views, RGB JPEGs decoded by torchvision) and PIL images read as their
memory (``pil_pixels``: H x W x 4, no ``tobytes``). A second table times the one step that holds
the GIL for PIL inputs, image -> pixels, in one thread; a third the descriptor cache's digest.
Real photos (``skimage.data``), centre-resized to 224 x 224 so that no resize is needed (load_size 224).

    python bench/bench_host_prep.py                       # CPU
    python bench/bench_host_prep.py --device cuda --dtype bf16 --extract-images 256
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from profile_extract import timed as best_of  # noqa: E402 (the median of the repeats)

from vitdense.features.extractor import image_digest  # noqa: E402
from vitdense.features.images import load_image, map_threads, pil_pixels  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--images", type=int, default=256, help="images per host-preparation call")
    p.add_argument("--extract-images", type=int, default=16, help="images per end-to-end extract call")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    photos = [im.convert("RGB").resize((224, 224)) for _, im in C.photo_set()]
    pils = [photos[i % len(photos)] for i in range(a.images)]
    arrays = [np.array(im) for im in pils]
    batch = torch.from_numpy(np.stack(arrays))
    ex = C.random_weights_extractor(device=a.device, dtype=a.dtype)
    stride = ex.spec.patch_size
    g = ex._geometry((224, 224), 224, stride)
    tmp = Path(tempfile.mkdtemp(prefix="vitdense-hostprep-"))
    files = []
    for i, im in enumerate(photos):
        im.save(tmp / f"{i}.jpg", quality=90)
    files = [tmp / f"{i % len(photos)}.jpg" for i in range(a.images)]

    def before(inputs):  # the previous release: load_image (PIL) per input, PIL tobytes per image
        rgbs = map_threads(load_image, inputs)
        return ex._stack_pixels(map_threads(lambda im: np.asarray(im)[:g.resized_size[0], :g.resized_size[1]], rgbs))

    def after(inputs):
        rgbs = ex.load_pixels(inputs, 224)
        return ex._stack_pixels(map_threads(lambda im: ex._pixels(im, g), rgbs))

    rows = []
    cases = [("PIL images, before (tobytes)", before, pils), ("PIL images, after (memory view)", after, pils),
             ("uint8 arrays, before (through PIL)", before, arrays),
             ("uint8 arrays, after (views)", after, arrays), ("uint8 tensor B x H x W x 3, after", after, batch),
             ("uint8 tensor B x 3 x H x W, after", after, batch.permute(0, 3, 1, 2)),
             ("JPEG files, before (PIL decode)", before, files),
             (f"JPEG files, after (torchvision decode on {ex.device})", after, files)]
    for name, fn, inputs in cases:
        t = best_of(lambda: fn(inputs), a.device, a.repeats)
        rows.append([name, f"{a.images / t:.0f}"])
    print(f"## Host preparation, {a.images} images of 224 x 224 px -> uint8 batch ({ex.device})\n")
    print(C.machine_line(a.device) + "\n")
    print(C.table(["input", "images/s"], rows))
    gil = [[name, f"{best_of(lambda: [fn(im) for im in pils], 'cpu', a.repeats) * 1e3:.1f} ms"]
           for name, fn in (("np.asarray (PIL tobytes), before", np.asarray), ("pil_pixels (memory view), after", pil_pixels))]
    print(f"\n## PIL image -> pixels, {a.images} images in one thread (the step that holds the GIL)\n")
    print(C.table(["step", "time"], gil))
    digests = [[name, f"{best_of(lambda: [fn(im) for im in pils], 'cpu', a.repeats) * 1e3:.1f} ms",
                f"{best_of(lambda: map_threads(fn, pils), 'cpu', a.repeats) * 1e3:.1f} ms"]
               for name, fn in (("BLAKE2b, before", _blake2b_digest), ("SHA-256 (image_digest), after", image_digest))]
    print(f"\n## Descriptor cache digest of {a.images} PIL images (only with a cache: the web demo)\n")
    print(C.table(["digest", "one thread", "worker threads"], digests))
    if ex.device.type == "cuda":
        print(nvjpeg_difference(ex.device))
    n = a.extract_images
    kw = dict(layer=11, facet="key", stride=stride, load_size=224, batch_size=n)
    arr_n = arrays[:n]
    x = torch.from_numpy(np.stack(arr_n)).to(ex.device)
    raw = best_of(lambda: ex.model.forward_features(ex._normalise(x, ex.device, ex.dtype)), a.device, a.repeats)
    e2e = [["raw forward (timm forward_features, pixels on the device)", f"{n / raw:.1f}", "1.00x"]]
    for name, make in (("extract, PIL images, after", lambda: pils[:n]),
                       ("extract, uint8 arrays, before (through PIL)", lambda: map_threads(load_image, arr_n)),
                       ("extract, uint8 arrays, after", lambda: arr_n),
                       ("extract, uint8 tensor batch, after", lambda: batch[:n]),
                       ("extract, JPEG files, after", lambda: files[:n])):
        t = best_of(lambda: ex.extract(make(), **kw), a.device, a.repeats)
        e2e.append([name, f"{n / t:.1f}", f"{raw / t:.2f}x"])
    print(f"\n## End to end, {n} images of 224 px, {ex.model_name} (random weights), layer-11 keys, "
          f"stride {stride}, {ex.dtype} on {ex.device}\n")
    print(C.table(["path", "images/s", "of raw forward"], e2e))


def _blake2b_digest(im) -> str:
    """The cache digest of the previous release (BLAKE2b of the size and PIL's bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{im.size}".encode())
    h.update(im.tobytes())
    return h.hexdigest()


def nvjpeg_difference(device: torch.device) -> str:
    """nvjpeg's pixels against PIL's (libjpeg-turbo) on every JPEG of the repository: a table of the
    mean and maximum absolute difference and the share of values more than 8 levels apart."""
    from vitdense.features.images import host_array, load_pixels
    files = sorted([*C.REPO.glob("assets/**/*.jpg"), *C.REPO.glob("bench/data/**/*.jpg")])
    got = load_pixels(files, device=device)
    diffs = [np.abs(host_array(g).astype(int) - np.asarray(load_image(f), dtype=int)) for f, g in zip(files, got)]
    means, maxima = [float(d.mean()) for d in diffs], [int(d.max()) for d in diffs]
    over = sum(int((d > 8).sum()) for d in diffs) / sum(d.size for d in diffs)
    rows = [["mean absolute difference per image (levels): median / worst",
             f"{np.median(means):.2f} / {max(means):.2f}"],
            ["max absolute difference per image (levels): median / worst", f"{np.median(maxima):.0f} / {max(maxima)}"],
            ["values more than 8 levels apart", f"{100 * over:.3f}%"]]
    return (f"\n## nvjpeg ({device}) against PIL, {len(files)} JPEGs of the repository\n\n"
            + C.table(["measure", "value"], rows))


if __name__ == "__main__":
    main()

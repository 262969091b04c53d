"""Reading images of every common kind into RGB, with clear errors.

:func:`load_image` accepts a path, raw bytes, a PIL image or a NumPy array, applies the EXIF
orientation, converts grayscale / RGBA / 16-bit / CMYK / palette images to 8-bit RGB and refuses
images above :data:`MAX_PIXELS` before decoding them (so a "decompression bomb" never fills memory).
"""
from __future__ import annotations

import ctypes
import io
import os
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitdense.errors import ImageError, ParameterError

MAX_PIXELS = 50_000_000  # refuse images above 50 megapixels (about 7000 x 7000)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


def is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch: none exists before it is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One image (path / bytes / PIL / ndarray / tensor) or a sequence of them -> a non-empty list.
    A 4-D array (B x H x W x C) or tensor (B x H x W x C or B x C x H x W) is a batch: its images as views."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif is_tensor(images):
        images = list(images.unbind(0)) if images.ndim == 4 else [images]  # type: ignore[union-attr]
    elif isinstance(images, (str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray)):
        return [images]
    images = list(images)
    if not images:
        raise ParameterError("no images given: give at least one image")
    return images


def _name(src: object) -> str:
    return Path(src).name if isinstance(src, (str, os.PathLike)) else type(src).__name__


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; alpha is composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            hi = 1.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"array of shape {arr.shape} is not an image: expected H x W, H x W x 3 or H x W x 4")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("image array contains NaN or infinite values")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
    elif arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max() > 255):
        arr = (arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def megapixels(pixels: int) -> str:
    """``pixels`` in megapixels as shown in messages ("400", "2.5")."""
    return f"{pixels / 1e6:.0f}" if pixels >= 1e7 else f"{pixels / 1e6:.1f}"


def too_large(name: str, pixels: int, max_pixels: int, size: str = "") -> ImageError:
    """The one sentence for an image (or a decompression bomb) above ``max_pixels``."""
    return ImageError(f"{name}: {size}too large ({megapixels(pixels)} megapixels, the limit is "
                      f"{megapixels(max_pixels)}); downscale it first")


def check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    """Refuse an image of ``size`` (W, H) above ``max_pixels`` with a one-line message."""
    w, h = size
    if w * h > max_pixels:
        raise too_large(name, w * h, max_pixels, f"{w} x {h} pixels is ")


def bomb_pixels(err: Exception, default: int) -> int:
    """The pixel count in PIL's DecompressionBombError text ("Image size (N pixels) exceeds...")."""
    m = re.search(r"\((\d+) pixels\)", str(err))
    return int(m.group(1)) if m else default


def load_image(src: ImageLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Any supported image source -> an 8-bit RGB PIL image, EXIF orientation applied.

    Raises :class:`ImageError` for unreadable data, non-images, and images above ``max_pixels``.
    """
    name = _name(src)
    if is_tensor(src):
        src = _channels_last(src).detach().cpu().numpy()  # type: ignore[arg-type]
    if isinstance(src, np.ndarray):
        check_pixels((src.shape[1] if src.ndim > 1 else 1, src.shape[0]), max_pixels, name)
        return _to_rgb(_array_to_pil(src))
    if isinstance(src, Image.Image):
        check_pixels(src.size, max_pixels, name)
        if src.mode == "RGB" and src.getexif().get(0x0112, 1) == 1:
            return src  # already what we need: no copy
        return _to_rgb(ImageOps.exif_transpose(src))
    if isinstance(src, (bytes, bytearray)):
        fp: object = io.BytesIO(src)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        fp = path
    else:
        raise ImageError(f"cannot read an image from a {type(src).__name__}")
    try:
        with Image.open(fp) as img:  # type: ignore[arg-type]
            check_pixels(img.size, max_pixels, name)  # header only: nothing decoded yet
            img = ImageOps.exif_transpose(img)
            img.load()
            return _to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:  # PIL refuses before our header check can
        raise too_large(name, bomb_pixels(err, 2 * max_pixels), max_pixels) from None
    except UnidentifiedImageError as err:
        raise ImageError(f"{name}: not a readable image ({type(err).__name__})") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name}: corrupt or truncated image ({str(err).splitlines()[0]})") from err


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resized_size(size_wh: tuple[int, int], load_size: int | None) -> tuple[int, int]:
    """(W, H) after the extractor's resize: the smaller side becomes ``load_size`` (the longer one
    is scaled and truncated to whole pixels); None keeps the size."""
    w, h = int(size_wh[0]), int(size_wh[1])
    if load_size is None:
        return w, h
    if w <= h:
        return int(load_size), int(load_size * h / w)
    return int(load_size * w / h), int(load_size)


_POOL: ThreadPoolExecutor | None = None


def map_threads(fn: Callable[[Any], Any], items: Sequence[Any], min_items: int = 4) -> list[Any]:
    """``[fn(x) for x in items]`` on a shared pool of worker threads (decoding, resizing and hashing
    release the GIL in PIL / hashlib), in order; in the calling thread below ``min_items`` items.
    ``VITDENSE_THREADS`` sets the pool's size (default: the CPU count, at most 16)."""
    global _POOL
    if len(items) < min_items:
        return [fn(x) for x in items]
    if _POOL is None:
        size = int(os.environ.get("VITDENSE_THREADS", "0")) or min(16, os.cpu_count() or 1)
        _POOL = ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="vitdense-io")
    return list(_POOL.map(fn, items))


# -- pixels without PIL -------------------------------------------------------------------------
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
_TV_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


def _channels_last(t: Any) -> Any:
    """A 3-D tensor as H x W x C: 3 x H x W (or 1 / 4 channels first) is permuted, a view; H x W x C
    (the last dimension 1, 3 or 4) stays."""
    if t.ndim == 3 and t.shape[-1] not in (1, 3, 4) and t.shape[0] in (1, 3, 4):
        return t.permute(1, 2, 0)
    return t


def rgb_view(src: object, max_pixels: int = MAX_PIXELS) -> Any:
    """An H x W x 3 uint8 array or tensor as H x W x 3 uint8 pixels without a copy: an ndarray as
    it is, a CPU tensor as an ndarray view, a device tensor as a tensor on its device; None for
    anything else (PIL's conversions apply: :func:`load_image`)."""
    if is_tensor(src):
        t = _channels_last(src)
        if t.ndim != 3 or t.shape[2] != 3 or str(t.dtype) != "torch.uint8":
            return None
        check_pixels((t.shape[1], t.shape[0]), max_pixels, "Tensor")
        return t.detach().numpy() if t.device.type == "cpu" else t.detach()
    if isinstance(src, np.ndarray) and src.ndim == 3 and src.shape[2] == 3 and src.dtype == np.uint8:
        check_pixels((src.shape[1], src.shape[0]), max_pixels, "ndarray")
        return src
    return None


# Pillow's Arrow export, read without pyarrow: the Arrow C data interface's structs, a stable ABI
# (arrow.apache.org/docs/format/CDataInterface.html)
class _ArrowArray(ctypes.Structure):
    """``struct ArrowArray``: one exported array (its buffers and children)."""


_ArrowArray._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                        ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
                        ("buffers", ctypes.POINTER(ctypes.c_void_p)),
                        ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
                        ("dictionary", ctypes.POINTER(_ArrowArray)), ("release", ctypes.c_void_p),
                        ("private_data", ctypes.c_void_p)]


class _ArrowSchema(ctypes.Structure):
    """``struct ArrowSchema``: the exported array's type (``format``) and its children's."""


_ArrowSchema._fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                         ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
                         ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
                         ("dictionary", ctypes.POINTER(_ArrowSchema)), ("release", ctypes.c_void_p),
                         ("private_data", ctypes.c_void_p)]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


def pil_pixels(img: Image.Image) -> np.ndarray:
    """An RGB PIL image's pixels as H x W x 4 uint8 without a copy (R, G, B and PIL's unused 4th
    byte: PIL stores RGB in 4 bytes a pixel), or H x W x 3 (``np.asarray``: one copy) when that
    cannot be had (another mode, Pillow before 11.2, an image in several memory blocks).

    Why: ``np.asarray`` goes through PIL's ``tobytes``, which holds the GIL (about 0.1 ms per
    224 px image, single-threaded whatever the pool). The view comes from Pillow's Arrow export
    (a fixed-size list of 4 uint8 per pixel); it keeps the export's capsule, so PIL's memory lives
    as long as the array. Copying it into a batch is a plain memcpy that releases the GIL.
    """
    if img.mode == "RGB" and hasattr(img, "__arrow_c_array__"):
        try:
            schema, capsule = img.__arrow_c_array__()
        except ValueError:  # several memory blocks (large images): no zero-copy export
            pass
        else:
            layout = _ArrowSchema.from_address(_capsule_pointer(schema, b"arrow_schema"))
            pixels = _ArrowArray.from_address(_capsule_pointer(capsule, b"arrow_array"))
            W, H = img.size
            # the layout this reads: a fixed-size list of 4 uint8 per pixel, one buffer, no offset
            if (layout.format == b"+w:4" and layout.n_children == 1 and layout.children[0].contents.format == b"C"
                    and pixels.n_children == 1 and pixels.offset == 0 and pixels.length == H * W
                    and pixels.children[0].contents.offset == 0):
                values = pixels.children[0].contents
                data = (ctypes.c_uint8 * (H * W * 4)).from_address(values.buffers[1])
                data.capsule = capsule  # the array's base holds the export, and so PIL's memory
                view = np.frombuffer(data, dtype=np.uint8).reshape(H, W, 4)
                view.flags.writeable = False  # PIL's own pixels: read, never written through
                return view
    return np.asarray(img, dtype=np.uint8)


def pixel_size(pixels: Any) -> tuple[int, int]:
    """(W, H) of a PIL image or of H x W x 3 pixels."""
    return pixels.size if isinstance(pixels, Image.Image) else (int(pixels.shape[1]), int(pixels.shape[0]))


def host_array(pixels: Any) -> np.ndarray:
    """H x W x 3 uint8 pixels (PIL, ndarray or tensor) as an ndarray on the host."""
    if isinstance(pixels, np.ndarray):
        return pixels
    return pixels.cpu().numpy() if is_tensor(pixels) else np.asarray(pixels, dtype=np.uint8)


class _Jpeg(NamedTuple):
    """A JPEG to decode with torchvision: its bytes and its (W, H) from the header."""

    data: bytes
    size: tuple[int, int]


def _plain_jpeg(src: object, max_pixels: int) -> _Jpeg | None:
    """The file's bytes and size when ``src`` (path or bytes) is a JPEG that torchvision decodes
    exactly as PIL does: 3-channel (PIL mode RGB) and no EXIF / XMP rotation; None otherwise (and on
    any doubt: :func:`load_image` then reads it and words any error)."""
    if isinstance(src, (str, os.PathLike)):
        if Path(src).suffix.lower() not in JPEG_SUFFIXES:
            return None
        try:
            data = Path(src).read_bytes()
        except OSError:
            return None
    elif isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        return None
    if data[:3] != b"\xff\xd8\xff":
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:  # the header only: nothing decoded
            w, h = img.size
            plain = img.format == "JPEG" and img.mode == "RGB" and img.getexif().get(0x0112, 1) == 1
    except Exception:  # noqa: BLE001 (load_image words it)
        return None
    return _Jpeg(data, (w, h)) if plain and w * h <= max_pixels else None


def decode_jpegs(datas: Sequence[bytes], device: Any = "cpu") -> list[Any]:
    """JPEG bytes -> H x W x 3 uint8 each (``torchvision.io.decode_jpeg``): on the CPU an ndarray
    (libjpeg-turbo, in worker threads), on CUDA a device tensor (nvjpeg, one batched call); None for
    one it cannot decode (the caller falls back to PIL)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    warnings.filterwarnings("ignore", message=_TV_DEPRECATION, category=DeprecationWarning)
    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    if torch.device(device).type == "cuda" and encoded:
        try:
            return [t.permute(1, 2, 0) for t in decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)]
        except RuntimeError:
            pass  # one bad file fails the batch: decode them one by one on the CPU

    def one(t: Any) -> np.ndarray | None:
        try:  # decode_jpeg returns a C x H x W view of H x W x C memory: the permute is contiguous
            return decode_jpeg(t, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
        except RuntimeError:
            return None
    return map_threads(one, encoded)


def load_pixels(sources: Sequence[ImageLike], device: Any = "cpu", lanczos_to: int | None = None,
                max_pixels: int = MAX_PIXELS, errors: str = "raise") -> list[Any]:
    """Images -> per image what extraction reads, without PIL where the result is the same:

    - uint8 RGB arrays and tensors (H x W x 3, tensors also 3 x H x W): :func:`rgb_view`, no copy;
    - RGB JPEG files or bytes without EXIF rotation: :func:`decode_jpegs` (pixels equal to PIL's on
      the CPU); on ``device`` (CUDA: nvjpeg) only those that need no LANCZOS resize to smaller side
      ``lanczos_to`` afterwards (None: none follows), the others on the CPU;
    - anything else: :func:`load_image`'s RGB PIL image (every mode, EXIF rotation, the same errors).

    ``errors="keep"`` puts an :class:`ImageError` in place of an image that cannot be read.
    """
    def first(src: ImageLike) -> Any:
        try:
            view = rgb_view(src, max_pixels)
            if view is not None:
                return view
            return _plain_jpeg(src, max_pixels) or load_image(src, max_pixels)
        except ImageError as err:
            if errors == "raise":
                raise
            return err
    sources = list(sources)
    reading = any(isinstance(s, (str, os.PathLike, bytes, bytearray)) for s in sources)
    out = map_threads(first, sources) if reading else [first(s) for s in sources]  # threads only to read files
    jpegs = [i for i, o in enumerate(out) if isinstance(o, _Jpeg)]
    if not jpegs:
        return out
    try:
        import torchvision.io  # noqa: F401
    except ImportError:  # torchvision is optional here: PIL reads them
        return [_pil_or_error(sources[i], o, max_pixels, errors) for i, o in enumerate(out)]

    def on_device(jpeg: _Jpeg) -> bool:
        return lanczos_to is None or min(jpeg.size) == lanczos_to
    groups = {"cpu": [i for i in jpegs if not on_device(out[i])]}
    groups[str(device)] = groups.get(str(device), []) + [i for i in jpegs if on_device(out[i])]
    for dev, idx in groups.items():
        for i, pixels in zip(idx, decode_jpegs([out[i].data for i in idx], dev)):
            out[i] = pixels if pixels is not None else _pil_or_error(sources[i], None, max_pixels, errors)
    return out


def _pil_or_error(src: ImageLike, got: Any, max_pixels: int, errors: str) -> Any:
    """``got`` unless it is a JPEG still to decode; then :func:`load_image` (or its error)."""
    if got is not None and not isinstance(got, _Jpeg):
        return got
    try:
        return load_image(src, max_pixels)
    except ImageError as err:
        if errors == "raise":
            raise
        return err

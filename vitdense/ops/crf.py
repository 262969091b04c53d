"""Fully connected CRF (Kraehenbuehl & Koltun 2011) smoothing of label maps, via ``pydensecrf2``.

The defaults are those of the official ``part_cosegmentation.py``: a Gaussian (smoothness) kernel
``sxy=3, compat=50`` plus a bilateral (appearance) kernel ``sxy=5, srgb=13, compat=15``, both with
diagonal kernels and symmetric normalisation, 10 mean-field iterations. Spatial widths are in
pixels of the image handed in, colour width in 8-bit RGB units.
"""
from __future__ import annotations

import numpy as np

from vitdense.errors import ParameterError, check_range

CRF_DEFAULTS: dict[str, float] = dict(iterations=10, gaussian_sxy=3.0, gaussian_compat=50.0,
                                      bilateral_sxy=5.0, bilateral_srgb=13.0, bilateral_compat=15.0)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ParameterError(f"image has shape {img.shape}: expected an H x W x 3 RGB array")
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and float(img.max()) <= 1.0:
            img = img * 255.0
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    return img if img.flags.writeable else img.copy()  # pydensecrf needs a writable buffer


def _check_crf_params(iterations: int, gaussian_sxy: float, gaussian_compat: float, bilateral_sxy: float,
                      bilateral_srgb: float, bilateral_compat: float) -> None:
    if not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ParameterError(f"iterations={iterations!r} is out of range: expected an integer >= 0")
    check_range("gaussian_sxy", gaussian_sxy, 0.0, None, low_inclusive=False)
    check_range("bilateral_sxy", bilateral_sxy, 0.0, None, low_inclusive=False)
    check_range("bilateral_srgb", bilateral_srgb, 0.0, None, low_inclusive=False)
    check_range("gaussian_compat", gaussian_compat, 0.0, None)
    check_range("bilateral_compat", bilateral_compat, 0.0, None)


def dense_crf(image: np.ndarray, unary: np.ndarray, *, iterations: int = 10, gaussian_sxy: float = 3.0,
              gaussian_compat: float = 50.0, bilateral_sxy: float = 5.0, bilateral_srgb: float = 13.0,
              bilateral_compat: float = 15.0, return_probs: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Mean-field inference of a dense CRF over the pixels of ``image``.

    image: H x W x 3 RGB (uint8, or float in [0, 1]). unary: C x H x W energies (lower = more likely,
    e.g. ``-log p`` or squared distances to class centroids). Returns the H x W int64 MAP labels in
    [0, C), and with ``return_probs`` also the C x H x W float32 marginals.
    """
    import pydensecrf.densecrf as dcrf

    img = _check_image(image)
    u = np.asarray(unary, dtype=np.float32)
    if u.ndim != 3 or u.shape[1:] != img.shape[:2]:
        raise ParameterError(f"unary has shape {u.shape}: expected C x {img.shape[0]} x {img.shape[1]} "
                             "(C labels over the image's pixels)")
    if u.shape[0] < 1:
        raise ParameterError("unary has C=0 labels: expected at least one")
    if not np.isfinite(u).all():
        raise ParameterError("unary contains NaN or infinite values: expected finite energies")
    _check_crf_params(iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    c, h, w = u.shape
    if c == 1:
        labels = np.zeros((h, w), np.int64)
        return (labels, np.ones((1, h, w), np.float32)) if return_probs else labels
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(u.reshape(c, -1)))
    crf.addPairwiseGaussian(sxy=(gaussian_sxy, gaussian_sxy), compat=float(gaussian_compat),
                            kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NORMALIZE_SYMMETRIC)
    crf.addPairwiseBilateral(sxy=(bilateral_sxy, bilateral_sxy), srgb=(bilateral_srgb,) * 3, rgbim=img,
                             compat=float(bilateral_compat), kernel=dcrf.DIAG_KERNEL,
                             normalization=dcrf.NORMALIZE_SYMMETRIC)
    q = np.asarray(crf.inference(int(iterations)), dtype=np.float32).reshape(c, h, w)
    labels = q.argmax(axis=0).astype(np.int64)
    return (labels, q) if return_probs else labels


def unary_from_labels(labels: np.ndarray, num_labels: int | None = None, confidence: float = 0.7) -> np.ndarray:
    """Hard label map -> C x H x W unary energies ``-log p``.

    labels: H x W ints in [0, C). Each pixel gives probability ``confidence`` to its label and spreads
    ``1 - confidence`` uniformly over the other C - 1 labels.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ParameterError(f"labels has shape {lab.shape} and dtype {lab.dtype}: expected an H x W integer map")
    if lab.size and int(lab.min()) < 0:
        raise ParameterError(f"labels has a negative value {int(lab.min())}: expected labels in [0, C)")
    c = int(lab.max()) + 1 if num_labels is None else int(num_labels)
    if c < 1 or (lab.size and int(lab.max()) >= c):
        raise ParameterError(f"num_labels={num_labels!r} is out of range: expected an integer > max label "
                             f"{int(lab.max()) if lab.size else -1}")
    check_range("confidence", confidence, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    if c == 1:
        return np.zeros((1,) + lab.shape, np.float32)
    other = (1.0 - confidence) / (c - 1)
    energy = np.full((c,) + lab.shape, -np.log(other), np.float32)
    np.put_along_axis(energy, lab[None].astype(np.int64), np.float32(-np.log(confidence)), axis=0)
    return energy


def smooth_labels(image: np.ndarray, labels: np.ndarray, num_labels: int | None = None, *,
                  confidence: float = 0.7, **crf_params: float) -> np.ndarray:
    """Smooth a hard H x W label map along the edges of ``image`` (H x W x 3) with :func:`dense_crf`.

    Returns an H x W int64 label map; ``crf_params`` override :data:`CRF_DEFAULTS`.
    """
    img = _check_image(image)
    lab = np.asarray(labels)
    if lab.shape != img.shape[:2]:
        raise ParameterError(f"labels has shape {lab.shape}: expected the image's {img.shape[:2]}")
    unknown = set(crf_params) - set(CRF_DEFAULTS)
    if unknown:
        raise ParameterError(f"unknown CRF parameter(s) {sorted(unknown)}: expected some of {sorted(CRF_DEFAULTS)}")
    params = {**CRF_DEFAULTS, **crf_params}
    params["iterations"] = int(params["iterations"])
    return dense_crf(img, unary_from_labels(lab, num_labels, confidence), **params)  # type: ignore[arg-type]

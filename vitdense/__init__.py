"""vitdense: dense descriptors from self-supervised Vision Transformers and zero-shot applications.

Implements "Deep ViT Features as Dense Visual Descriptors" (Amir, Gandelsman, Bagon, Dekel, 2021).
"""
from vitdense import moved as _moved

_moved.install()  # old module paths (vitdense.extractor, ...) keep working, deprecated

from vitdense.errors import (
                     ImageError,
                     OutOfMemoryError,
                     ParameterError,
                     UnknownModelError,
                     VitdenseError,
                     WeightsUnavailableError,
)
from vitdense.features.cache import DescriptorCache
from vitdense.features.descriptors import DescriptorSettings
from vitdense.features.extractor import FACETS, Extractor, Geometry, ImageDescriptors, log_bin
from vitdense.features.images import load_image
from vitdense.features.models import BUNDLED_MODEL, MODELS, ModelSpec, get_spec, load_model, weights_status
from vitdense.version import __version__  # noqa: E402

__all__ = [
    "BUNDLED_MODEL", "DescriptorCache", "DescriptorSettings", "Extractor", "FACETS", "Geometry", "ImageDescriptors",
    "ImageError", "MODELS", "ModelSpec", "OutOfMemoryError", "ParameterError", "UnknownModelError",
    "VitdenseError", "WeightsUnavailableError", "get_spec", "load_image", "load_model", "log_bin",
    "weights_status", "__version__",
]

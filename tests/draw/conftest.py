"""Shared fixtures of the vitdense.draw tests: small real photographs and their real descriptors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="package")
def cat(photos) -> np.ndarray:
    """chelsea at 150 x 225 (small, real)."""
    return np.asarray(Image.fromarray(photos["chelsea"]).resize((225, 150), Image.BILINEAR))


@pytest.fixture(scope="package")
def astro(photos) -> np.ndarray:
    return np.asarray(Image.fromarray(photos["astronaut"]).resize((160, 160), Image.BILINEAR))


@pytest.fixture(scope="package")
def descs(bundled_extractor, cat, astro):
    """Real descriptors (layer 11 keys, saliency, CLS) of the cat and the astronaut at load size 112."""
    return bundled_extractor.extract([cat, astro], layer=11, facet="key", load_size=112, saliency=True,
                                     include_cls=True)


@pytest.fixture(scope="package")
def wide_cat(photos) -> np.ndarray:
    """chelsea at 200 x 300 (larger than ``cat``)."""
    return np.asarray(Image.fromarray(photos["chelsea"]).resize((300, 200), Image.BILINEAR))

"""The PCA tab's handler (vitdense.web.tabs.pca): joint components of a set as RGB."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vitdense import web as webapp
from tests.web._handlers import CATS, read_zip


def test_pca_of_a_set_is_joint():
    gallery, md, zip_path = webapp.run_pca(CATS[:2], load_size=112)
    assert len(gallery) == 2
    for (img, name), p in zip(gallery, CATS[:2]):
        assert img.shape == np.asarray(Image.open(p)).shape and name == Path(p).name
        assert img.reshape(-1, 3).std(axis=0).max() > 20          # the components vary
    assert "explained variance" in md
    files = read_zip(zip_path)
    assert len([n for n in files if n.startswith("pca/")]) == 2

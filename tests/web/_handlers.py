"""What the tests of the web demo's handlers share (the handlers called directly, no server;
tests/web/test_app_client.py and tests/web/test_app_browser.py drive the served app)."""
from __future__ import annotations

import importlib.util
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from vitdense import web as webapp
from tests import REPO

ASSETS = REPO / "assets"
CAT_A, CAT_B = str(ASSETS / "pairs/cat_a.jpg"), str(ASSETS / "pairs/cat_b.jpg")
CATS = sorted(str(p) for p in (ASSETS / "cats").glob("*.jpg"))
LOAD = 140  # small load size: every test here runs on two CPU cores


def _make_assets():
    spec = importlib.util.spec_from_file_location("make_assets", ASSETS / "make_assets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: assets/make_assets.py, the ground truth: the exact mapping from pairs/cat_a.jpg to its mirrored crop
#: pairs/cat_b.jpg (cat_b_from_a), the boxes of the cat head pasted in cats/cat_2..4.jpg (face_box)
ma = _make_assets()


@pytest.fixture(scope="module", autouse=True)
def pool(bundled_extractor):
    """The handlers use the session's bundled extractor (no second copy of the model)."""
    webapp.POOL.put(bundled_extractor)
    return webapp.POOL


def shown(path: str | None) -> np.ndarray | None:
    """A picture the demo shows (a PNG file it wrote) as an array."""
    return None if path is None else np.asarray(Image.open(path).convert("RGB"))


def read_zip(path: str) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))

"""The hover payload (vitdense.web.hover) read through PointMatcher's public accessor."""
from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

from vitdense.apps.correspondences import PointMatcher
from vitdense.web.hover import BITS, matcher_payload


def unpack(entry: dict, dim: int) -> np.ndarray:
    """The page's decoding (static/hover.js decode) of one image's rows, in numpy."""
    raw = np.frombuffer(zlib.decompress(base64.b64decode(entry["q"])), np.uint8)
    half = raw.size // 2
    q = ((raw[:half].astype(np.int32) << 8) | raw[half:]).astype(np.uint16).view(np.int16)
    scale = np.frombuffer(base64.b64decode(entry["s"]), "<f4")
    return q.reshape(-1, dim).astype(np.float32) * scale[:, None]


def test_matcher_payload_sends_the_rows_the_queries_compare(bundled_extractor, photos):
    """unit_rows are the rows query() compares (its best cell is their argmax), and the payload
    carries them to within the 11-bit quantisation; the page's argmax agrees with query()."""
    cat, astro = photos["chelsea"][::2, ::2], photos["chelsea"][::2, ::-2]     # a mirrored pair
    d1, d2 = bundled_extractor.extract([cat, astro], layer=11, facet="token", load_size=112)
    m = PointMatcher(d1, d2).compact()
    a, b = m.unit_rows
    assert a.shape == d1.descs.shape and b.shape == d2.descs.shape
    np.testing.assert_allclose(a.float().norm(dim=1).numpy(), 1.0, atol=2e-3)
    payload = matcher_payload(m, run=7)
    assert payload["run"] == 7 and payload["targets"] == [1] and payload["dim"] == a.shape[1]
    rows_a, rows_b = (unpack(e, payload["dim"]) for e in payload["images"])
    assert np.abs(rows_a - a.float().numpy()).max() <= 1.0 / 2 ** (BITS - 1)
    g = d1.geometry
    centres = g.cell_centers()
    agree = []
    for y, x in centres[:: max(1, len(centres) // 60)]:
        server = m.query(float(y), float(x), refine=False).target_index
        page = int(np.argmax(rows_b @ rows_a[g.pixel_to_cell(float(y), float(x))]))
        direct = int(torch.argmax(b.float() @ a[g.pixel_to_cell(float(y), float(x))].float()))
        assert direct == server
        agree.append(page == server)
    assert np.mean(agree) >= 0.95, np.mean(agree)

"""The descriptor cache: content + parameter keys, no second network pass, disk round trip."""
from __future__ import annotations

import numpy as np
import torch

from vitdense.features.cache import DescriptorCache
from vitdense.features.extractor import Extractor


def _cached_extractor(bundled_extractor: Extractor, cache: DescriptorCache) -> Extractor:
    """The session's model with a cache of its own (the model is shared, not reloaded)."""
    ex = Extractor.__new__(Extractor)
    ex.__dict__.update(bundled_extractor.__dict__)
    ex.cache, ex.num_forward_calls = cache, 0
    return ex


def test_repeat_extraction_skips_the_network(bundled_extractor, photos):
    ex = _cached_extractor(bundled_extractor, DescriptorCache())
    kw = dict(layer=11, stride=14, load_size=112, saliency=True)
    [first] = ex.extract(photos["coffee"], **kw)
    assert ex.num_forward_calls == 1
    [again] = ex.extract(photos["coffee"].copy(), **kw)   # same content, another array
    assert ex.num_forward_calls == 1 and again is first
    ex.extract(photos["coffee"], **{**kw, "layer": 10})    # another parameter: the network runs
    assert ex.num_forward_calls == 2
    flipped = np.ascontiguousarray(photos["coffee"][:, ::-1])
    ex.extract([photos["coffee"], flipped], **kw)          # one hit, one miss in one call
    assert ex.num_forward_calls == 3
    assert ex.cache.hits == 2 and ex.cache.misses == 3


def test_disk_cache_round_trip(bundled_extractor, photos, tmp_path):
    kw = dict(layer=9, stride=14, load_size=112, saliency=True, include_cls=True, bin=True)
    ex = _cached_extractor(bundled_extractor, DescriptorCache(directory=tmp_path))
    [d] = ex.extract(photos["rocket"], **kw)
    fresh = _cached_extractor(bundled_extractor, DescriptorCache(directory=tmp_path))
    [e] = fresh.extract(photos["rocket"], **kw)
    assert fresh.num_forward_calls == 0
    for a, b in ((d.descs, e.descs), (d.saliency, e.saliency), (d.cls, e.cls)):
        torch.testing.assert_close(a.cpu(), b)
    assert e.geometry == d.geometry and e.grid == d.grid and e.params == d.params


def test_damaged_disk_entry_is_a_miss(bundled_extractor, photos, tmp_path):
    kw = dict(layer=9, stride=14, load_size=112)
    ex = _cached_extractor(bundled_extractor, DescriptorCache(directory=tmp_path))
    ex.extract(photos["rocket"], **kw)
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    fresh = _cached_extractor(bundled_extractor, DescriptorCache(directory=tmp_path))
    [d] = fresh.extract(photos["rocket"], **kw)
    assert fresh.num_forward_calls == 1 and d.descs.shape[1] == 384


def test_lru_eviction_by_bytes(bundled_extractor, photos):
    [d] = bundled_extractor.extract(photos["coffee"], layer=11, stride=14, load_size=112)
    cache = DescriptorCache(max_bytes=int(2.5 * d.num_bytes))
    for key in "abc":
        cache.put(key, d)
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") is d
    assert cache.num_bytes == 2 * d.num_bytes

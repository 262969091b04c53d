"""The store of visitors' results (vitdense.web.serving.results): byte accounting, LRU eviction
across sessions, idle expiry, release, and the compact (fp16, one normalised copy) storage of real
descriptors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitdense.apps.correspondences import PointMatcher
from vitdense.errors import ParameterError
from vitdense.web.serving.results import (
    ResultStore,
    SessionCleared,
    compact_descriptors,
    expand_descriptors,
    nbytes,
    parse_bytes,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def blob(mib: float) -> dict:
    return {"descs": torch.zeros(int(mib * 2**20) // 4), "name": "x"}


def test_nbytes_counts_each_storage_once():
    t = torch.zeros(1000)                       # 4000 bytes
    a = np.zeros((10, 10), np.uint8)            # 100 bytes
    obj = {"t": t, "view": t[:10], "again": [t, a, a[:5]], "b": b"12345"}
    assert nbytes(obj) == 4000 + 100 + 5


def test_lru_eviction_across_sessions_with_the_sentence():
    clock = Clock()
    store = ResultStore(budget_bytes=3 * 2**20, idle_s=600, clock=clock)
    k1 = store.put("visitor1", blob(1))
    k2 = store.put("visitor2", blob(1))
    clock.t = 1
    store.get(k1)                               # visitor1 used theirs: visitor2's is the oldest
    k3 = store.put("visitor3", blob(1.5))       # over budget: the least recently used goes
    assert store.used <= store.budget
    assert store.get(k1)["name"] == "x" and store.get(k3)["name"] == "x"
    with pytest.raises(SessionCleared, match="Your results were cleared to make room for other "
                                             "visitors: press Find correspondences again."):
        store.get(k2, "press Find correspondences")
    assert store.evictions == 1


def test_a_running_job_reserves_its_working_memory():
    store = ResultStore(budget_bytes=4 * 2**20, idle_s=600)
    k1 = store.put("visitor1", blob(1))
    k2 = store.put("visitor2", blob(1))
    held = store.reserve(int(2.5 * 2**20))      # 2 MiB stored + 2.5 MiB needed > 4 MiB: one result goes
    assert store.used + store.reserved <= store.budget and store.evictions == 1
    with pytest.raises(SessionCleared, match="cleared to make room"):
        store.get(k1)
    assert store.get(k2)["name"] == "x"
    k3 = store.put("visitor1", blob(1))         # the job's result, stored while the job still holds
    assert store.evictions == 2                 # its memory: visitor2's goes too
    store.unreserve(held)
    assert store.reserved == 0 and store.get(k3)["name"] == "x"
    with pytest.raises(ParameterError, match=r"needs about 5 MiB of memory while it runs, more than "
                                             r"the demo's 4 MiB .* no log-binning"):
        store.reserve(5 * 2**20)                # more than the whole budget: refused, nothing evicted
    assert store.reserved == 0 and len(store) == 1


def test_idle_expiry_release_and_replace():
    clock = Clock()
    store = ResultStore(budget_bytes=10 * 2**20, idle_s=60, clock=clock)
    k1 = store.put("a", blob(1))
    k2 = store.put("b", blob(1))
    clock.t = 30
    store.get(k2)
    clock.t = 70                                # k1 idle 70 s > 60 s; k2 idle 40 s
    assert store.sweep() == 1
    with pytest.raises(SessionCleared, match="expired after 1 minutes without use"):
        store.get(k1, "press Co-segment")
    k3 = store.put("b", blob(2), replace=k2)    # a new run in the same tab frees the old result
    assert store.used == nbytes(blob(2))
    store.put("b", blob(1), slot="pca")
    store.put("b", blob(1), slot="pca")         # one result per tab: the previous one is freed
    assert store.release_owner("b") == 2 and store.used == 0
    with pytest.raises(SessionCleared, match="no longer on the server"):
        store.get(k3)
    assert store.get(None) is None              # nothing was run yet


def test_refusals_in_one_sentence():
    store = ResultStore(budget_bytes=2**20)
    with pytest.raises(ParameterError, match="needs 2 MiB, more than the demo's 1 MiB"):
        store.put("a", blob(2))
    with pytest.raises(ParameterError, match="missing its inputs"):
        store.get(object())                     # e.g. a component object sent by a short API call
    assert parse_bytes("4GiB") == 4 * 2**30 and parse_bytes("2e9") == 2_000_000_000
    for bad in ("lots", "-1", "nan"):
        with pytest.raises(ParameterError):
            parse_bytes(bad)


def test_compact_storage_of_real_descriptors(bundled_extractor, photos):
    """fp16 and one normalised copy: a quarter of the bytes, the same clicks."""
    d1, d2 = bundled_extractor.extract([photos["chelsea"], photos["coffee"]], layer=9, load_size=112)
    full = PointMatcher(d1, d2)
    before = nbytes(full)
    small = PointMatcher(d1, d2).compact()
    after = nbytes(small)
    raw = d1.descs.numel() * 4 + d2.descs.numel() * 4
    assert before >= 2 * raw                     # raw + normalised copies, fp32
    assert after <= raw / 2 + 0.1 * raw          # one fp16 copy (+ small best-buddy arrays)
    h, w = d1.geometry.orig_size
    for y, x in [(h * 0.3, w * 0.4), (h * 0.6, w * 0.5), (h * 0.8, w * 0.2)]:
        a, b = full.query(y, x), small.query(y, x)
        # the same match, or a neighbour tied with it to fp16 precision
        assert a.similarity_map.ravel()[b.target_index] >= a.similarity - 2e-3
        assert abs(a.similarity - b.similarity) < 2e-3
    c = compact_descriptors(d1)
    assert c.descs.dtype == torch.float16 and nbytes(c.descs) == d1.descs.numel() * 2
    assert torch.allclose(expand_descriptors(c).descs, d1.descs, atol=2e-2 * float(d1.descs.abs().max()))


def test_the_old_module_names_still_import():
    """``sessions`` was the store's old name (web.serving.sessions, web.sessions): old imports keep working."""
    from vitdense.web import sessions as old_state
    from vitdense.web import state
    from vitdense.web.serving import sessions as old_store
    assert old_store.SessionStore is ResultStore and old_store.parse_bytes is parse_bytes
    assert old_state.store is state.save and old_state.load is state.load

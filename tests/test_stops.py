"""Stop points (vitdense/stops.py): an installed check stops a network pass between two blocks,
k-means between two iterations and a similarity pass between two chunks; none installed, the
same calls run to the end."""
from __future__ import annotations


import pytest
import torch

from vitdense import stops
from vitdense.apps.correspondences import best_buddies
from vitdense.ops.clustering import kmeans
from tests import REPO

CAT = REPO / "assets/pairs/cat_a.jpg"


class Stop(RuntimeError):
    pass


@pytest.fixture
def stop_after():
    """``stop_after(n)``: install a check that raises :class:`Stop` at its (n + 1)-th call; its
    calls are counted in the returned list (uninstalled afterwards)."""
    previous = stops.install(None)

    def install(n: int) -> list[int]:
        calls: list[int] = []

        def check() -> None:
            calls.append(1)
            if len(calls) > n:
                raise Stop
        stops.install(check)
        return calls
    yield install
    stops.install(previous)


def blocks_run(extractor, fn) -> int:
    """How many transformer blocks ran during ``fn()`` (which may raise :class:`Stop`)."""
    ran: list[int] = []
    hooks = [b.register_forward_hook(lambda *a: ran.append(1)) for b in extractor.model.blocks]
    try:
        fn()
    except Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    return len(ran)


def test_a_network_pass_stops_between_two_blocks(bundled_extractor, stop_after):
    run = lambda: bundled_extractor.extract([CAT], layer=11, load_size=112)  # noqa: E731
    assert blocks_run(bundled_extractor, run) == 12                        # nothing installed
    stop_after(3)
    assert blocks_run(bundled_extractor, run) == 3


def test_kmeans_and_best_buddies_stop_at_their_loops(stop_after):
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    calls = stop_after(10 ** 9)
    kmeans(x, 5, n_init=1)
    best_buddies(x, x.flip(0), chunk=100)
    assert len(calls) > 20          # seeding steps and iterations, and 20 chunks
    stop_after(2)
    with pytest.raises(Stop):
        kmeans(x, 5, n_init=1)
    stop_after(0)
    with pytest.raises(Stop):
        best_buddies(x, x, chunk=100)

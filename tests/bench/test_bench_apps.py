"""bench/bench_apps.py's stage split: each stage's functions are the ones the applications call.

The bench times a stage by wrapping module functions under the name their caller looks up; after a
function moves (as stage 1 did, to ``vitdense.ops.foreground``), the old name is never called and
its time silently falls into "other". Here both applications run on real photos (bundled model,
CPU refinement) under the bench's own ``StageTimer``.
"""
from __future__ import annotations

import sys

import pytest
from PIL import Image

from tests import REPO

sys.path.insert(0, str(REPO / "bench"))
from bench_apps import STAGES, StageTimer  # noqa: E402

from vitdense.apps.cosegmentation import cosegment  # noqa: E402
from vitdense.apps.parts import part_cosegment  # noqa: E402

#: what the CPU path must call, per application (the torch CRF and crop augmentations are off here)
EXPECTED = {
    "cosegmentation": ["vitdense.apps.cosegmentation.extract_with_saliency", "vitdense.ops.foreground.elbow_kmeans",
                       "vitdense.ops.foreground.count_votes", "vitdense.apps.cosegmentation.grabcut_refine"],
    "part_cosegmentation": ["vitdense.apps.parts.extract_with_saliency", "vitdense.ops.foreground.elbow_kmeans",
                            "vitdense.apps.parts.kmeans", "vitdense.ops.foreground.count_votes",
                            "vitdense.apps.parts.part_unaries"],
}


@pytest.mark.parametrize("app", sorted(EXPECTED))
def test_every_stage_of_the_cpu_path_is_timed(app, bundled_extractor, photos):
    images = [Image.fromarray(photos[k]).resize((160, 120)) for k in ("chelsea", "astronaut", "coffee")]
    run = cosegment if app == "cosegmentation" else part_cosegment
    timer = StageTimer("cpu")
    with timer.patch(STAGES[app]):
        run(bundled_extractor, images, load_size=112, refiner="cpu")
    assert timer.missing == []
    assert [name for name in EXPECTED[app] if not timer.called.get(name)] == []
    for stage in ("extraction", "best buddies / clustering", "selection"):
        assert timer.seconds[stage] > 0, stage

"""The knob controls (vitdense.web.controls): every tab of the page starts at the defaults table."""
from __future__ import annotations

from vitdense import web as webapp
from tests.web import _handlers

#: the module-scoped autouse fixture (as in tests/web/tabs/conftest.py): the session's bundled extractor
pool = _handlers.pool


def test_every_tab_starts_at_the_defaults_table():
    """Each application knob of the page starts at the defaults table's value for the page's model
    (vitdense/defaults.py), or at its function's default where the table has none; never empty
    (the Video tab once started at its sliders' minimum: no "video" entry in the table)."""
    from vitdense.apps import get_app
    from vitdense.defaults import task_defaults
    from vitdense.features.models import BUNDLED_MODEL
    demo = webapp.build_demo(online=False)
    knobs = [b for b in demo.blocks.values() if getattr(b, "knob", None)]
    seen = {b.knob[0] for b in knobs}
    assert {"correspondences", "cosegmentation", "parts", "similarity", "video"} <= seen, seen
    for block in knobs:
        app = get_app(block.knob[0])
        name = block.knob[1]
        table = task_defaults(app.task, BUNDLED_MODEL)
        expected = table[name] if name in table else app.default(name, BUNDLED_MODEL)
        assert block.value is not None and block.value == expected, (block.knob, block.value, expected)
    video = {b.knob[1]: b.value for b in knobs if b.knob[0] == "video"}
    parts = {b.knob[1]: b.value for b in knobs if b.knob[0] == "parts"}
    assert {k: video[k] for k in ("num_parts", "thresh", "elbow", "votes_percentage")} == \
        {k: parts[k] for k in ("num_parts", "thresh", "elbow", "votes_percentage")}

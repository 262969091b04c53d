"""The page (vitdense.web.page): the layout builds offline with stable API names."""
from __future__ import annotations

from vitdense import web as webapp
from tests.web import _handlers

#: the module-scoped autouse fixture (as in tests/web/tabs/conftest.py): the session's bundled extractor
pool = _handlers.pool


def test_layout_builds_with_stable_api_names():
    demo = webapp.build_demo(online=False)
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert {"correspondences", "match_point", "clear_points", "cosegmentation", "coseg_maps",
            "part_cosegmentation", "recluster_parts", "part_view", "similarity", "similarity_point",
            "pca"} <= names
    from vitdense.apps import APPS
    assert {n for app in APPS.values() for n in app.api_names} <= names     # the registry's names

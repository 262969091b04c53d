"""The demo's tabs, in page order: each module has ``ID``, ``TITLE``, ``APP`` (its registry entry),
its handlers, its session type and ``build(page)`` (layout and wiring inside its ``gr.Tab``)."""
from __future__ import annotations

from types import ModuleType

from . import correspondences, cosegmentation, parts, pca, similarity, video

TABS: list[ModuleType] = [correspondences, cosegmentation, parts, similarity, pca, video]

"""Old module paths, kept working (deprecated): ``import vitdense.extractor`` still gives the module
that now lives at ``vitdense.features.extractor`` (the same module object, so attributes set on
one are seen through the other) and warns once with a ``DeprecationWarning``.

One row per moved module; docs/ARCHITECTURE.md says why each lives where it does. The packages
``vitdense.apps``, ``vitdense.scale``, ``vitdense.cli`` and ``vitdense.draw`` keep their old
names and re-export what they did.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: deprecated path -> current path
MOVED: dict[str, str] = {
    "vitdense.descriptors": "vitdense.features.descriptors",
    "vitdense.images": "vitdense.features.images",
    "vitdense.models": "vitdense.features.models",
    "vitdense.bundled": "vitdense.features.bundled",
    "vitdense.rope": "vitdense.features.rope",
    "vitdense.extractor": "vitdense.features.extractor",
    "vitdense.cache": "vitdense.features.cache",
    "vitdense.upsample": "vitdense.features.upsample",
    "vitdense.clustering": "vitdense.ops.clustering",
    "vitdense.voting": "vitdense.ops.voting",
    "vitdense.crf": "vitdense.ops.crf",
    "vitdense.foreground": "vitdense.ops.foreground",
    "vitdense.registry": "vitdense.apps.registry",
    "vitdense.cosegmentation": "vitdense.apps.cosegmentation",
    "vitdense.part_cosegmentation": "vitdense.apps.parts",
    "vitdense.correspondences": "vitdense.apps.correspondences",
    "vitdense.pca": "vitdense.apps.pca",
    "vitdense.similarity": "vitdense.apps.similarity",
    "vitdense.video": "vitdense.apps.video",
    "vitdense.transfer": "vitdense.apps.transfer",
    "vitdense.benchmarks": "vitdense.eval.datasets",
    "vitdense.metrics": "vitdense.eval.metrics",
    "vitdense.evaluation": "vitdense.eval.runner",
    "vitdense.store": "vitdense.scale.store",
    "vitdense.sessions": "vitdense.web.serving.sessions",
    "vitdense.workbudget": "vitdense.web.serving.workbudget",
    "vitdense.validate": "vitdense.web.serving.validate",
    "vitdense.tempfiles": "vitdense.web.serving.tempfiles",
    "vitdense.zerogpu": "vitdense.web.serving.zerogpu",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves a deprecated path to the module at its current path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}; the old path will be removed",
                      DeprecationWarning, stacklevel=3)
        module = importlib.import_module(MOVED[spec.name])
        self._spec = module.__spec__   # the import system overwrites __spec__; exec_module restores it
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())

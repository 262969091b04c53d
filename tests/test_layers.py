"""The package's layers (docs/ARCHITECTURE.md): every module imports only from its own layer or
below, the import graph has no cycle, and no module imports another module's private names. And
the suite mirrors the package: vitdense/ops/clustering.py is tested in tests/ops/test_clustering.py.

Imports are read from the source (every ``import`` statement, also inside functions and under
``TYPE_CHECKING``), so a lazy import cannot hide a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import REPO

PACKAGE = REPO / "vitdense"

#: layer of every module, bottom (0) to top, by dotted path prefix (the longest prefix wins); a new
#: top-level module must be placed here, a module inside a layer's package takes the package's layer
LAYERS: dict[str, int] = {
    # 0: the base vocabulary: errors, the defaults table, writing files, the version, moved paths,
    # stop points
    "errors": 0, "defaults": 0, "export": 0, "version": 0, "moved": 0, "stops": 0,
    # 1: model and features (images in, descriptors out)
    "features": 1,
    # 2: shared numerics of the applications
    "ops": 2,
    # 3: drawing results (arrays and results read by attribute: no import of the applications)
    "draw": 3,
    # 4: the applications and their registry
    "apps": 4,
    # 5: evaluation on data sets
    "eval": 5,
    # 6: at scale (Ray Data jobs, the stored descriptor data set)
    "scale": 6,
    # 7: the public demo's Gradio-free guards
    "web.serving": 7,
    # 8: interfaces
    "cli": 8, "web": 8, "__main__": 8, "__init__": 8,
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package).with_suffix("")
    return ".".join(rel.parts)


def layer_of(name: str) -> int:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    pytest.fail(f"vitdense.{name} has no layer: add it to LAYERS in tests/test_layers.py "
                "and to docs/ARCHITECTURE.md")


def package_imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, list[str]]]:
    """(imported vitdense module, imported names) of every import statement of ``path``."""
    package = module_name(path, root).split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "vitdense":
                target = node.module[len("vitdense."):] if node.module != "vitdense" else ""
            else:
                continue
            names = [a.name for a in node.names]
            if not target:   # "from . import draw" / "from vitdense import webapp"
                out.extend((n, []) for n in names)
            else:
                # "from .web import common" imports the module web.common
                for n in names:
                    sub = root / Path(*target.split("."), n)
                    if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                        out.append((f"{target}.{n}", []))
                    else:
                        out.append((target, [n]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("vitdense."):
                    out.append((a.name[len("vitdense."):], []))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root).removesuffix(".__init__")
        g[name] = {t for t, _ in package_imports(path, root) if t and t != name}
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``g`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}   # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if nxt not in g:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and node != "__init__" and (found := visit(node, [node])):
            return found
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_go_down_or_sideways_only(path):
    name = module_name(path)
    own = layer_of(name)
    for target, _ in package_imports(path):
        if target:
            assert layer_of(target) <= own, (f"vitdense.{name} (layer {own}) imports vitdense.{target} "
                                             f"(layer {layer_of(target)}): an upward import")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_private_names_across_modules(path):
    name = module_name(path)
    for target, names in package_imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"vitdense.{name} imports private {private} from vitdense.{target}"


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("path", sorted((PACKAGE / "web" / "serving").rglob("*.py")),
                         ids=lambda p: module_name(p))
def test_serving_guards_do_not_import_gradio(path):
    """web/serving holds the demo's guards apart from the framework: no Gradio import there."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert not any(n.split(".")[0] == "gradio" for n in names), f"{module_name(path)} imports Gradio"


def test_serving_guards_import_without_gradio():
    """Importing every web/serving module (a GPU machine, a Space build step) never loads Gradio,
    also not through vitdense/web/__init__.py."""
    import subprocess
    import sys
    mods = ", ".join(f"vitdense.web.serving.{p.stem}" for p in sorted((PACKAGE / "web" / "serving").glob("[!_]*.py")))
    code = f"import sys, {mods}; assert 'gradio' not in sys.modules, 'gradio imported'"
    run = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above can fail: a lazy cycle and an upward import in a scratch package are found."""
    pkg = tmp_path / "vitdense"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("from .features import _X\n")       # layer 0 -> layer 1, private
    (pkg / "features.py").write_text("def f():\n    from vitdense.errors import Y\n")
    assert package_imports(pkg / "errors.py", pkg) == [("features", ["_X"])]
    assert layer_of("features") > layer_of("errors")
    assert find_cycle(graph(pkg)) == ["errors", "features", "errors"]


# ------------------------------------------------------------------------ the suite mirrors the package
TESTS = REPO / "tests"

#: modules without a test file of their own: the test file that exercises them, and what in it shows
#: that ("": it imports the module); everything else has tests/<package>/test_<module>.py
TESTED_IN: dict[str, tuple[str, str]] = {
    "__main__": ("tests/cli/test_main.py", '"-m", "vitdense"'),     # `python -m vitdense` as a subprocess
    "defaults": ("tests/apps/test_knobs.py", ""),                   # the table every knob resolves from
    "errors": ("tests/features/test_images.py", ""),                # one-line errors, raised by every layer
    "export": ("tests/apps/test_registry.py", ""),                  # exports derived from the registry
    "version": ("tests/scale/test_jobs.py", ""),                    # the manifest records it
    "apps.entries": ("tests/apps/test_registry.py", "APPS"),        # the entries, checked against the code
    "apps.sets": ("tests/apps/test_saliency.py", ""),               # an application over sets of files
    "web.apptab": ("tests/web/test_app_client.py", ""),             # a tab's shared wiring, through a client
    "web.gate": ("tests/web/test_guard.py", ""),
    "web.local_server": ("tests/web/test_app_client.py", ""),
    "web.patches": ("tests/web/test_guard.py", ""),
    "web.sessions": ("tests/web/serving/test_results.py", ""),      # the old name of web.state
    "web.state": ("tests/web/serving/test_results.py", ""),
    "web.status": ("tests/web/test_guard.py", ""),
    "web.zips": ("tests/web/test_guard.py", ""),
    "web.serving.limits": ("tests/web/test_guard.py", ""),
    "web.serving.sessions": ("tests/web/serving/test_results.py", ""),  # the old name of web.serving.results
}

#: test files that mirror no single module, and what they test
ACROSS: dict[str, str] = {
    "tests/test_layers.py": "the package's layers and this layout",
    "tests/test_device.py": "the CUDA test layer: the library on VITDENSE_TEST_DEVICE",
    "tests/apps/test_coseg_sets.py": "co-segmentation and parts on bench/data/coseg_sets",
    "tests/web/test_app_client.py": "the served demo (app.py) through gradio_client",
    "tests/web/test_app_hardening.py": "the served demo under hostile use",
    "tests/web/test_app_browser.py": "the served demo in headless Chromium",
    "tests/web/test_app_browser_legible.py": "legible pictures in headless Chromium",
}


def mirror_of(module: str) -> Path:
    """tests/<package>/test_<module>.py of a dotted module name (``ops.clustering``)."""
    *package, name = module.split(".")
    return TESTS.joinpath(*package, f"test_{name}.py")


def names_module(text: str, module: str) -> bool:
    """Whether a test file's source imports or names ``vitdense.<module>``."""
    package, _, name = f"vitdense.{module}".rpartition(".")
    return (f"vitdense.{module}" in text
            or any(name in [a.name for a in node.names] for node in ast.walk(ast.parse(text))
                   if isinstance(node, ast.ImportFrom) and node.module == package))


def test_every_module_has_its_test_file():
    missing = [name for path in MODULES if path.stem != "__init__"
               if not mirror_of(name := module_name(path)).is_file() and name not in TESTED_IN]
    assert not missing, ("modules without tests/<package>/test_<module>.py (write one, or name the "
                         f"file that tests them in TESTED_IN): {missing}")


@pytest.mark.parametrize("module", sorted(TESTED_IN))
def test_a_module_tested_elsewhere_is_named_there(module):
    assert (PACKAGE.joinpath(*module.split(".")).with_suffix(".py")).is_file(), f"vitdense.{module} is gone"
    assert not mirror_of(module).is_file(), f"vitdense.{module} has its own test file now: drop it from TESTED_IN"
    path, evidence = TESTED_IN[module]
    text = (REPO / path).read_text()
    assert (evidence in text) if evidence else names_module(text, module), \
        f"{path} does not {'contain ' + evidence if evidence else 'import vitdense.' + module}"


def test_every_test_file_mirrors_a_module():
    """tests/<package>/test_<module>[_<aspect>].py: a module (or a bench script) of that name exists."""
    stray = []
    for path in sorted(TESTS.rglob("test_*.py")):
        rel = path.relative_to(REPO).as_posix()
        package, stem = path.parent.relative_to(TESTS).parts, path.stem[len("test_"):]
        if rel in ACROSS:
            continue
        if package[:1] == ("bench",):
            found = any((REPO / "bench" / f"{stem}{ext}").is_file() for ext in (".py", ".sh"))
        else:
            words = stem.split("_")
            found = any(PACKAGE.joinpath(*package, "_".join(words[:n]) + ".py").is_file()
                        for n in range(len(words), 0, -1))
        if not found:
            stray.append(rel)
    assert not stray, f"test files that mirror no module (rename them, or say why in ACROSS): {stray}"


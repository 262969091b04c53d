"""Running a registered application on files: sets (folders), pairs, clips, two images.

The library side of ``vitdense COMMAND ROOT --out OUT`` and of its Ray workers: the options of one
run are resolved once (:func:`resolve_options` -> :class:`RunOptions`, from the defaults table for
the model) and passed down; :func:`run_app_set` reads one set, runs the application and writes its
export (the files of the web demo's zip). :class:`SetJob` is the same as a picklable task, so a Ray
worker calls the library, never the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vitdense.apps.registry import App, Inputs, get_app
from vitdense.errors import ImageError, ParameterError, VitdenseError
from vitdense.export import unique_stems, write_entries, write_json
from vitdense.features.images import list_images, load_image
from vitdense.ops.crf import CRF_DEFAULTS

STAGES = ("run", "read", "export")


@dataclass(frozen=True)
class RunOptions:
    """Every option of one application run, resolved once for one model: per stage (``run``:
    descriptor settings and the application's knobs; ``read``; ``export``), plus what the
    application's ``prepare`` reads (``App.prepare_options``, e.g. a query point)."""

    app_id: str
    model: str | None
    stages: dict[str, dict[str, Any]]
    prepare: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, stage: str) -> dict[str, Any]:
        return self.stages[stage]

    def all_knobs(self) -> dict[str, Any]:
        """Every stage's options in one dict (the ``params.json`` of a run)."""
        return {k: v for stage in STAGES for k, v in self.stages[stage].items()}


def resolve_options(app: App, given: Mapping[str, Any], model: str | None) -> RunOptions:
    """``given`` options (by name; missing or None ones take the application's default for
    ``model``) -> :class:`RunOptions`. A single ``layer`` in a list becomes an int; ``crf_<name>``
    options gather into ``crf_params``."""
    stages: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        out = {}
        for name, default in app.defaults(model, stage).items():
            value = given.get(name, default)
            if name == "layer" and isinstance(value, list):
                value = value[0] if len(value) == 1 else value
            if name == "crf_params":
                value = {k: given["crf_" + k] for k in CRF_DEFAULTS if "crf_" + k in given} or None
            out[name] = value
        stages[stage] = out
    if "hierarchy" in given and "hierarchy" not in app.descriptor_knobs:
        raise ParameterError(f"--hierarchy is not used by `vitdense {app.id}` (it has no log-binning levels)")
    return RunOptions(app.id, model, stages, {k: given.get(k) for k in app.prepare_options})


def find_sets(root: str | Path, out: str | Path | None = None) -> list[tuple[str, Path]]:
    """ROOT -> [(set name, folder)]: ROOT itself when it holds images, else its sub-folders (sorted;
    hidden ones and the output folder skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder (ROOT must hold one folder per set, or the images of one set)")
    if list_images(root):
        return [(root.resolve().name or "set", root)]
    out_dir = Path(out).resolve() if out is not None else None
    subs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and (out_dir is None or d.resolve() != out_dir))
    if not subs:
        raise ImageError(f"{root}: no images and no set folders inside")
    return [(d.name, d) for d in subs]


def read_folder(app: App, folder: Path) -> Inputs:
    """A set (or pair) folder -> its images (H x W x 3 uint8, file order) and file names."""
    paths = list_images(folder)
    if not paths:
        raise ImageError(f"{folder}: no images in this set folder")
    if app.input == "pair" and len(paths) != 2:
        raise ParameterError(f"{folder.name}: a pair folder must hold exactly 2 images, found {len(paths)}")
    return Inputs([np.asarray(load_image(p)) for p in paths], [p.name for p in paths], source=str(folder))


def read_clip(app: App, path: Path, options: dict) -> Inputs:
    """A video file or a folder of frames -> its frames, with the frame rate as a run option."""
    frames, fps = app.reader(path, **options)
    return Inputs(frames, [f"frame_{i}" for i in range(len(frames))], {"fps": fps}, source=str(path))


def read_images(paths: tuple[str, str | None]) -> Inputs:
    """Image A and optional image B (the ``images`` input kind; B defaults to A)."""
    a, b = paths
    images = [np.asarray(load_image(a)), None if b is None else np.asarray(load_image(b))]
    return Inputs(images, [a, b or a])


def read_inputs(app: App, source: Any, options: RunOptions) -> Inputs:
    """The inputs of one set of ``app`` from ``source`` (a folder, a clip path, or (A, B) paths)."""
    if app.input == "clip":
        return read_clip(app, source, options["read"])
    if app.input == "images":
        return read_images(source)
    return read_folder(app, source)


def run_app_set(app: App, ex, options: RunOptions, name: str, source: Any, out: Path | None) -> str:
    """One set (pair, clip; or the two images) of ``app``: read, run, write its export into ``out``
    (nothing written when None); returns the one-line summary."""
    inputs = read_inputs(app, source, options)
    extra = dict(inputs.extra)
    if app.prepare is not None:
        extra.update(app.prepare(inputs, options.prepare))
    images = inputs.images
    if app.input in ("pair", "images"):
        result = app.run(ex, *images, **extra, **options["run"])
        inputs.images = [im if im is not None else images[0] for im in images]
    else:
        result = app.run(ex, images, **extra, **options["run"])
    if out is not None:
        info = {"model": ex.model_name, "patch_size": ex.spec.patch_size}
        entries = app.export(result, inputs, unique_stems(inputs.names), meta={"set": name, **info} if name else info,
                             **options["export"])
        entries["params.json"] = {"task": app.task, "model": ex.model_name, **options.all_knobs()}
        write_entries(entries, out)
    return app.describe(result)


def guarded(process: Callable[[str, Any, Path], str], name: str, source: Any, out: Path) -> tuple[bool, str]:
    """``process(name, source, out)`` -> (True, its summary line), or (False, the one-line error) when
    it raises a :class:`VitdenseError` or an OSError (one failed set never stops the others)."""
    try:
        return True, process(name, source, out)
    except (VitdenseError, OSError) as err:
        return False, str(err).splitlines()[0] if str(err) else type(err).__name__


@dataclass(frozen=True)
class SetJob:
    """One application over sets, as a picklable task: ``job(ex, name, source, out) -> (ok, text)``
    (what each Ray worker of :func:`vitdense.scale.jobs.map_sets` calls with its own extractor)."""

    options: RunOptions

    def __call__(self, ex, name: str, source: Any, out: Path | None) -> tuple[bool, str]:
        app = get_app(self.options.app_id)
        return guarded(lambda n, s, o: run_app_set(app, ex, self.options, n, s, o), name, source, out)


def write_summary(out: str | Path, command: str, status: dict[str, str]) -> list[str]:
    """OUT/summary.json: ``{"command", "sets": {name: "ok" | "failed: ..."}, "failed": [...]}``;
    returns the failed set names."""
    failed = [n for n, s in status.items() if s != "ok"]
    write_json({"command": command, "sets": status, "failed": failed}, Path(out) / "summary.json")
    return failed

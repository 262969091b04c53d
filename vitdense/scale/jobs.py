"""Beyond one process: data-set extraction and per-set jobs on Ray Data (optional dependency).

:func:`extract_dataset` streams image files through ``ray.data``: a read stage (bytes + content
hash, images already stored with the same parameters dropped) feeds a pool of stateful actors that
each load the :class:`~vitdense.features.extractor.Extractor` once, extract a shard of images (equal sizes
batched) and write it themselves (:mod:`vitdense.scale.store`), one shard written while the next is
extracted (two calls of an actor at once, taking turns on the device). :func:`map_sets` runs one task per image
set (co-segmentation, parts) on such a pool. The reader, :func:`vitdense.scale.store.open_descriptors`,
needs no Ray.

Resources: every worker asks for ``cpus_per_worker`` CPUs (default: what is left after one CPU for
the read tasks, shared among the workers, at most 1), so on a small machine the read stage is never
starved by the actors (2 actors of 1 CPU each plus a read task deadlock a 2-core machine), and for
``num_gpus_per_worker`` GPUs.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from vitdense.errors import ParameterError, VitdenseError, check_int
from vitdense.features.descriptors import DescriptorSettings
from vitdense.features.images import IMAGE_SUFFIXES
from vitdense.scale.store import (
    STORE_DTYPES,
    content_hash,
    host_descriptors,
    load_pca,
    params_key,
    read_manifest,
    save_pca,
    vitdense_version,
    write_shard,
)

#: calls of one extraction actor at once (threads): one writes its shard while the next extracts
CALLS_PER_WORKER = 2
INSTALL_HINT = 'pip install "vitdense[scale]" (or pip install -r requirements-scale.txt)'


class RayUnavailableError(VitdenseError, RuntimeError):
    """Ray is not installed; the message names the install command."""


def require_ray():
    """The ``ray`` module with ``ray.data``, or :class:`RayUnavailableError`."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise RayUnavailableError(f"this command runs on Ray, which is not installed: {INSTALL_HINT}") from err
    return ray


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                object_store_memory: int | None = None, progress: bool = False) -> Iterator[Any]:
    """Use the running Ray session, or start one (``address`` None: local; ``"auto"``: the running
    cluster of ``ray start --head``; ``"ray://host:10001"``: a remote cluster) and shut it down after.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, num_cpus=num_cpus,
                 object_store_memory=object_store_memory, include_dashboard=False,
                 log_to_driver=False, logging_level="WARNING")
        started = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _user_error(err: BaseException) -> VitdenseError | None:
    """The :class:`VitdenseError` a worker raised, found through Ray's exception wrappers."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, VitdenseError):
            return e
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None


@contextmanager
def _user_errors() -> Iterator[None]:
    """Re-raise a worker's one-line user error as itself instead of Ray's wrapped traceback."""
    try:
        yield
    except VitdenseError:
        raise
    except Exception as err:  # Ray wraps worker exceptions in its own types
        user = _user_error(err)
        if user is None:
            raise
        raise user.with_traceback(None) from None


def worker_resources(ray, num_workers: int, num_gpus_per_worker: float,
                     cpus_per_worker: float | None) -> dict:
    """``num_cpus`` / ``num_gpus`` of each actor (see the module docstring)."""
    if cpus_per_worker is None:
        total = float(ray.cluster_resources().get("CPU", 1))
        cpus_per_worker = max(0.1, min(1.0, (total - 1) / num_workers))
    return {"num_cpus": cpus_per_worker, "num_gpus": num_gpus_per_worker}


def default_threads(num_workers: int) -> int:
    """Torch threads per worker: this machine's cores shared among the workers."""
    return max(1, (os.cpu_count() or 1) // num_workers)


def _make_extractor(options: dict, threads: int):
    import torch

    from vitdense.features.extractor import Extractor
    torch.set_num_threads(threads)
    return Extractor(options["model"], device=options.get("device", "auto"), dtype=options.get("dtype"),
                     checkpoint=options.get("checkpoint"))


# -- sources --------------------------------------------------------------------------------------
def list_source(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict]:
    """A folder (searched recursively for image suffixes), a glob pattern or a list of paths ->
    rows ``{"path", "relpath"}`` in sorted order (``relpath`` relative to the folder, else None)."""
    import glob
    if isinstance(source, (str, os.PathLike)):
        src = Path(source)
        if src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(src).parts))
            rows = [{"path": str(p), "relpath": p.relative_to(src).as_posix()} for p in files]
        elif any(c in str(source) for c in "*?["):
            rows = [{"path": p, "relpath": None} for p in sorted(glob.glob(str(source), recursive=True))
                    if Path(p).is_file()]
        elif src.is_file():
            rows = [{"path": str(src), "relpath": None}]
        else:
            raise ParameterError(f"{source}: no such folder, file or glob match")
    else:
        rows = [{"path": os.fspath(p), "relpath": None} for p in source]
    if not rows:
        raise ParameterError(f"{source}: no image files found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    return rows


def _read_and_hash(batch: dict[str, np.ndarray], done: frozenset) -> dict[str, np.ndarray]:
    """Read stage: bytes (or the read error) and content hash of each file; drops stored ones."""
    out: dict[str, list] = {"path": [], "relpath": [], "bytes": [], "hash": [], "error": []}
    has_bytes = "bytes" in batch
    for i, path in enumerate(batch["path"]):
        path = str(path)
        error = ""
        if has_bytes:
            data = bytes(batch["bytes"][i])
        else:
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                data, error = b"", f"cannot read the file ({err.strerror or type(err).__name__})"
        digest = content_hash(data) if not error else ""
        if (path, digest) in done:
            continue
        rel = batch["relpath"][i] if "relpath" in batch else None
        out["path"].append(path)
        out["relpath"].append("" if rel is None else str(rel))
        out["bytes"].append(data)
        out["hash"].append(digest)
        out["error"].append(error)
    return {k: np.array(v, dtype=object) for k, v in out.items()}


# -- extraction -----------------------------------------------------------------------------------
class _ExtractWorker:
    """One Ray actor: an Extractor loaded once; each call extracts and writes one shard.

    Ray runs up to :data:`CALLS_PER_WORKER` calls of an actor at once, in threads: decoding,
    extraction and the copy off the device take turns (``device_turn``), so one call's shard is
    serialised and written to disk while the next call's images are on the device.
    """

    def __init__(self, out_dir: str, run_id: str, options: dict, extract_kwargs: dict, threads: int,
                 store_dtype: str, pca: dict | None, job: dict, extractor: Any = None) -> None:
        # ``extractor``: one already made (benchmarks: random weights); else one from ``options``
        self.ex, self.error = (extractor, None) if extractor is not None else _guarded(_make_extractor, options,
                                                                                        threads)
        self.out_dir, self.kw, self.store_dtype, self.pca, self.job = out_dir, extract_kwargs, store_dtype, pca, job
        self.prefix = f"{run_id}-{uuid.uuid4().hex[:6]}"
        self.seq = 0
        self.device_turn = threading.Lock()
        self.pca_on: dict[str, tuple] = {}  # device -> the PCA's mean and components there

    def _extract(self, images: list) -> list:
        """Batched when every image is fine; image by image to isolate one that is not."""
        from vitdense.errors import ImageError
        try:
            return self.ex.extract(images, **self.kw)
        except ImageError:
            out = []
            for im in images:
                try:
                    out.extend(self.ex.extract(im, **self.kw))
                except ImageError as err:
                    out.append(err)
            return out

    def _pca_on(self, device: Any) -> tuple[Any, Any]:
        """The PCA's mean and components on ``device``, copied there once (a copy per image would be
        a host sync per image)."""
        key = str(device)
        if key not in self.pca_on:
            self.pca_on[key] = tuple(self.pca[k].to(device) for k in ("mean", "components"))
        return self.pca_on[key]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records, error = (None, self.error) if self.error else _guarded(self._shard, batch)
        if error:
            records = [{"status": "error", **error}]
        return {"record": np.array([json.dumps(r, default=str) for r in records], dtype=object)}

    def _shard(self, batch: dict[str, np.ndarray]) -> list[dict]:
        base = {"params_key": self.job["params_key"], "model": self.ex.model_name,
                "vitdense_version": self.job["version"]}
        rows = [{"path": str(p), "relpath": str(r) or None, "hash": str(h), **base}
                for p, r, h in zip(batch["path"], batch["relpath"], batch["hash"])]
        images, good, failures = [], [], []
        with self.device_turn:  # the device and the host's decoding threads: one call at a time
            decoded = _decode(self.ex, list(zip(batch["bytes"], batch["error"])), self.kw)
            for row, (image, reason) in zip(rows, decoded):
                if reason is not None:
                    failures.append({**row, "reason": reason, "params": self.job["params"]})
                    continue
                images.append(image)
                good.append(row)
            descs, stored = [], []
            for row, d in zip(good, self._extract(images) if images else []):
                if isinstance(d, Exception):
                    failures.append({**row, "reason": _reason(d), "params": self.job["params"]})
                    continue
                if self.pca is not None:
                    mean, comps = self._pca_on(d.descs.device)
                    d.descs = (d.descs.float() - mean) @ comps
                d.params = {**d.params, **self.job["store"]}
                descs.append(d)
                stored.append({**row, "params": d.params})
            # off the device here: a copy made later would wait for the next call's kernels too
            descs = host_descriptors(descs, self.store_dtype)
            name = f"{self.prefix}-{self.seq:05d}"
            self.seq += 1
        return write_shard(self.out_dir, name, descs, stored, failures, self.store_dtype)


def _decode(ex: Any, items: list[tuple[bytes, str]], kw: dict) -> list[tuple[Any, str | None]]:
    """(file bytes, read error) pairs -> (pixels, None) or (None, the reason it failed) each: RGB JPEGs
    by torchvision (on the extractor's device when no LANCZOS resize follows), others by PIL."""
    ok = [i for i, (_, error) in enumerate(items) if not error]
    pixels = ex.load_pixels([bytes(items[i][0]) for i in ok], kw.get("load_size", 224),
                            kw.get("resize", "lanczos"), errors="keep")
    out: list[tuple[Any, str | None]] = [(None, str(error)) for _, error in items]
    for i, p in zip(ok, pixels):
        out[i] = (None, _reason(p)) if isinstance(p, Exception) else (p, None)
    return out


def _guarded(fn: Callable, *args) -> tuple[Any, dict | None]:
    """``(fn(*args), None)``, or ``(None, {"error", "reason"})`` when it raises a user error: the
    driver re-raises it as one line (Ray would wrap it in a traceback of its own)."""
    try:
        return fn(*args), None
    except VitdenseError as err:
        return None, {"error": type(err).__name__, "reason": str(err)}


def _raise_worker_error(error: str, reason: str) -> None:
    from vitdense import errors
    kind = getattr(errors, error, None)
    raise (kind if isinstance(kind, type) and issubclass(kind, VitdenseError) else VitdenseError)(reason)


def _reason(err: Exception) -> str:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    return msg[len("bytes: "):] if msg.startswith("bytes: ") else msg


@dataclass
class ExtractSummary:
    """What :func:`extract_dataset` did."""

    out_dir: Path
    num_listed: int | None        # images in the source (None for a Ray Dataset source)
    num_extracted: int            # stored by this run
    num_skipped: int | None       # already stored with the same content hash and parameters
    failed: dict[str, str]        # path -> reason (this run)
    shards: list[str]             # shards written by this run
    seconds: float
    params: dict = field(default_factory=dict)


def _fit_pca(rows: list[dict], pca_dim: int, sample: int, options: dict, extract_kwargs: dict,
             max_rows: int = 200_000, seed: int = 0):
    """Exact PCA (eigh of the D x D covariance) of the descriptors of ``sample`` evenly spaced
    images, on at most ``max_rows`` of their descriptors; in this process."""
    import torch

    from vitdense.errors import ImageError
    from vitdense.features.images import load_image
    ex = _make_extractor(options, default_threads(1))
    picks = np.unique(np.linspace(0, len(rows) - 1, min(sample, len(rows))).round().astype(int))
    descs = []
    for i in picks:
        try:
            descs.append(ex.extract(load_image(rows[i]["path"]), **extract_kwargs)[0].descs.float().cpu())
        except ImageError:
            continue
    if not descs:
        raise ParameterError("pca_dim: none of the sampled images could be read to fit the PCA")
    x = torch.cat(descs)
    if pca_dim > x.shape[1]:
        raise ParameterError(f"pca_dim={pca_dim} is above the descriptor dimension {x.shape[1]}")
    if len(x) > max_rows:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_rows]]
    mean = x.mean(0)
    xc = (x - mean).double()
    evals, evecs = torch.linalg.eigh(xc.T @ xc / max(1, len(x) - 1))
    order = evals.flip(0)[:pca_dim]
    comps = evecs.flip(1)[:, :pca_dim].float()
    return mean, comps, (order / evals.sum()).float(), len(picks)


@dataclass(frozen=True)
class DatasetJob:
    """How ``extract-dataset`` runs and stores, apart from the descriptor settings.

    ``model`` / ``checkpoint`` / ``device`` / ``dtype`` (the network's precision): the Extractor of
    each worker; ``include_cls``, ``saliency``, ``upsample``, ``batch_size``: as
    :meth:`Extractor.extract`; ``store_dtype`` ``"fp32"`` / ``"fp16"`` (descriptors only);
    ``pca_dim``: store descriptors projected to k dims by a PCA fitted on ``pca_sample`` images (kept
    in ``pca.safetensors``); ``shard_size`` images per shard (and per actor call); ``num_workers``
    actors, each with ``num_gpus_per_worker`` GPUs, ``cpus_per_worker`` CPUs and
    ``threads_per_worker`` torch threads; ``resume``: skip images whose path, content hash and
    parameters are already in the manifest; ``address``: a Ray cluster (None: local);
    ``progress``: a progress bar and notices on stderr.
    """

    model: str = "auto"
    checkpoint: str | None = None
    device: str = "auto"
    dtype: str | None = None
    include_cls: bool = False
    saliency: bool = True
    upsample: str | None = None
    batch_size: int = 8
    shard_size: int = 32
    num_workers: int = 1
    num_gpus_per_worker: float = 0
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None
    store_dtype: str = "fp32"
    pca_dim: int | None = None
    pca_sample: int = 32
    resume: bool = True
    address: str | None = None
    progress: bool = True

    def check(self) -> None:
        """One sentence for the first absurd value."""
        check_int("num_workers", self.num_workers, 1)
        check_int("shard_size", self.shard_size, 1)
        check_int("batch_size", self.batch_size, 1)
        if self.store_dtype not in STORE_DTYPES:
            raise ParameterError(f"store_dtype={self.store_dtype!r}: expected one of {', '.join(STORE_DTYPES)}")
        if self.pca_dim is not None:
            check_int("pca_dim", self.pca_dim, 1)


#: the descriptor settings ``extract_dataset`` takes as keywords, with their defaults (the
#: paper's layer-11 keys at load size 224; None: the model's facet and stride)
DATASET_SETTINGS = dict(layer=11, facet=None, stride=None, load_size=224, bin=False, hierarchy=2)


def extract_dataset(source: Any, out_dir: str | os.PathLike, *,
                    on_record: Callable[[dict], None] | None = None, **options: Any) -> ExtractSummary:
    """Extract descriptors of every image of ``source`` into a sharded data set at ``out_dir``:
    :func:`extract_dataset_with` with the descriptor settings (``layer``, ``facet``, ``stride``,
    ``load_size``, ``bin``, ``hierarchy``; defaults :data:`DATASET_SETTINGS`) and the
    :class:`DatasetJob` fields as keywords. An unknown keyword is refused in one sentence."""
    given = {name: options.pop(name, default) for name, default in DATASET_SETTINGS.items()}
    unknown = sorted(set(options) - {f.name for f in fields(DatasetJob)})
    if unknown:
        raise ParameterError(f"unknown extract_dataset option(s) {', '.join(unknown)}: expected some of "
                             f"{', '.join([*DATASET_SETTINGS, *(f.name for f in fields(DatasetJob))])}")
    layer = given["layer"]
    settings = DescriptorSettings(layer if isinstance(layer, int) else tuple(layer), given["facet"],
                                  given["stride"], given["load_size"], bool(given["bin"]), given["hierarchy"])
    return extract_dataset_with(source, out_dir, settings, DatasetJob(**options), on_record=on_record)


extract_dataset.__signature__ = inspect.Signature(   # type: ignore[attr-defined]
    [inspect.Parameter("source", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Any"),
     inspect.Parameter("out_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str | os.PathLike"),
     *(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in DATASET_SETTINGS.items()),
     *(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
       for f in fields(DatasetJob)),
     inspect.Parameter("on_record", inspect.Parameter.KEYWORD_ONLY, default=None,
                       annotation="Callable[[dict], None] | None")],
    return_annotation="ExtractSummary")


def extract_dataset_with(source: Any, out_dir: str | os.PathLike, settings: DescriptorSettings,
                         job: DatasetJob, on_record: Callable[[dict], None] | None = None) -> ExtractSummary:
    """Extract descriptors of every image of ``source`` into a sharded data set at ``out_dir``.

    source: a folder (recursive, by image suffix), a glob, a list of paths, or a Ray Dataset with
    ``path`` and ``bytes`` columns (``ray.data.read_binary_files(..., include_paths=True)``).
    ``settings``: the descriptor settings (resolved here against the model: None facet / stride are
    the model's); ``job``: how it runs and stores (:class:`DatasetJob`). ``on_record(record)`` is
    called in this process per written record. Unreadable or corrupt images are recorded as failed
    with the reason; the job completes.
    """
    require_ray()
    job.check()
    from vitdense.features.models import get_spec, resolve_model_name
    name, notice = resolve_model_name(job.model)
    if notice and job.progress:
        print(f"notice: {notice}", file=sys.stderr)
    spec = get_spec(name)
    options = {"model": name, "checkpoint": None if job.checkpoint is None else os.fspath(job.checkpoint),
               "device": job.device, "dtype": job.dtype}
    settings = settings.resolve(spec)
    settings.check(spec)
    extract_kwargs = {**settings.kwargs(), "include_cls": job.include_cls, "saliency": job.saliency,
                      "batch_size": job.batch_size}
    if job.upsample is not None:
        extract_kwargs["upsample"] = job.upsample
    out = Path(out_dir)
    is_dataset = not isinstance(source, (str, os.PathLike, list, tuple))
    rows = None if is_dataset else list_source(source)
    job_params = {**options, **{k: v for k, v in extract_kwargs.items() if k != "batch_size"},
                  "store_dtype": job.store_dtype, "pca_dim": job.pca_dim}
    store_info: dict = {"store_dtype": job.store_dtype}
    pca = None
    if job.pca_dim is not None:
        stored = load_pca(out)
        if stored is not None and stored[1].get("params") == json.loads(json.dumps(job_params, default=str)):
            tensors, _, digest = stored
        elif rows is None:
            raise ParameterError("pca_dim with a Ray Dataset source needs a pca.safetensors in out_dir "
                                 "(fit it once from a list of paths)")
        else:
            mean, comps, ratio, n = _fit_pca(rows, job.pca_dim, job.pca_sample, options, extract_kwargs)
            digest = save_pca(out, mean, comps, ratio, {"params": job_params, "sample_images": n})
            tensors = {"mean": mean, "components": comps}
        pca = {"mean": tensors["mean"], "components": tensors["components"]}
        store_info.update(pca_dim=job.pca_dim, pca=digest)
    job_params["pca"] = store_info.get("pca")
    key = params_key(job_params)
    done = frozenset((r["path"], r["hash"]) for r in read_manifest(out)
                     if job.resume and r.get("params_key") == key)
    manifest_job = {"params_key": key, "params": job_params, "store": store_info, "version": vitdense_version()}
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    extracted, failed, shards = 0, {}, set()
    with ray_session(job.address) as ray, _user_errors():
        from ray.data import ActorPoolStrategy
        if is_dataset:
            ds = source
        else:
            ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // job.shard_size + 1, 64)))
        ds = ds.map_batches(_read_and_hash, fn_kwargs={"done": done}, batch_size=job.shard_size)
        res = worker_resources(ray, job.num_workers, job.num_gpus_per_worker, job.cpus_per_worker)
        threads = job.threads_per_worker or default_threads(job.num_workers)
        ds = ds.map_batches(_ExtractWorker, batch_size=job.shard_size,
                            compute=ActorPoolStrategy(size=job.num_workers,
                                                      max_concurrent_calls_per_actor=CALLS_PER_WORKER,
                                                      enable_true_multi_threading=True),
                            fn_constructor_kwargs=dict(out_dir=str(out), run_id=run_id, options=options,
                                                       extract_kwargs=extract_kwargs, threads=threads,
                                                       store_dtype=job.store_dtype, pca=pca, job=manifest_job), **res)
        from tqdm import tqdm
        todo = None if rows is None else len(rows) - len(done)
        with tqdm(total=todo, desc="vitdense extract-dataset", unit="image", disable=not job.progress,
                  dynamic_ncols=True) as bar:
            for row in ds.iter_rows():
                rec = json.loads(row["record"])
                if rec["status"] == "error":
                    _raise_worker_error(rec["error"], rec["reason"])
                if rec["status"] == "ok":
                    extracted += 1
                    shards.add(rec["shard"])
                else:
                    failed[rec["path"]] = rec["reason"]
                bar.update(1)
                bar.set_postfix_str(f"{len(shards)} shard(s)", refresh=False)
                if on_record is not None:
                    on_record(rec)
    skipped = None if rows is None else len(rows) - extracted - len(failed)
    return ExtractSummary(out, None if rows is None else len(rows), extracted, skipped, failed,
                          sorted(shards), time.perf_counter() - start, job_params)


# -- per-set jobs ---------------------------------------------------------------------------------
class _SetWorker:
    """One Ray actor: an Extractor loaded once; each call runs ``task`` on one set."""

    def __init__(self, task: Callable, options: dict, threads: int, out_dir: str) -> None:
        self.ex, self.error = _guarded(_make_extractor, options, threads)
        self.task, self.out = task, Path(out_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.error:   # the model could not be loaded: the whole job stops, in one line
            return {"name": np.array([""], dtype=object), "ok": np.array([False]),
                    "text": np.array([json.dumps(self.error)], dtype=object)}
        names, oks, texts = [], [], []
        for name, folder in zip(batch["name"], batch["folder"]):
            ok, text = self.task(self.ex, str(name), Path(str(folder)), self.out / str(name))
            names.append(str(name))
            oks.append(bool(ok))
            texts.append(str(text))
        return {"name": np.array(names, dtype=object), "ok": np.array(oks),
                "text": np.array(texts, dtype=object)}


def map_sets(sets: Sequence[tuple[str, Path]], task: Callable, out_dir: str | os.PathLike, *,
             options: dict, num_workers: int = 2, num_gpus_per_worker: float = 0,
             cpus_per_worker: float | None = None, threads_per_worker: int | None = None,
             address: str | None = None) -> Iterator[tuple[str, bool, str]]:
    """Run ``task(extractor, name, folder, out_dir / name) -> (ok, text)`` on every set, one Ray task
    per set on ``num_workers`` actors (``options``: the Extractor's ``model``, ``checkpoint``,
    ``device``, ``dtype``). Yields ``(name, ok, text)`` as sets complete. ``task`` must be
    importable by reference (a module-level function or a ``functools.partial`` of one)."""
    require_ray()
    check_int("num_workers", num_workers, 1)
    return _map_sets(sets, task, out_dir, options, num_workers, num_gpus_per_worker, cpus_per_worker,
                     threads_per_worker, address)


def _map_sets(sets, task, out_dir, options, num_workers, num_gpus_per_worker, cpus_per_worker,
              threads_per_worker, address) -> Iterator[tuple[str, bool, str]]:
    with ray_session(address) as ray, _user_errors():
        from ray.data import ActorPoolStrategy
        items = [{"name": n, "folder": str(f)} for n, f in sets]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        res = worker_resources(ray, num_workers, num_gpus_per_worker, cpus_per_worker)
        ds = ds.map_batches(_SetWorker, batch_size=1, compute=ActorPoolStrategy(size=min(num_workers, len(items))),
                            fn_constructor_kwargs=dict(task=task, options=options,
                                                       threads=threads_per_worker or default_threads(num_workers),
                                                       out_dir=os.fspath(out_dir)), **res)
        for row in ds.iter_rows():
            if not row["name"]:
                _raise_worker_error(**json.loads(row["text"]))
            yield str(row["name"]), bool(row["ok"]), str(row["text"])


def app_sets(app_id: str, sets: Sequence[tuple[str, Any]], out_dir: str | os.PathLike, given: dict, *,
             num_workers: int = 2, model: str = "auto", checkpoint: str | None = None, device: str = "auto",
             dtype: str | None = None, gpus_per_worker: float = 0, address: str | None = None
             ) -> tuple[Iterator[tuple[str, bool, str]], str | None]:
    """Application ``app_id`` on every set of ``sets`` (``[(name, folder)]``) on ``num_workers``
    Ray workers, each calling the library (:class:`vitdense.apps.sets.SetJob`) with its own
    extractor and writing OUT/<set>/ as ``vitdense APP`` does. ``given``: the application's options
    by name (unset ones: the defaults for the model), resolved and checked here, once.
    Returns ``((name, ok, text) as sets complete, the model's fallback notice or None)``."""
    from vitdense.apps.registry import get_app
    from vitdense.apps.sets import SetJob, resolve_options
    require_ray()
    options, notice = model_options(model, checkpoint, device, dtype)
    job = SetJob(resolve_options(get_app(app_id), given, options["model"]))
    return map_sets(sets, job, out_dir, options=options, num_workers=num_workers,
                    num_gpus_per_worker=gpus_per_worker, address=address), notice


def model_options(model: str, checkpoint: str | None, device: str, dtype: str | None) -> tuple[dict, str | None]:
    """Extractor options for workers with the model name resolved here once (no hub probe per
    worker), and the fallback notice to show."""
    from vitdense.features.models import resolve_model_name
    name, notice = resolve_model_name(model)
    return {"model": name, "checkpoint": checkpoint, "device": device, "dtype": dtype}, notice


__all__ = ["extract_dataset", "extract_dataset_with", "DatasetJob", "DATASET_SETTINGS", "ExtractSummary", "map_sets", "ray_session", "require_ray",
           "RayUnavailableError", "list_source", "model_options", "INSTALL_HINT"]


# -- command line (registered by vitdense.cli.main) ----------------------------------------------------
def add_extract_dataset_options(p) -> None:
    """The options of ``vitdense extract-dataset`` beyond model, descriptor and worker options."""
    import argparse
    p.add_argument("--include-cls", action="store_true", help="also store the CLS descriptor")
    p.add_argument("--saliency", action=argparse.BooleanOptionalAction, default=True,
                   help="also store CLS-attention saliency maps (default on)")
    p.add_argument("--batch-size", type=int, default=8, help="images per network batch (default 8)")
    p.add_argument("--shard-size", type=int, default=32, help="images per shard (default 32)")
    p.add_argument("--store-dtype", choices=sorted(STORE_DTYPES), default="fp32",
                   help="precision of the stored descriptors (default fp32)")
    p.add_argument("--pca-dim", type=int, default=None, metavar="K",
                   help="store descriptors projected to K dims by a PCA fitted on --pca-sample images")
    p.add_argument("--pca-sample", type=int, default=32, help="images the PCA is fitted on (default 32)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip images already stored with the same content and parameters (default on)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def extract_dataset_command(args) -> int:
    """``vitdense extract-dataset``: parsed options -> :func:`extract_dataset_with`, then a summary."""
    layer = args.layer[0] if len(args.layer) == 1 else tuple(args.layer)
    settings = DescriptorSettings(layer, args.facet, args.stride, args.load_size, bool(args.bin), args.hierarchy)
    job = DatasetJob(model=args.model, checkpoint=args.checkpoint, device=args.device, dtype=args.dtype,
                     include_cls=args.include_cls, saliency=args.saliency, batch_size=args.batch_size,
                     shard_size=args.shard_size, num_workers=args.workers or 1,
                     num_gpus_per_worker=args.gpus_per_worker, store_dtype=args.store_dtype, pca_dim=args.pca_dim,
                     pca_sample=args.pca_sample, resume=args.resume, address=args.address,
                     progress=not args.quiet)
    s = extract_dataset_with(args.root, args.out, settings, job)
    for path, reason in s.failed.items():
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(f"{s.num_extracted} image(s) extracted, {s.num_skipped} already stored, {len(s.failed)} failed, "
          f"{len(s.shards)} shard(s) in {s.seconds:.1f} s; output in {s.out_dir}")
    return 1 if s.failed else 0

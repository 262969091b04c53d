"""An application's own knobs as one frozen dataclass, and the keyword functions generated from it.

An application's core function takes ``(extractor, images, settings, knobs)``: the descriptor
settings (:class:`vitdense.features.descriptors.DescriptorSettings`, resolved once for the model)
and the application's knobs (a subclass of :class:`AppKnobs`). A knob the defaults table holds
defaults to None and :meth:`AppKnobs.resolved` fills it from
:func:`vitdense.defaults.task_defaults` for the model; a knob outside the table has its default on
the dataclass field, the only place it is written. The keyword functions of the README
(``cosegment(ex, images, elbow=...)``) are thin wrappers whose signature is generated from the
fields (:func:`keyword_signature`), so :meth:`vitdense.apps.registry.App.default` and ``help()``
read the same defaults.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, TypeVar

from vitdense.defaults import TASK_DEFAULTS, task_defaults
from vitdense.errors import ParameterError, check_bool
from vitdense.features.descriptors import DescriptorSettings

K = TypeVar("K", bound="AppKnobs")

#: the descriptor settings an application's keyword function takes (None: the table's, then the model's)
SETTINGS_ANNOTATIONS = {"load_size": "int | None", "layer": "int | Sequence[int] | None", "facet": "str | None",
                        "bin": "bool | None", "stride": "int | None"}


@dataclass(frozen=True)
class AppKnobs:
    """Base of an application's knobs: ``TASK`` names its row of the defaults table, ``EXTRACTION``
    the fields only the network pass reads (the descriptor-level function does not take them),
    ``UNRECORDED`` the fields that do not go into ``result.params`` (how, not what, is computed)."""

    TASK: ClassVar[str] = ""
    EXTRACTION: ClassVar[tuple[str, ...]] = ()
    UNRECORDED: ClassVar[tuple[str, ...]] = ("refiner",)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_options(cls: type[K], **options: Any) -> K:
        """The knobs named in ``options``; an unknown name is refused in one sentence."""
        return cls._checked(options, cls.names())

    @classmethod
    def from_descriptor_options(cls: type[K], **options: Any) -> K:
        """:meth:`from_options` for the descriptor-level function (no ``EXTRACTION`` knob)."""
        return cls._checked(options, cls.descriptor_names())

    @classmethod
    def descriptor_names(cls) -> tuple[str, ...]:
        return tuple(n for n in cls.names() if n not in cls.EXTRACTION)

    @classmethod
    def _checked(cls: type[K], options: dict[str, Any], allowed: tuple[str, ...]) -> K:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ParameterError(f"unknown {cls.TASK} option(s) {', '.join(unknown)}: expected some of "
                                 f"{', '.join(allowed)}")
        return cls(**options)

    def resolved(self: K, model_name: str | None) -> K:
        """Every None knob the defaults table holds, filled with its value for ``model_name``."""
        table = task_defaults(self.TASK, model_name)
        return dataclasses.replace(self, **{name: table[name] for name in self.names()
                                            if getattr(self, name) is None and name in table})

    def recorded(self) -> dict[str, Any]:
        """The knobs that ``result.params`` records, in field order."""
        skip = set(self.EXTRACTION) | set(self.UNRECORDED)
        return {name: getattr(self, name) for name in self.names() if name not in skip}

    def pick(self, *names: str) -> dict[str, Any]:
        """The knobs ``names`` by name (e.g. the keywords of one step)."""
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class VotedKnobs(AppKnobs):
    """The knobs co-segmentation and part co-segmentation share: the clustering of every descriptor
    and the saliency votes (stage 1), k-means, the refinement's implementation, and two extraction
    knobs (each subclass lists its ``EXTRACTION`` knobs). Their meaning is in the subclasses'
    docstrings (:class:`vitdense.apps.cosegmentation.CosegKnobs`)."""

    elbow: float | None = None
    thresh: float | None = None
    votes_percentage: float | None = None
    sample_interval: int | None = None
    thresh_mode: str | None = None
    vote_mode: str | None = None
    fallback: bool | None = None
    max_clusters: int = 14
    n_init: int = 10
    max_iter: int = 300
    seed: int = 0
    refiner: str = "auto"
    low_res_saliency_maps: bool = False
    batch_size: int = 8


def settings_for(task: str, extractor: Any, **given: Any) -> DescriptorSettings:
    """The descriptor settings of ``task`` for the extractor's model, resolved and checked once:
    ``given`` None values take the table's value, then the model's own (facet, stride, binning);
    ``load_size=None`` keeps the images' size (it is never a default)."""
    load_size = given.pop("load_size", TASK_DEFAULTS[task]["load_size"])
    if given.get("bin") is not None:
        check_bool("bin", given["bin"])
    settings = DescriptorSettings.for_task(task, extractor.model_name, **given).replace(load_size=load_size)
    settings = settings.resolve(extractor.spec)
    settings.check(extractor.spec)
    return settings


def split_options(options: dict[str, Any], knobs_cls: type[K]) -> tuple[dict[str, Any], K]:
    """A keyword function's options -> (the descriptor settings given, the knobs)."""
    given = {name: options.pop(name) for name in SETTINGS_ANNOTATIONS if name in options}
    return given, knobs_cls.from_options(**options)


def knob_parameters(knobs_cls: type[AppKnobs], names: Iterable[str] | None = None) -> list[inspect.Parameter]:
    """Keyword-only parameters of the fields ``names`` (all when None), with the fields' defaults."""
    fields = {f.name: f for f in dataclasses.fields(knobs_cls)}
    return [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=fields[n].default,
                              annotation=fields[n].type) for n in (names or fields)]


def settings_parameters(task: str) -> list[inspect.Parameter]:
    """Keyword-only descriptor settings: ``load_size`` defaults to the table's (None keeps the size),
    the others to None (the table's value for the model, then the model's own)."""
    return [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a,
                              default=TASK_DEFAULTS[task]["load_size"] if n == "load_size" else None)
            for n, a in SETTINGS_ANNOTATIONS.items()]


def keyword(name: str, annotation: str, default: Any) -> inspect.Parameter:
    """One keyword-only parameter that is no knob (e.g. ``extra_params``)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def keyword_signature(*parameters: inspect.Parameter | list[inspect.Parameter],
                      returns: str) -> Callable[[Callable], Callable]:
    """Give a ``**options`` wrapper the signature ``parameters`` (single ones or lists, in order)."""
    flat = [p for item in parameters for p in (item if isinstance(item, list) else [item])]

    def decorate(func: Callable) -> Callable:
        func.__signature__ = inspect.Signature(flat, return_annotation=returns)  # type: ignore[attr-defined]
        return func
    return decorate


def positional(*specs: tuple[str, str, Any]) -> list[inspect.Parameter]:
    """Positional-or-keyword parameters ``(name, annotation, default)``; ``REQUIRED``: no default."""
    return [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=a, default=d)
            for n, a, d in specs]


#: the default of a required parameter (:func:`positional`)
REQUIRED = inspect.Parameter.empty

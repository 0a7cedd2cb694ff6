"""The search space of ``imgclf tune``: a YAML file (recipes/tune.yaml), checked at once.

    trials_per_features: 3        # trials run on each feature set (the outer loop)
    fixed:                        # params every trial sets to the same value
      train.loss: categorical_crossentropy
    search:                       # dotted param key -> its range
      train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # a float
      train.epochs: {low: 2, high: 8}     # an integer (both bounds integers)
      train.class_weight: [none, balanced]  # one of a list
      backbone: [mobilenet_v2@0.35, mobilenet_v2@0.5, efficientnetv2_b0]

``backbone`` is the one key that is not a param: ``arch@alpha`` (or ``arch``) sets
``model.arch`` and ``model.alpha`` together, and a backbone whose ImageNet weights are
in neither Keras' cache nor data/pretrained is left out (the run says so). Every bound
and choice is validated by the params' own rules on top of params.yaml and ``fixed``,
so a misspelt key or a value out of range stops here with one line naming it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.params import (
    BACKBONES,
    ModelParams,
    ParamsError,
    merge,
    params_from_dict,
    read_yaml,
)

BACKBONE = "backbone"  # the pseudo key: model.arch and model.alpha in one choice
TOP_KEYS = ("trials_per_features", "fixed", "search")
# Params whose change makes the train stage unable to use cached features (random pixels
# every epoch, imgclf.training.caching.train_blocker): a trial that changes one recomputes
# or drops the features, so it is sampled in the outer loop with the features' own params.
CACHE_BREAKING_PREFIX = "train.augment."


class SpaceError(ParamsError):
    """A bad search space file; the message names the file and the key."""


@dataclass(frozen=True)
class Dimension:
    """One searched key: a float or int range (``low``..``high``), or ``choices``."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna ``trial`` draws for this key."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class Space:
    """A checked search space: what each trial draws and sets."""

    path: Path
    dims: tuple[Dimension, ...]
    fixed: dict[str, Any] = field(default_factory=dict)  # dotted key -> value
    per_features: int = 3
    dropped: tuple[str, ...] = ()  # backbone choices left out: no weights here

    def suggest(self, trial: Any) -> dict[str, Any]:
        """``{dotted key: value}`` of the params a trial sets, ``fixed`` included."""
        values = dict(self.fixed)
        for dim in self.dims:
            values.update(expand(dim.key, dim.suggest(trial)))
        return values

    def baseline(self, params: dict[str, Any]) -> dict[str, Any]:
        """The values ``params`` (params.yaml, nested) has for the searched keys, as Optuna
        params: those inside the space only (a study starts from them)."""
        out = {}
        for dim in self.dims:
            value = _baseline_value(dim.key, params)
            inside = (value in dim.choices if dim.choices else
                      isinstance(value, int | float) and not isinstance(value, bool)
                      and dim.low <= value <= dim.high and (not dim.is_int or type(value) is int))
            if value is not None and inside:
                out[dim.key] = value
        return out

    def outer(self, outer_keys: frozenset[str]) -> tuple[str, ...]:
        """The searched keys (Optuna names) that change the feature set."""
        return tuple(d.key for d in self.dims if d.key == BACKBONE or is_outer(d.key, outer_keys))


def is_outer(key: str, outer_keys: frozenset[str]) -> bool:
    """Whether ``key`` changes the features (a key or section the features, split or
    pretrained stage lists, or a cache-breaking augmentation)."""
    if key.startswith(CACHE_BREAKING_PREFIX) or key == BACKBONE:
        return True
    return any(key == k or key.startswith(k + ".") for k in outer_keys)


def _baseline_value(key: str, params: dict[str, Any]) -> Any:
    """``key``'s value in the nested ``params`` (``backbone``: ``arch@alpha``), or None."""
    if key == BACKBONE:
        model = params.get("model") or {}
        arch, alpha = model.get("arch"), model.get("alpha")
        return f"{arch}@{alpha:g}" if arch == "mobilenet_v2" and alpha else arch
    node: Any = params
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def expand(key: str, value: Any) -> dict[str, Any]:
    """``{dotted key: value}`` for one drawn value (``backbone`` sets two keys)."""
    if key != BACKBONE:
        return {key: value}
    arch, _, alpha = str(value).partition("@")
    return {"model.arch": arch, **({"model.alpha": float(alpha)} if alpha else {})}


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"train.fine_tune.layers": 30}`` -> ``{"train": {"fine_tune": {"layers": 30}}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def load_space(path: str | os.PathLike[str], params: str | os.PathLike[str] = "params.yaml",
               weights_folders: tuple[Path, ...] = ()) -> Space:
    """Read and check the space file ``path`` against ``params``; ``weights_folders``:
    where a backbone's weights file counts as present."""
    path = Path(path)
    raw = read_yaml(path, missing="pass --space FILE, or see recipes/tune.yaml")
    if not isinstance(raw, dict) or not isinstance(raw.get("search"), dict) or not raw["search"]:
        raise SpaceError(f"{path}: search: expected a mapping of param keys to ranges, such "
                         "as 'train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}'")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise SpaceError(f"{path}: {unknown[0]}: unknown key; valid keys are {', '.join(TOP_KEYS)}")
    per = raw.get("trials_per_features", 3)
    if type(per) is not int or per < 1:
        raise SpaceError(f"{path}: trials_per_features: expected an integer of 1 or more, "
                         f"got {per!r}")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise SpaceError(f"{path}: fixed: expected a mapping of dotted keys to values")
    base = read_yaml(params)
    base = merge(base if isinstance(base, dict) else {}, nested(fixed))
    _validate(base, f"{path}: fixed")
    dims, dropped = [], ()
    for key, spec in raw["search"].items():
        dim = _dimension(path, str(key), spec)
        if dim.key == BACKBONE:
            dim, dropped = _present_backbones(path, dim, weights_folders)
        for value in _probe_values(dim):
            _validate(merge(base, nested(expand(dim.key, value))), f"{path}: search")
        dims.append(dim)
    return Space(path, tuple(dims), dict(fixed), per, dropped)


def _dimension(path: Path, key: str, spec: Any) -> Dimension:
    """One ``search`` entry as a ``Dimension``; a malformed one fails naming ``key``."""
    where = f"{path}: search.{key}"
    if isinstance(spec, list):
        if not spec or len({repr(v) for v in spec}) != len(spec):
            raise SpaceError(f"{where}: expected a list of distinct choices, got {spec!r}")
        return Dimension(key, choices=tuple(spec))
    if not isinstance(spec, dict) or set(spec) - {"low", "high", "log"} or not (
            {"low", "high"} <= set(spec)):
        raise SpaceError(f"{where}: expected a list of choices or {{low: .., high: .., "
                         f"log: true|false}}, got {spec!r}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for name, value in (("low", low), ("high", high)):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise SpaceError(f"{where}.{name}: expected a number, got {value!r}")
    if not low < high:
        raise SpaceError(f"{where}: low ({low}) must be below high ({high})")
    if type(log) is not bool or (log and low <= 0):
        raise SpaceError(f"{where}.log: true needs low above 0 (got low {low}, log {log!r})")
    if key == BACKBONE:
        raise SpaceError(f"{where}: expected a list of backbones such as [mobilenet_v2@0.35]")
    return Dimension(key, low, high, log)


def _probe_values(dim: Dimension) -> tuple[Any, ...]:
    """The values checked against the params' rules: every choice, or both bounds."""
    return dim.choices or (dim.low, dim.high)


def _validate(raw: dict[str, Any], source: str) -> None:
    params_from_dict(raw, source=source)  # ParamsError: "<source>: <dotted key>: <why>"


def _present_backbones(path: Path, dim: Dimension,
                       folders: tuple[Path, ...]) -> tuple[Dimension, tuple[str, ...]]:
    """``dim`` without the backbones whose weights file is in none of ``folders``."""
    from imgclf.models.weights import pinned_for

    kept, dropped = [], []
    for choice in dim.choices:
        flat = expand(BACKBONE, choice)
        try:
            model = ModelParams(arch=flat["model.arch"], alpha=flat.get("model.alpha", 0.5))
        except ValueError:
            raise SpaceError(f"{path}: search.backbone: {choice!r} is not a backbone; use "
                             f"ARCH or ARCH@ALPHA with ARCH one of {', '.join(BACKBONES)}, "
                             "e.g. mobilenet_v2@0.35") from None
        pinned = pinned_for(model)
        present = pinned is None or any((f / pinned.filename).is_file() for f in folders)
        (kept if present else dropped).append(choice)
    if not kept:
        raise SpaceError(f"{path}: search.backbone: the weights of none of {', '.join(dropped)} "
                         "are present; put them in $KERAS_HOME/models (docs/tuning.md)")
    return Dimension(BACKBONE, choices=tuple(kept)), tuple(dropped)

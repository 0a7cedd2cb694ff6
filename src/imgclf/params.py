"""Every setting of the pipeline, loaded once from ``params.yaml`` into typed objects.

``load_params`` checks the whole file: an unknown or misspelt key, a wrong type or a
value out of range stops the stage with one line naming the key and what is allowed.
(``dvc exp run -S train.optimiser=sgd`` would otherwise add a key nobody reads and
train with the default, silently.)

Each dataclass below is one section of ``params.yaml``; its defaults are the
defaults of the project, and its field comments are the documentation of the keys.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from imgclf.errors import UserError

DEFAULT_SOURCE = "kaggle:borhanitrash/animal-image-classification-dataset"

Arch = Literal["small", "medium", "large", "compact", "custom", "mobilenet_v2"]
LrSchedule = Literal["constant", "cosine"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Loss = Literal["sparse_categorical_crossentropy", "categorical_crossentropy"]
Strategy = Literal["auto", "mirrored", "multi_worker"]
Tta = Literal["none", "flip"]
Encoding = Literal["jpeg", "png", "raw"]

# The layer list of ``model.arch: custom``: each entry is {type: ..., <key>: <value>}.
# For every layer type: its keys, their types and defaults (None = required).
LAYER_SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "conv": {"filters": (int, None), "kernel": (int, 3), "strides": (int, 1),
             "activation": (str, "relu")},
    "separable_conv": {"filters": (int, None), "kernel": (int, 3), "strides": (int, 1),
                       "activation": (str, "relu")},
    "max_pool": {"size": (int, 2)},
    "avg_pool": {"size": (int, 2)},
    "global_avg_pool": {},
    "flatten": {},
    "batch_norm": {},
    "dense": {"units": (int, None), "activation": (str, "relu")},
    "dropout": {"rate": (float, None)},
}
# MobileNetV2 widths Keras can build, and those whose ImageNet weights are pinned.
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
PRETRAINED_ALPHAS = (0.35, 0.5)
ACTIVATIONS = ("relu", "gelu", "swish", "elu", "tanh", "sigmoid", "linear")
# Characters W&B does not accept in project and entity names.
WANDB_NAME_FORBIDDEN = "/\\#?%:"


class ParamsError(UserError):
    """A bad value in params.yaml; the message names the key."""


@dataclass(frozen=True)
class DataParams:
    source: str = DEFAULT_SOURCE  # kaggle:OWNER/NAME, https:// or file:// archive URL, or a folder
    image_size: int = 224  # images are resized to image_size x image_size pixels


@dataclass(frozen=True)
class SplitParams:
    train: float = 0.7  # fractions of each class; the three must sum to 1
    val: float = 0.15
    test: float = 0.15
    seed: int = 42
    # How the resized images are stored in the TFRecord shards: jpeg (small, lossy at
    # `quality`), png (lossless, ~5x jpeg's bytes) or raw (uint8 pixels, ~10x).
    encoding: Encoding = "jpeg"
    # JPEG quality, 1..100 (ignored by png and raw). 90: on the animals photos at 224 px
    # 15.6 KB an image, 1.19x the source JPEGs' bytes (95: 21.7 KB, 1.65x).
    quality: int = 90
    shard_mb: float = 128.0  # a shard file is closed once it holds this many MB


@dataclass(frozen=True)
class ModelParams:
    arch: Arch = "mobilenet_v2"
    dropout: float = 0.2  # after each dense layer of small/medium/large; before mobilenet's head
    alpha: float = 0.5  # mobilenet_v2 width multiplier
    pretrained: bool = True  # mobilenet_v2 starts from ImageNet weights (the pretrained stage)
    layers: list[dict[str, Any]] = field(default_factory=list)  # only for arch: custom


@dataclass(frozen=True)
class AugmentParams:
    flip: bool = True  # random horizontal flips
    rotation: float = 0.0  # max rotation, as a fraction of a full turn
    zoom: float = 0.0  # max zoom in or out, as a fraction
    contrast: float = 0.0  # max contrast change, as a fraction
    # Random resized crops: each training image becomes a random box of it covering at
    # least this fraction of its area, resized back; 0 = off.
    crop: float = 0.0
    # MixUp: blend each training image and its label with another's, by a weight from
    # Beta(mixup, mixup), e.g. 0.2; 0 = off. Needs loss: categorical_crossentropy.
    mixup: float = 0.0


@dataclass(frozen=True)
class FineTuneParams:
    """A second phase for a pretrained backbone: unfreeze its top layers, lower the rate."""

    epochs: int = 2  # 0 = train the new head only; ignored without a pretrained backbone
    learning_rate: float = 0.00002
    layers: int = 30  # backbone layers unfrozen from the top (batch norm stays frozen); 0 = all


@dataclass(frozen=True)
class TrainParams:
    optimizer: Optimizer = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9  # sgd and rmsprop only
    weight_decay: float = 0.0  # adamw only
    loss: Loss = "sparse_categorical_crossentropy"
    label_smoothing: float = 0.0  # needs loss: categorical_crossentropy
    batch_size: int = 32
    epochs: int = 4
    early_stopping_patience: int = 3  # epochs without val_loss improvement; 0 turns it off
    seed: int = 42
    lr_schedule: LrSchedule = "constant"  # cosine: decay to 0 over the epochs
    warmup_epochs: int = 0  # epochs the rate rises linearly from 0 first (then the schedule)
    # Keep an exponential moving average of the weights with this decay per batch and
    # save that instead of the last weights (smoother, often better); 0 = off.
    ema: float = 0.0
    deterministic: bool = True  # TensorFlow op determinism: same run, same weights (slower)
    mixed_precision: bool = False  # float16 compute on a GPU; ignored on CPU
    jit_compile: bool = False  # XLA-compile the training step
    # auto: one device, or all local GPUs mirrored; mirrored: tf MirroredStrategy;
    # multi_worker: several processes/machines, set up by TF_CONFIG (see README).
    # batch_size is the global batch, split across all of them.
    strategy: Strategy = "auto"
    augment: AugmentParams = field(default_factory=AugmentParams)
    fine_tune: FineTuneParams = field(default_factory=FineTuneParams)


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = 64
    splits: list[str] = field(default_factory=lambda: ["val", "test"])  # scored splits
    # Test-time augmentation: "flip" averages the probabilities of each image and its
    # mirror image (twice the compute; the animals' test accuracy gains ~0.4 points).
    tta: Tta = "flip"


@dataclass(frozen=True)
class WandbParams:
    """Weights & Biases tracking of train and evaluate; it never changes an output.

    The API key is not a param: it comes from ``WANDB_API_KEY`` in the environment or
    in ``.env`` (see ``imgclf.tracking.wandb_run``); without one, runs are kept offline.
    """

    enabled: bool = True  # false: no W&B at all (so does the environment's WANDB_MODE=disabled)
    project: str = "imgclf"  # the W&B project the runs go to
    entity: str = ""  # W&B user or team; "" = the default entity of the API key
    group: str = ""  # W&B group of the runs; "" = the DVC experiment's name (or git revision)
    log_model: bool = True  # upload models/model.keras as a "model" artifact
    log_manifest: bool = True  # upload data/prepared/manifest.csv as a "dataset" artifact
    misclassified: int = 32  # most rows of the table of misclassified test images; 0 = none


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    wandb: WandbParams = field(default_factory=WandbParams)


def read_yaml(path: str | os.PathLike[str],
              missing: str = "run from the project folder or pass --params") -> Any:
    """The parsed YAML of ``path`` (``{}`` for an empty file); ``missing`` says what to do."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; {missing}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}; fix the syntax") from None
    return raw if raw is not None else {}


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate ``path``; raise ``ParamsError`` naming the first bad key."""
    return params_from_dict(read_yaml(path), source=str(path))


def params_from_dict(raw: Any, source: str = "params.yaml") -> Params:
    """Build ``Params`` from a plain mapping (as parsed from YAML) and validate it."""
    try:
        params = _build(Params, raw, "")
        _check(params)
    except ParamsError as exc:
        raise ParamsError(f"{source}: {exc}") from None
    return params


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra``'s keys replaced, recursively for nested mappings."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def flat_keys(raw: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``[("train.augment.crop", 0.25), ...]``: the leaves of nested mappings, dotted."""
    out: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out += flat_keys(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def to_dict(params: Any) -> dict[str, Any]:
    """The params as plain nested dicts, e.g. for logging them."""
    return dataclasses.asdict(params)


# --- type checking -------------------------------------------------------------------


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if get_origin(tp) is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    if get_origin(tp) is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``tp``; return it (ints widened to floats)."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ParamsError(f"{key}: {value!r} is not valid; choose {_describe(tp)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected {_describe(tp)}, got {value!r}")
        (item,) = get_args(tp)
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[tp](value)
    if not ok:
        raise ParamsError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if tp is float:
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise ParamsError(f"{key}: expected a finite number, got {value!r}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    section = prefix.rstrip(".") or "params"
    if not isinstance(raw, dict):
        raise ParamsError(f"{section}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ParamsError(
                f"{prefix}{key}: unknown key; valid keys in {section} are {', '.join(names)}"
            )
    kwargs = {n: _convert(hints[n], raw[n], prefix + n) for n in names if n in raw}
    return cls(**kwargs)


# --- value rules ----------------------------------------------------------------------


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ParamsError(message)


def _check_layers(layers: list[dict[str, Any]]) -> None:
    for i, layer in enumerate(layers):
        key = f"model.layers[{i}]"
        kind = layer.get("type")
        _require(isinstance(kind, str) and kind in LAYER_SCHEMA,
                 f"{key}.type: {kind!r} is not valid; choose one of {', '.join(LAYER_SCHEMA)}")
        schema = LAYER_SCHEMA[kind]
        for name, value in layer.items():
            if name == "type":
                continue
            _require(name in schema, f"{key}.{name}: unknown key for a {kind} layer; "
                     f"valid keys are {', '.join(schema) or '(none)'}")
            tp, _ = schema[name]
            _convert(tp, value, f"{key}.{name}")
        for name, (_, default) in schema.items():
            _require(name in layer or default is not None,
                     f"{key}.{name}: required for a {kind} layer")
        for name in ("filters", "units", "kernel", "strides", "size"):
            if name in layer:
                _require(layer[name] >= 1, f"{key}.{name}: must be at least 1, got {layer[name]}")
        if "rate" in layer:
            _require(0 <= layer["rate"] < 1, f"{key}.rate: must be in [0, 1), got {layer['rate']}")
        if "activation" in layer:
            _require(layer["activation"] in ACTIVATIONS,
                     f"{key}.activation: {layer['activation']!r} is not valid; "
                     f"choose one of {', '.join(ACTIVATIONS)}")


def _check(p: Params) -> None:
    _require(p.data.source.strip() != "", "data.source: must not be empty; "
             f"use {DEFAULT_SOURCE!r}, a URL or a folder")
    _require(16 <= p.data.image_size <= 1024,
             f"data.image_size: must be between 16 and 1024, got {p.data.image_size}")

    s = p.split
    for name in ("train", "val", "test"):
        value = getattr(s, name)
        _require(0 <= value <= 1, f"split.{name}: must be between 0 and 1, got {value}")
    _require(s.train > 0, "split.train: must be above 0")
    _require(s.val > 0, "split.val: must be above 0 (training validates on it every epoch)")
    _require(s.test > 0, "split.test: must be above 0 (evaluate scores the test split)")
    total = s.train + s.val + s.test
    _require(math.isclose(total, 1.0, abs_tol=1e-6),
             f"split.train + split.val + split.test: must sum to 1, got {total:g}")
    _require(1 <= s.quality <= 100, f"split.quality: must be between 1 and 100, got {s.quality}")
    _require(s.shard_mb > 0, f"split.shard_mb: must be above 0, got {s.shard_mb}")

    _require(0 <= p.model.dropout < 1, f"model.dropout: must be in [0, 1), got {p.model.dropout}")
    if p.model.arch == "custom":
        _require(bool(p.model.layers), "model.layers: needed when model.arch is custom; "
                 "list layers such as {type: conv, filters: 32}")
    else:
        _require(not p.model.layers,
                 f"model.layers: only used when model.arch is custom (it is {p.model.arch}); "
                 "remove it or set model.arch: custom")
    _check_layers(p.model.layers)
    if p.model.arch == "mobilenet_v2":
        alphas = PRETRAINED_ALPHAS if p.model.pretrained else MOBILENET_ALPHAS
        _require(p.model.alpha in alphas,
                 f"model.alpha: {p.model.alpha:g} is not valid for mobilenet_v2"
                 f"{' with pretrained weights' if p.model.pretrained else ''}; choose one of "
                 f"{', '.join(f'{a:g}' for a in alphas)}")
        _require(p.data.image_size >= 32,
                 f"data.image_size: mobilenet_v2 needs at least 32, got {p.data.image_size}")

    if p.model.arch == "compact":
        # Its stem and four poolings halve the image five times.
        _require(p.data.image_size >= 32,
                 f"data.image_size: compact needs at least 32, got {p.data.image_size}")

    t = p.train
    _require(t.learning_rate > 0, f"train.learning_rate: must be above 0, got {t.learning_rate}")
    _require(0 <= t.momentum < 1, f"train.momentum: must be in [0, 1), got {t.momentum}")
    _require(t.weight_decay >= 0, f"train.weight_decay: must be 0 or more, got {t.weight_decay}")
    _require(0 <= t.label_smoothing < 1,
             f"train.label_smoothing: must be in [0, 1), got {t.label_smoothing}")
    _require(t.label_smoothing == 0 or t.loss == "categorical_crossentropy",
             "train.label_smoothing: needs train.loss: categorical_crossentropy "
             f"(it is {t.loss})")
    _require(t.batch_size >= 1, f"train.batch_size: must be at least 1, got {t.batch_size}")
    _require(t.epochs >= 1, f"train.epochs: must be at least 1, got {t.epochs}")
    _require(0 <= t.warmup_epochs < t.epochs,
             f"train.warmup_epochs: must be 0 or more and below train.epochs ({t.epochs}), "
             f"got {t.warmup_epochs}")
    _require(t.ema == 0 or 0.9 <= t.ema < 1,
             f"train.ema: must be 0 (off) or in [0.9, 1), e.g. 0.99, got {t.ema}")
    _require(t.early_stopping_patience >= 0,
             f"train.early_stopping_patience: must be 0 or more, got {t.early_stopping_patience}")
    f = t.fine_tune
    _require(f.epochs >= 0, f"train.fine_tune.epochs: must be 0 or more, got {f.epochs}")
    _require(f.learning_rate > 0,
             f"train.fine_tune.learning_rate: must be above 0, got {f.learning_rate}")
    _require(f.layers >= 0, f"train.fine_tune.layers: must be 0 or more, got {f.layers}")
    a = t.augment
    for name in ("rotation", "zoom", "contrast"):
        value = getattr(a, name)
        _require(0 <= value < 1, f"train.augment.{name}: must be in [0, 1), got {value}")
    _require(0 <= a.mixup <= 1,
             f"train.augment.mixup: must be 0 (off) or up to 1, e.g. 0.2, got {a.mixup}")
    _require(a.mixup == 0 or t.loss == "categorical_crossentropy",
             "train.augment.mixup: needs train.loss: categorical_crossentropy (mixed labels "
             f"are not class indices; it is {t.loss})")
    _require(a.crop == 0 or 0.05 <= a.crop < 1,
             f"train.augment.crop: must be 0 (off) or in [0.05, 1), e.g. 0.25, got {a.crop}")

    e = p.evaluate
    _require(e.batch_size >= 1, f"evaluate.batch_size: must be at least 1, got {e.batch_size}")
    for i, name in enumerate(e.splits):
        _require(name in ("train", "val", "test"),
                 f"evaluate.splits[{i}]: {name!r} is not valid; choose train, val or test")
    _require("test" in e.splits, "evaluate.splits: must include test")
    _require(len(set(e.splits)) == len(e.splits), "evaluate.splits: lists a split twice")

    w = p.wandb
    _require(w.project.strip() != "", "wandb.project: must not be empty; e.g. imgclf")
    for name in ("project", "entity"):
        value = getattr(w, name)
        bad = sorted({c for c in value if c in WANDB_NAME_FORBIDDEN})
        _require(not bad, f"wandb.{name}: {value!r} has characters W&B does not allow: "
                 f"{' '.join(map(repr, bad))}")
    _require(w.misclassified >= 0,
             f"wandb.misclassified: must be 0 or more, got {w.misclassified}")

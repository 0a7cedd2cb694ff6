"""Every setting of the pipeline, loaded once from ``params.yaml`` into typed objects.

``load_params`` checks the whole file: an unknown or misspelt key, a wrong type or a
value out of range stops the stage with one line naming the key and what is allowed.
(``dvc exp run -S train.optimiser=sgd`` would otherwise add a key nobody reads and
train with the default, silently.)

Each dataclass below is one section of ``params.yaml``; its defaults are the
defaults of the project, and each field's ``doc`` is the one reference of its key:
``make docs`` writes the table of docs/params.md from them (scripts/params_doc.py), and
a test fails when that table is stale.
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

# Backbones from Keras Applications: ImageNet weights (the pretrained stage), a new head,
# and each one's own preprocessing inside the model.
Backbone = Literal["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                   "efficientnetv2_b0", "efficientnetv2_s", "resnet50_v2", "convnext_tiny"]
BACKBONES: tuple[str, ...] = get_args(Backbone)
Arch = Literal["small", "medium", "large", "compact", "custom", Backbone]  # flattened by typing
ClassWeight = Literal["none", "balanced"]
LrSchedule = Literal["constant", "cosine"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Loss = Literal["sparse_categorical_crossentropy", "categorical_crossentropy"]
Strategy = Literal["auto", "mirrored", "multi_worker"]
Tta = Literal["none", "flip"]
ExportFormat = Literal["savedmodel", "tflite_float16", "tflite_int8", "onnx"]
CrossClass = Literal["keep", "drop", "error"]
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


def doc(text: str) -> dict[str, str]:
    """A params field's metadata holding its documentation (Markdown), as in
    ``field(default=..., metadata=doc("..."))``: docs/params.md is generated from it."""
    return {"doc": text}


def field_doc(f: dataclasses.Field[Any]) -> str:
    """The documentation of one params field ("" when it has none)."""
    return str(f.metadata.get("doc", ""))


# Each section's docstring says which stage reads it; each field's ``doc`` is the
# reference of that key (Markdown; links are relative to docs/, where it is shown).


@dataclass(frozen=True)
class DataParams:
    """Where the images come from and their size; read by source, download and split."""

    source: str = field(default=DEFAULT_SOURCE, metadata=doc(
        "where the images come from: `kaggle:OWNER/NAME`, an `https://` or `file://` URL of "
        "a zip or tar archive, or a local folder with one sub-folder of images per class "
        "(see [Your own images](your-data.md#your-own-images))"))
    image_size: int = field(default=224, metadata=doc(
        "pixels a side the images are resized to (16 to 1024; at least "
        "32 for `compact` and the backbones)"))


@dataclass(frozen=True)
class SplitParams:
    """How split divides the images into train, val and test; read by split."""

    train: float = field(default=0.7, metadata=doc(
        "fraction of each class in the train split; `train`, `val` and `test` must sum to 1 "
        "(a dataset that comes split keeps its own split, see "
        "[Datasets that come already split](your-data.md#datasets-that-come-already-split))"))
    val: float = field(default=0.15, metadata=doc(
        "fraction of each class in the val split (validated on every epoch); for a dataset "
        "that comes split without a val folder, the share of its train folder that becomes "
        "val"))
    test: float = field(default=0.15, metadata=doc(
        "fraction of each class in the test split (what evaluate scores)"))
    seed: int = field(default=42, metadata=doc("seed of the split"))
    near_duplicates: float = field(default=0.11, metadata=doc(
        "how unlike two images' 16x16 grayscale thumbnails may be (1 - cosine of the "
        "normalised thumbnails, in [0, 1)) and still count as the same picture "
        "(re-encoded, resized, brightened, slightly cropped), kept in one split; `0` groups "
        "byte-identical files only. See "
        "[Duplicates](error-analysis.md#duplicates-and-what-split-sets-aside)"))
    cross_class_duplicates: CrossClass = field(default="keep", metadata=doc(
        "the same picture in two classes: `keep` (each copy with its own label, all in one "
        "split, with a warning), `drop` (leave them all out) or `error` (stop, naming them)"))
    encoding: Encoding = field(default="jpeg", metadata=doc(
        "how the resized images are stored in the TFRecord shards: `jpeg` (small, lossy at "
        "`split.quality`), `png` (lossless, ~5x jpeg's bytes) or `raw` (uint8 pixels, ~10x). "
        "See [Prepared data](pipeline.md#prepared-data-tfrecord-shards)"))
    quality: int = field(default=90, metadata=doc(
        "JPEG quality, 1..100 (ignored by png and raw); 90: on the animals photos at 224 px "
        "15.6 KB an image, 1.19x the source JPEGs' bytes (95: 21.7 KB, 1.65x)"))
    shard_mb: float = field(default=128.0, metadata=doc(
        "a shard file is closed once it holds this many MB; more files let multi-worker "
        "training shard by file"))


@dataclass(frozen=True)
class ModelParams:
    """The architecture; read by pretrained and train."""

    arch: Arch = field(default="mobilenet_v2", metadata=doc(
        "a pretrained backbone with a new head: `mobilenet_v2`, `mobilenet_v3_small`, "
        "`mobilenet_v3_large`, `efficientnetv2_b0`, `efficientnetv2_s`, `resnet50_v2`, "
        "`convnext_tiny` (see [Choosing a backbone](training.md#choosing-a-backbone)); "
        "`compact` (the from-scratch recipe: a small residual CNN with batch norm and global "
        "pooling; see [Training from scratch](training.md#training-from-scratch)), `small` "
        "(2 conv + 1 dense), `medium` (3 conv + 2 dense), `large` (4 conv + 2 dense), or "
        "`custom` (the layers of `model.layers`)"))
    dropout: float = field(default=0.2, metadata=doc(
        "dropout after each dense layer of `small`, `medium` and `large`, or before the head "
        "of `compact` and the backbones; in [0, 1)"))
    alpha: float = field(default=0.5, metadata=doc(
        "mobilenet_v2 width multiplier: `0.35` or `0.5` with pretrained weights; `0.75`, "
        "`1.0`, `1.3`, `1.4` from scratch (the other backbones have one width)"))
    pretrained: bool = field(default=True, metadata=doc(
        "a backbone starts from pinned ImageNet weights (the pretrained stage), frozen while "
        "the head trains; `false` trains it from random weights"))
    layers: list[dict[str, Any]] = field(default_factory=list, metadata=doc(
        "the layer list of `arch: custom`, e.g. `[{type: conv, filters: 32}, {type: "
        "max_pool}]`; empty for every other arch (see "
        "[Your own architecture](#your-own-architecture-without-code))"))


@dataclass(frozen=True)
class AugmentParams:
    """Random changes to the training images (train.augment); read by train."""

    flip: bool = field(default=True, metadata=doc("random horizontal flips"))
    rotation: float = field(default=0.0, metadata=doc(
        "max random rotation, as a fraction of a full turn; in [0, 1)"))
    zoom: float = field(default=0.0, metadata=doc(
        "max random zoom in or out, as a fraction; in [0, 1)"))
    contrast: float = field(default=0.0, metadata=doc(
        "max random contrast change, as a fraction; in [0, 1)"))
    crop: float = field(default=0.0, metadata=doc(
        "random resized crops: each training image becomes a random box of it covering at "
        "least this fraction of its area, resized back (e.g. `0.25`; 0.05 to 1); `0` = off"))
    mixup: float = field(default=0.0, metadata=doc(
        "MixUp: blend each training image and its label with another's, by a weight from "
        "Beta(mixup, mixup) (e.g. `0.2`; at most 1); `0` = off. Needs "
        "`train.loss: categorical_crossentropy`"))


@dataclass(frozen=True)
class FineTuneParams:
    """A second phase for a pretrained backbone: unfreeze its top layers, lower the rate."""

    epochs: int = field(default=2, metadata=doc(
        "after the head, train the top of a pretrained backbone for this many epochs; `0` "
        "= train the new head only; ignored without a pretrained backbone"))
    learning_rate: float = field(default=0.00002, metadata=doc(
        "the learning rate of the fine-tuning phase"))
    layers: int = field(default=30, metadata=doc(
        "backbone layers unfrozen from the top (batch norm stays frozen); `0` = all"))


@dataclass(frozen=True)
class TrainParams:
    """How the model is trained; read by train."""

    optimizer: Optimizer = field(default="adam", metadata=doc(
        "`adam`, `adamw`, `sgd` (with Nesterov momentum) or `rmsprop`"))
    learning_rate: float = field(default=0.001, metadata=doc(
        "the learning rate (of the head, with a pretrained backbone)"))
    momentum: float = field(default=0.9, metadata=doc("momentum of `sgd` and `rmsprop`; in [0, 1)"))
    weight_decay: float = field(default=0.0, metadata=doc("weight decay of `adamw`"))
    loss: Loss = field(default="sparse_categorical_crossentropy", metadata=doc(
        "`sparse_categorical_crossentropy` or `categorical_crossentropy` (labels are one-hot "
        "encoded to match; needed by `label_smoothing` and `augment.mixup`)"))
    label_smoothing: float = field(default=0.0, metadata=doc(
        "label smoothing, in [0, 1); needs `loss: categorical_crossentropy`"))
    batch_size: int = field(default=32, metadata=doc(
        "images per training step; the global batch, split across all devices and workers "
        "(see [Training on several machines](training.md#training-on-several-machines))"))
    epochs: int = field(default=4, metadata=doc(
        "training epochs; with a pretrained backbone, the epochs of the new head alone "
        "(then `fine_tune.epochs`)"))
    early_stopping_patience: int = field(default=3, metadata=doc(
        "epochs without a better val loss before stopping (the best epoch is kept); `0` "
        "turns early stopping off"))
    seed: int = field(default=42, metadata=doc("seeds Python, NumPy and TensorFlow"))
    class_weight: ClassWeight = field(default="none", metadata=doc(
        "`balanced` weighs each class's loss by `n / (classes × its train images)`, so a "
        "class with a tenth of the images counts as much in total (see "
        "[Uneven classes](your-data.md#uneven-classes)); `none`: all equal"))
    lr_schedule: LrSchedule = field(default="constant", metadata=doc(
        "`constant`, or `cosine`: decay the rate to 0 over the epochs"))
    warmup_epochs: int = field(default=0, metadata=doc(
        "first raise the rate linearly from 0 over this many epochs, then the schedule (the "
        "first phase only); below `epochs`"))
    ema: float = field(default=0.0, metadata=doc(
        "keep an exponential moving average of the weights with this decay per batch (e.g. "
        "`0.99`; 0.9 to 1) and save it instead of the last weights (smoother, often better); "
        "`0` = off"))
    deterministic: bool = field(default=True, metadata=doc(
        "TensorFlow op determinism: the same data, params and machine give identical "
        "weights and metrics (`dvc repro --force` twice); `false` trades that for speed"))
    mixed_precision: bool = field(default=False, metadata=doc(
        "float16 compute on a GPU; ignored on a CPU"))
    jit_compile: bool = field(default=False, metadata=doc("XLA-compile the training step"))
    strategy: Strategy = field(default="auto", metadata=doc(
        "`auto` (one device, or all local GPUs mirrored), `mirrored` (TensorFlow's "
        "MirroredStrategy always) or `multi_worker` (several processes or machines, set up "
        "by `TF_CONFIG`; see [Training on several machines]"
        "(training.md#training-on-several-machines)); `batch_size` is the global batch"))
    augment: AugmentParams = field(default_factory=AugmentParams, metadata=doc(
        "random changes to the training images (below)"))
    fine_tune: FineTuneParams = field(default_factory=FineTuneParams, metadata=doc(
        "the fine-tuning phase of a pretrained backbone (below)"))


@dataclass(frozen=True)
class EvaluateParams:
    """How the model is scored; read by evaluate (and by predict and serve for tta)."""

    batch_size: int = field(default=64, metadata=doc("images per model call when scoring"))
    splits: list[str] = field(default_factory=lambda: ["val", "test"], metadata=doc(
        "the scored splits, of `train`, `val`, `test`; must include `test` (the plots are "
        "drawn for test)"))
    tta: Tta = field(default="flip", metadata=doc(
        "test-time augmentation: `flip` scores each image and its mirror image and averages "
        "the probabilities (twice the compute at evaluation; on the animals it turns 442 of "
        "450 test photos right into 444, ~0.4 points); `none` scores the image alone. "
        "`imgclf predict` and `imgclf serve` use the same setting"))


@dataclass(frozen=True)
class ExportParams:
    """The export stage: which formats to write from the trained model, and their bounds.

    A format that misses its bound fails the stage, saying by how much (see
    [Export](export.md)).
    """

    formats: list[ExportFormat] = field(
        default_factory=lambda: ["savedmodel", "tflite_float16", "tflite_int8", "onnx"],
        metadata=doc(
        "the formats the export stage writes, of `savedmodel`, `tflite_float16`, "
        "`tflite_int8`, `onnx` (see [Export](export.md))"))
    int8_samples: int = field(default=300, metadata=doc(
        "training images (never val or test) that calibrate the int8 model"))
    batch_size: int = field(default=64, metadata=doc(
        "images per call when the export stage scores the test split (its throughput "
        "figure)"))
    latency_runs: int = field(default=100, metadata=doc(
        "single-image calls timed per format (median and p95 latency)"))
    min_agreement: float = field(default=0.995, metadata=doc(
        "SavedModel, ONNX and float16 must pick the Keras model's top class on at least "
        "this fraction of the test images"))
    int8_max_accuracy_drop: float = field(default=0.01, metadata=doc(
        "int8 may lose at most this much test accuracy against the Keras model (a "
        "fraction: 0.01 = 1 point)"))
    int8_max_size_ratio: float = field(default=0.35, metadata=doc(
        "int8's file size may be at most this fraction of the `.keras` file's"))


@dataclass(frozen=True)
class WandbParams:
    """Weights & Biases tracking of train and evaluate; it never changes an output.

    No stage lists these keys in dvc.yaml, so changing them reruns nothing. The API key
    is not a param: it comes from ``WANDB_API_KEY`` in the environment or in ``.env``
    (see [Weights & Biases](tracking.md)); without one, runs are kept offline.
    """

    enabled: bool = field(default=True, metadata=doc(
        "track train and evaluate; `false` = no W&B at all (as does the environment's "
        "`WANDB_MODE=disabled`)"))
    project: str = field(default="imgclf", metadata=doc("the W&B project the runs go to"))
    entity: str = field(default="", metadata=doc(
        "W&B user or team; `\"\"` = the API key's default user or team (or "
        "`$WANDB_ENTITY`)"))
    group: str = field(default="", metadata=doc(
        "W&B group of the runs; `\"\"` = the DVC experiment's name, else the git revision, "
        "else `local`. `make compare` sets one group per sweep"))
    log_model: bool = field(default=True, metadata=doc(
        "upload `models/model.keras` as a `model` artifact"))
    log_manifest: bool = field(default=True, metadata=doc(
        "upload `data/prepared/manifest.csv` as a `dataset` artifact"))
    misclassified: int = field(default=32, metadata=doc(
        "most rows of the W&B table of misclassified test images; `0` = no table"))


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml."""

    data: DataParams = field(default_factory=DataParams, metadata=doc("the images"))
    split: SplitParams = field(default_factory=SplitParams, metadata=doc("the split"))
    model: ModelParams = field(default_factory=ModelParams, metadata=doc("the model"))
    train: TrainParams = field(default_factory=TrainParams, metadata=doc("training"))
    evaluate: EvaluateParams = field(default_factory=EvaluateParams, metadata=doc("scoring"))
    export: ExportParams = field(default_factory=ExportParams, metadata=doc(
        "the deployable formats"))
    wandb: WandbParams = field(default_factory=WandbParams, metadata=doc(
        "Weights & Biases tracking"))


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
    _require(0 <= s.near_duplicates < 1,
             f"split.near_duplicates: must be in [0, 1) (0 = byte-identical copies only), "
             f"got {s.near_duplicates}")
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
    if p.model.arch in BACKBONES:
        # Keras Applications refuse smaller inputs (five stride-2 stages).
        _require(p.data.image_size >= 32, f"data.image_size: {p.model.arch} needs at least "
                 f"32, got {p.data.image_size}")

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

    x = p.export
    _require(bool(x.formats), "export.formats: must list at least one format; choose from "
             f"{', '.join(get_args(ExportFormat))}")
    _require(len(set(x.formats)) == len(x.formats), "export.formats: lists a format twice")
    for name in ("int8_samples", "batch_size", "latency_runs"):
        value = getattr(x, name)
        _require(value >= 1, f"export.{name}: must be at least 1, got {value}")
    _require(0 <= x.min_agreement <= 1,
             f"export.min_agreement: must be between 0 and 1, got {x.min_agreement}")
    _require(0 <= x.int8_max_accuracy_drop <= 1, "export.int8_max_accuracy_drop: must be "
             f"between 0 and 1 (a fraction: 0.01 = 1 point), got {x.int8_max_accuracy_drop}")
    _require(x.int8_max_size_ratio > 0,
             f"export.int8_max_size_ratio: must be above 0, got {x.int8_max_size_ratio}")

    w = p.wandb
    _require(w.project.strip() != "", "wandb.project: must not be empty; e.g. imgclf")
    for name in ("project", "entity"):
        value = getattr(w, name)
        bad = sorted({c for c in value if c in WANDB_NAME_FORBIDDEN})
        _require(not bad, f"wandb.{name}: {value!r} has characters W&B does not allow: "
                 f"{' '.join(map(repr, bad))}")
    _require(w.misclassified >= 0,
             f"wandb.misclassified: must be 0 or more, got {w.misclassified}")

"""Every setting of the pipeline, loaded once from ``params.yaml`` into typed objects.

``load_params`` checks the whole file: an unknown or misspelt key, a wrong type or a
value out of range stops the stage with one line naming the key and what is allowed.
(``dvc exp run -S train.optimiser=sgd`` would otherwise add a key nobody reads and
train with the default, silently.)

Each pydantic model below is one section of ``params.yaml``, with the project's
defaults and the rules of its values. What each key means is in ``imgclf.params_help``,
which no stage imports: every stage depends on this file, so a description here would
rerun them all when its wording changes. ``make docs`` writes docs/params.md from both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

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
SplitName = Literal["train", "val", "test"]
ExportFormat = Literal["savedmodel", "tflite_float16", "tflite_int8", "onnx"]
CrossClass = Literal["keep", "drop", "error"]
Encoding = Literal["source", "jpeg", "png", "raw"]
OodMethod = Literal["msp", "energy", "mahalanobis"]  # the scores a model can compute in-graph
Activation = Literal["relu", "gelu", "swish", "elu", "tanh", "sigmoid", "linear"]
# MobileNetV2 widths Keras can build, and those whose ImageNet weights are pinned.
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
PRETRAINED_ALPHAS = (0.35, 0.5)
# Characters W&B does not accept in project and entity names.
WANDB_NAME_FORBIDDEN = "/\\#?%:"
# Why a range is what it is, said after it in the error.
_WHY = {
    "split.val": "training validates on it every epoch",
    "split.test": "evaluate scores the test split",
    "split.near_duplicates": "0 = byte-identical copies only",
    "export.int8_max_accuracy_drop": "a fraction: 0.01 = 1 point",
}


class ParamsError(UserError):
    """A bad value in params.yaml; the message names the key."""


class Section(BaseModel):
    """A mapping of params.yaml. Strict as YAML is typed: a bool is no number, ``"10"`` no
    integer and ``64.0`` no integer either; an integer widens to a float; NaN and
    infinities are refused; an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _fail(text: str, key: str = "") -> NoReturn:
    """Refuse a value: ``text`` says what is allowed. ``key`` (the full dotted key) names
    what a section's rule refuses; a field's rule leaves it out: pydantic knows the field."""
    raise PydanticCustomError("params_rule", "{text}", {"text": text, "key": key})


def _rule(check: Callable[[Any], None]) -> AfterValidator:
    """A field validator from ``check``, which calls ``_fail`` on a bad value."""
    def run(value: Any) -> Any:
        check(value)
        return value
    return AfterValidator(run)


def _off_or(low: float, high: float, example: str) -> AfterValidator:
    """0 (the feature off) or a value in ``[low, high)``."""
    def check(value: float) -> None:
        if value != 0 and not low <= value < high:
            _fail(f"must be 0 (off) or in [{low:g}, {high:g}), e.g. {example}, got {value}")
    return _rule(check)


def _not_blank(advice: str) -> AfterValidator:
    def check(value: str) -> None:
        if not value.strip():
            _fail(f"must not be empty; {advice}")
    return _rule(check)


def _each_once(what: str) -> AfterValidator:
    def check(values: list[str]) -> None:
        if len(set(values)) != len(values):
            _fail(f"lists a {what} twice")
    return _rule(check)


def _wandb_name(value: str) -> None:
    bad = sorted({c for c in value if c in WANDB_NAME_FORBIDDEN})
    if bad:
        _fail(f"{value!r} has characters W&B does not allow: {' '.join(map(repr, bad))}")


def _has_test(splits: list[str]) -> None:
    if "test" not in splits:
        _fail("must include test")


def _some_format(formats: list[str]) -> None:
    if not formats:
        _fail("must list at least one format; choose from "
              f"{', '.join(get_args(ExportFormat))}")


Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, le=1)]  # a share of each class
WandbName = Annotated[str, _rule(_wandb_name)]


class DataParams(Section):
    """data: read by source, download and split."""

    source: Annotated[str, _not_blank(f"use {DEFAULT_SOURCE!r}, a URL or a folder")] = (
        DEFAULT_SOURCE)
    image_size: int = Field(224, ge=16, le=1024)


class SplitParams(Section):
    """split: read by split."""

    train: Fraction = 0.7
    val: Fraction = 0.15
    test: Fraction = 0.15
    seed: int = 42
    near_duplicates: float = Field(0.11, ge=0, lt=1)
    cross_class_duplicates: CrossClass = "keep"
    encoding: Encoding = "source"
    quality: int = Field(90, ge=1, le=100)
    shard_mb: float = Field(128.0, gt=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            _fail(f"must sum to 1, got {total:g}", "split.train + split.val + split.test")
        return self


class AuditParams(Section):
    """audit: read by audit."""

    enabled: bool = True
    folds: int = Field(5, ge=2, le=20)
    duplicate_similarity: float = Field(0.95, gt=0, le=1)
    grid_images: int = Field(24, ge=1, le=200)
    seed: int = 42


# The layers of ``model.arch: custom``, each ``{type: ..., <key>: <value>}``; pydantic
# picks the model by ``type``.
class ConvLayer(Section):
    type: Literal["conv"] = "conv"
    filters: Positive
    kernel: Positive = 3
    strides: Positive = 1
    activation: Activation = "relu"


class SeparableConvLayer(Section):
    type: Literal["separable_conv"] = "separable_conv"
    filters: Positive
    kernel: Positive = 3
    strides: Positive = 1
    activation: Activation = "relu"


class MaxPoolLayer(Section):
    type: Literal["max_pool"] = "max_pool"
    size: Positive = 2


class AvgPoolLayer(Section):
    type: Literal["avg_pool"] = "avg_pool"
    size: Positive = 2


class GlobalAvgPoolLayer(Section):
    type: Literal["global_avg_pool"] = "global_avg_pool"


class FlattenLayer(Section):
    type: Literal["flatten"] = "flatten"


class BatchNormLayer(Section):
    type: Literal["batch_norm"] = "batch_norm"


class DenseLayer(Section):
    type: Literal["dense"] = "dense"
    units: Positive
    activation: Activation = "relu"


class DropoutLayer(Section):
    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1)


Layer = Annotated[ConvLayer | SeparableConvLayer | MaxPoolLayer | AvgPoolLayer
                  | GlobalAvgPoolLayer | FlattenLayer | BatchNormLayer | DenseLayer
                  | DropoutLayer, Field(discriminator="type")]
# type -> its model, in the order of Layer.
LAYER_TYPES: dict[str, type[Section]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(Layer)[0])}


class ModelParams(Section):
    """model: read by pretrained and train."""

    arch: Arch = "mobilenet_v2"
    dropout: float = Field(0.2, ge=0, lt=1)
    alpha: float = 0.5
    pretrained: bool = True
    layers: list[Layer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fits_the_arch(self) -> ModelParams:
        if self.arch == "custom" and not self.layers:
            _fail("needed when model.arch is custom; list layers such as "
                  "{type: conv, filters: 32}", "model.layers")
        if self.arch != "custom" and self.layers:
            _fail(f"only used when model.arch is custom (it is {self.arch}); remove it or "
                  "set model.arch: custom", "model.layers")
        alphas = PRETRAINED_ALPHAS if self.pretrained else MOBILENET_ALPHAS
        if self.arch == "mobilenet_v2" and self.alpha not in alphas:
            weights = " with pretrained weights" if self.pretrained else ""
            _fail(f"{self.alpha:g} is not valid for mobilenet_v2{weights}; choose one of "
                  f"{', '.join(f'{a:g}' for a in alphas)}", "model.alpha")
        return self


class AugmentParams(Section):
    """train.augment: read by train."""

    flip: bool = True
    rotation: float = Field(0.0, ge=0, lt=1)
    zoom: float = Field(0.0, ge=0, lt=1)
    contrast: float = Field(0.0, ge=0, lt=1)
    crop: Annotated[float, _off_or(0.05, 1, "0.25")] = 0.0
    mixup: float = Field(0.0, ge=0, le=1)


class FineTuneParams(Section):
    """train.fine_tune: read by train."""

    epochs: int = Field(2, ge=0)
    learning_rate: float = Field(0.00002, gt=0)
    layers: int = Field(30, ge=0)


class TrainParams(Section):
    """train: read by train."""

    optimizer: Optimizer = "adam"
    learning_rate: float = Field(0.001, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    loss: Loss = "sparse_categorical_crossentropy"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    batch_size: Positive = 32
    epochs: Positive = 4
    early_stopping_patience: int = Field(3, ge=0)
    seed: int = 42
    class_weight: ClassWeight = "none"
    lr_schedule: LrSchedule = "constant"
    warmup_epochs: int = Field(0, ge=0)
    ema: Annotated[float, _off_or(0.9, 1, "0.99")] = 0.0
    deterministic: bool = True
    mixed_precision: bool = False
    jit_compile: bool = False
    strategy: Strategy = "auto"
    augment: AugmentParams = Field(default_factory=AugmentParams)
    fine_tune: FineTuneParams = Field(default_factory=FineTuneParams)

    @model_validator(mode="after")
    def _fits_the_loss_and_epochs(self) -> TrainParams:
        one_hot = self.loss == "categorical_crossentropy"
        if self.label_smoothing and not one_hot:
            _fail(f"needs train.loss: categorical_crossentropy (it is {self.loss})",
                  "train.label_smoothing")
        if self.augment.mixup and not one_hot:
            _fail("needs train.loss: categorical_crossentropy (mixed labels are not class "
                  f"indices; it is {self.loss})", "train.augment.mixup")
        if self.warmup_epochs >= self.epochs:
            _fail(f"must be below train.epochs ({self.epochs}), got {self.warmup_epochs}",
                  "train.warmup_epochs")
        return self


class EvaluateParams(Section):
    """evaluate: read by evaluate (and by predict and serve for tta)."""

    batch_size: Positive = 64
    splits: Annotated[list[SplitName], _rule(_has_test), _each_once("split")] = Field(
        default_factory=lambda: ["val", "test"])
    tta: Tta = "flip"


class ExportParams(Section):
    """export: read by export."""

    formats: Annotated[list[ExportFormat], _rule(_some_format), _each_once("format")] = Field(
        default_factory=lambda: ["savedmodel", "tflite_float16", "tflite_int8", "onnx"])
    int8_samples: Positive = 300
    batch_size: Positive = 64
    latency_runs: Positive = 100
    min_agreement: float = Field(0.995, ge=0, le=1)
    int8_max_accuracy_drop: float = Field(0.01, ge=0, le=1)
    int8_max_size_ratio: float = Field(0.35, gt=0)
    strict: bool = False


class OodParams(Section):
    """ood: the unknown-input score; read by train (method, keep_rate), export (keep_rate,
    generated), evaluate, predict and serve (threshold) and the ood stage."""

    method: OodMethod = "energy"
    keep_rate: float = Field(0.95, gt=0, lt=1)
    threshold: float | None = None
    loco_classes: int = Field(10, ge=2)
    generated: Positive = 40
    seed: int = 0


class WandbParams(Section):
    """wandb: read by the tracker of train and evaluate; no stage lists these keys."""

    enabled: bool = True
    project: Annotated[WandbName, _not_blank("e.g. imgclf")] = "imgclf"
    entity: WandbName = ""
    group: str = ""
    log_model: bool = True
    log_manifest: bool = True
    misclassified: int = Field(32, ge=0)


class Params(Section):
    """Every section of params.yaml."""

    data: DataParams = Field(default_factory=DataParams)
    split: SplitParams = Field(default_factory=SplitParams)
    audit: AuditParams = Field(default_factory=AuditParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    export: ExportParams = Field(default_factory=ExportParams)
    ood: OodParams = Field(default_factory=OodParams)
    wandb: WandbParams = Field(default_factory=WandbParams)

    @model_validator(mode="after")
    def _image_fits_the_arch(self) -> Params:
        # Keras Applications refuse smaller inputs (five stride-2 stages), and compact's
        # stem and four poolings halve the image five times.
        arch, size = self.model.arch, self.data.image_size
        if (arch in BACKBONES or arch == "compact") and size < 32:
            _fail(f"{arch} needs at least 32, got {size}", "data.image_size")
        return self


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
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{source}: {error_line(exc.errors()[0])}") from None


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


def to_dict(params: BaseModel) -> dict[str, Any]:
    """The params as plain nested dicts, e.g. for logging them."""
    return params.model_dump()


# --- pydantic's errors as one line naming the key ---------------------------------------

_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string", "list_type": "a list", "finite_number": "a finite number"}
_BOUNDS = {"ge": "at least {}", "gt": "above {}", "le": "at most {}", "lt": "below {}"}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _locate(loc: tuple[int | str, ...]) -> tuple[str, Any, str, Any]:
    """Pydantic's ``loc`` as ``(dotted key, model holding its last field, that field's
    name, its type)``, e.g. ``("model.layers[2].filters", ConvLayer, "filters", int)``."""
    key, owner, name, tp = "", Params, "", Params
    for part in loc:
        if isinstance(part, int):  # an item of a list
            key += f"[{part}]"
            tp = next(iter(get_args(tp)), None)
        elif not _is_model(tp) and part in LAYER_TYPES:  # the layer type a union picked
            tp = LAYER_TYPES[part]
        else:
            owner, name = tp, str(part)
            key = f"{key}.{part}" if key else str(part)
            field = tp.model_fields.get(part) if _is_model(tp) else None
            tp = field.annotation if field else None
    return key, owner, name, tp


def _allowed(field: FieldInfo) -> str:
    """A field's range in words: ``between 0 and 1``, ``in [0, 1)``, ``at least 1``, ..."""
    b = {k: f"{getattr(m, k):g}" for m in field.metadata for k in _BOUNDS
         if getattr(m, k, None) is not None}
    if b.keys() == {"ge", "le"}:
        return f"between {b['ge']} and {b['le']}"
    if b.keys() == {"ge", "lt"}:
        return f"in [{b['ge']}, {b['lt']})"
    if b == {"ge": "0"}:
        return "0 or more"
    return " and ".join(_BOUNDS[k].format(v) for k, v in sorted(b.items()))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _value_error(error: ErrorDetails, key: str, owner: Any, name: str, tp: Any) -> str:
    """The message of a value of the wrong type, not one of the choices, or out of range."""
    kind, value = error["type"], error["input"]
    if kind == "float_type" and type(value) is int:  # too large for a float
        kind = "finite_number"
    if kind in _EXPECTED:
        return f"{key}: expected {_EXPECTED[kind]}, got {_shown(value)}"
    if kind == "literal_error":
        return f"{key}: {_shown(value)} is not valid; choose one of {', '.join(get_args(tp))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        why = f" ({_WHY[key]})" if key in _WHY else ""
        return f"{key}: must be {_allowed(owner.model_fields[name])}{why}, got {value}"
    return f"{key}: {error['msg']}"  # none of ours: in pydantic's words


def _unknown_key(key: str, owner: type[BaseModel], layer: str) -> str:
    if layer:
        names = [n for n in owner.model_fields if n != "type"]
        return f"unknown key for a {layer} layer; valid keys are {', '.join(names) or '(none)'}"
    section = key.rpartition(".")[0] or "params"
    return f"unknown key; valid keys in {section} are {', '.join(owner.model_fields)}"


def error_line(error: ErrorDetails) -> str:
    """One pydantic error as one line that starts with the dotted key it is about."""
    key, owner, name, tp = _locate(error["loc"])
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    layer = next((t for t, cls in LAYER_TYPES.items() if cls is owner), "")
    if kind == "params_rule":
        return f"{ctx['key'] or key}: {ctx['text']}"
    if kind == "extra_forbidden":
        return f"{key}: {_unknown_key(key, owner, layer)}"
    if kind == "missing":
        return f"{key}: required for a {layer} layer" if layer else f"{key}: required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{key or 'params'}: expected a mapping of keys, got {_shown(value)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        wrong = f"{_shown(value.get('type'))} is not valid" if "type" in value else "required"
        return f"{key}.type: {wrong}; choose one of {', '.join(LAYER_TYPES)}"
    return _value_error(error, key, owner, name, tp)

"""Tests of params.yaml loading and validation (imgclf.params)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from imgclf.errors import UserError
from imgclf.params import (
    AugmentParams,
    DataParams,
    EvaluateParams,
    ModelParams,
    Params,
    ParamsError,
    SplitParams,
    TrainParams,
    WandbParams,
    flat_keys,
    load_params,
    params_from_dict,
    to_dict,
)

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"


def error_of(raw: Any) -> str:
    """The message of the ParamsError that ``raw`` raises; it must be a single line."""
    with pytest.raises(ParamsError) as info:
        params_from_dict(raw)
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    return message


def custom(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"arch": "custom", "layers": list(layers)}}


# --- loading --------------------------------------------------------------------------


def test_empty_mapping_gives_the_defaults() -> None:
    p = params_from_dict({})
    assert p == Params()
    assert p.data.image_size == 224
    assert (p.split.train, p.split.val, p.split.test) == (0.7, 0.15, 0.15)
    assert p.model.arch == "mobilenet_v2"
    assert p.model.layers == []
    assert p.train.optimizer == "adam"
    assert p.train.augment.flip is True
    assert p.evaluate.splits == ["val", "test"]


def test_params_error_is_a_user_error() -> None:
    assert issubclass(ParamsError, UserError)


def test_repo_params_yaml_loads() -> None:
    p = load_params(REPO_PARAMS)
    assert isinstance(p, Params)
    assert isinstance(p.data, DataParams)
    assert isinstance(p.split, SplitParams)
    assert isinstance(p.model, ModelParams)
    assert isinstance(p.train, TrainParams)
    assert isinstance(p.train.augment, AugmentParams)
    assert isinstance(p.evaluate, EvaluateParams)
    assert p.split.train + p.split.val + p.split.test == pytest.approx(1.0)
    assert "test" in p.evaluate.splits


def test_repo_params_yaml_holds_exactly_the_defaults() -> None:
    # params.yaml documents the defaults: the two must never drift apart.
    assert load_params(REPO_PARAMS) == Params()


def test_empty_yaml_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("# nothing set\n", encoding="utf-8")
    assert load_params(path) == Params()


def test_values_from_a_file_are_used(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "data:\n  image_size: 64\n"
        "split: {train: 0.5, val: 0.25, test: 0.25, seed: 7}\n"
        "train:\n  optimizer: sgd\n  augment:\n    flip: false\n    zoom: 0.1\n",
        encoding="utf-8",
    )
    p = load_params(path)
    assert p.data.image_size == 64
    assert (p.split.train, p.split.val, p.split.test, p.split.seed) == (0.5, 0.25, 0.25, 7)
    assert p.train.optimizer == "sgd"
    assert p.train.augment.flip is False
    assert p.train.augment.zoom == 0.1
    # Unset keys keep their defaults.
    assert p.train.learning_rate == TrainParams().learning_rate
    assert p.model == ModelParams()


def test_to_dict_round_trips() -> None:
    p = params_from_dict({"train": {"epochs": 3, "augment": {"rotation": 0.1}}})
    d = to_dict(p)
    assert d["train"]["epochs"] == 3
    assert d["train"]["augment"]["rotation"] == 0.1
    assert params_from_dict(d) == p


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  image_size: 64\ntrain: [unclosed\n  epochs: 3\n", encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "YAML" in message
    assert "line " in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamsError, match="not found") as info:
        load_params(path)
    assert str(path) in str(info.value)


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)


def test_error_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my-params.yaml"
    path.write_text("train:\n  epochs: 0\n", encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(path) in str(info.value)
    assert "train.epochs" in str(info.value)


# --- unknown keys ---------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    message = error_of({"trian": {"epochs": 3}})
    assert "trian" in message
    for key in ("data", "split", "model", "train", "evaluate"):
        assert key in message


def test_unknown_nested_key_names_the_full_key_and_valid_ones() -> None:
    message = error_of({"train": {"optimiser": "sgd"}})
    assert "train.optimiser" in message
    assert "unknown" in message
    for key in ("optimizer", "learning_rate", "momentum", "batch_size", "augment"):
        assert key in message


def test_unknown_key_two_levels_down() -> None:
    message = error_of({"train": {"augment": {"flips": True}}})
    assert "train.augment.flips" in message
    assert "rotation" in message


def test_section_that_is_not_a_mapping() -> None:
    message = error_of({"train": 3})
    assert "train" in message
    assert "mapping" in message


# --- types ----------------------------------------------------------------------------


def test_string_for_int() -> None:
    message = error_of({"train": {"epochs": "10"}})
    assert "train.epochs" in message
    assert "integer" in message


def test_bool_for_int_is_refused() -> None:
    message = error_of({"train": {"batch_size": True}})
    assert "train.batch_size" in message


def test_float_for_int_is_refused() -> None:
    message = error_of({"data": {"image_size": 64.5}})
    assert "data.image_size" in message


def test_int_accepted_for_float() -> None:
    p = params_from_dict({"train": {"learning_rate": 1, "weight_decay": 0}})
    assert p.train.learning_rate == 1.0
    assert isinstance(p.train.learning_rate, float)
    assert isinstance(p.train.weight_decay, float)


def test_bool_for_float_is_refused() -> None:
    message = error_of({"model": {"dropout": False}})
    assert "model.dropout" in message


def test_string_for_bool_is_refused() -> None:
    message = error_of({"train": {"augment": {"flip": "yes"}}})
    assert "train.augment.flip" in message


def test_non_finite_float_is_refused() -> None:
    message = error_of({"train": {"learning_rate": float("nan")}})
    assert "train.learning_rate" in message


def test_null_value_is_refused() -> None:
    message = error_of({"data": {"source": None}})
    assert "data.source" in message


def test_unknown_arch_lists_choices() -> None:
    message = error_of({"model": {"arch": "huge"}})
    assert "model.arch" in message
    assert "huge" in message
    for choice in ("small", "medium", "large", "custom"):
        assert choice in message


def test_unknown_optimizer_lists_choices() -> None:
    message = error_of({"train": {"optimizer": "adagrad"}})
    assert "train.optimizer" in message
    for choice in ("adam", "adamw", "sgd", "rmsprop"):
        assert choice in message


def test_strategy_defaults_to_auto_and_reads_each_choice() -> None:
    assert Params().train.strategy == "auto"
    for name in ("auto", "mirrored", "multi_worker"):
        assert params_from_dict({"train": {"strategy": name}}).train.strategy == name


def test_unknown_strategy_lists_choices() -> None:
    message = error_of({"train": {"strategy": "parameter_server"}})
    assert message.startswith("params.yaml: train.strategy: 'parameter_server' is not valid")
    assert "choose one of auto, mirrored, multi_worker" in message


def test_splits_must_be_a_list() -> None:
    message = error_of({"evaluate": {"splits": "test"}})
    assert "evaluate.splits" in message


# --- value rules ----------------------------------------------------------------------


def test_fractions_must_sum_to_one() -> None:
    message = error_of({"split": {"train": 0.8, "val": 0.15, "test": 0.15}})
    assert "sum to 1" in message
    assert "1.1" in message


def test_fractions_summing_to_one_in_floating_point_are_accepted() -> None:
    p = params_from_dict({"split": {"train": 0.6, "val": 0.1, "test": 0.3}})
    assert p.split.train == 0.6


@pytest.mark.parametrize("name", ["train", "val", "test"])
def test_zero_fraction_is_refused(name: str) -> None:
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    other = "train" if name != "train" else "val"
    fractions[other] += fractions[name]
    fractions[name] = 0.0
    message = error_of({"split": fractions})
    assert f"split.{name}" in message


def test_negative_fraction_is_refused() -> None:
    # The others are in range and the three sum to 1: only the sign is wrong.
    message = error_of({"split": {"train": 0.8, "val": -0.1, "test": 0.3}})
    assert message == ("params.yaml: split.val: must be above 0 and at most 1 (training "
                       "validates on it every epoch), got -0.1")


def test_negative_learning_rate() -> None:
    message = error_of({"train": {"learning_rate": -0.01}})
    assert "train.learning_rate" in message
    assert "-0.01" in message


def test_zero_learning_rate() -> None:
    assert "train.learning_rate" in error_of({"train": {"learning_rate": 0}})


@pytest.mark.parametrize(("section", "key", "value"), [
    ("data", "image_size", 8),
    ("data", "image_size", 4096),
    ("data", "source", "  "),
    ("model", "dropout", 1.0),
    ("train", "momentum", 1.5),
    ("train", "weight_decay", -1),
    ("train", "batch_size", 0),
    ("train", "epochs", 0),
    ("train", "early_stopping_patience", -1),
    ("train", "warmup_epochs", -1),
    ("train", "warmup_epochs", 4),  # not below train.epochs (4)
    ("train", "ema", 0.5),
    ("train", "ema", 1.0),
    ("evaluate", "batch_size", 0),
])
def test_out_of_range_values(section: str, key: str, value: Any) -> None:
    assert f"{section}.{key}" in error_of({section: {key: value}})


def test_augment_out_of_range() -> None:
    assert "train.augment.rotation" in error_of({"train": {"augment": {"rotation": 1.0}}})


@pytest.mark.parametrize("crop", [0.01, 1.0, -0.2])
def test_crop_out_of_range_names_the_key_and_an_example(crop: float) -> None:
    message = error_of({"train": {"augment": {"crop": crop}}})
    assert "train.augment.crop" in message and "0.25" in message


def test_label_smoothing_with_sparse_loss() -> None:
    message = error_of({"train": {"label_smoothing": 0.1}})
    assert "train.label_smoothing" in message
    assert "categorical_crossentropy" in message


def test_label_smoothing_with_categorical_loss_is_fine() -> None:
    p = params_from_dict({"train": {"label_smoothing": 0.1, "loss": "categorical_crossentropy"}})
    assert p.train.label_smoothing == 0.1


# --- model.layers ---------------------------------------------------------------------


def test_custom_arch_with_layers_loads() -> None:
    p = params_from_dict(custom(
        {"type": "conv", "filters": 16},
        {"type": "max_pool"},
        {"type": "separable_conv", "filters": 32, "kernel": 5, "activation": "gelu"},
        {"type": "global_avg_pool"},
        {"type": "dropout", "rate": 0},
        {"type": "dense", "units": 10},
    ))
    assert p.model.arch == "custom"
    assert [layer.type for layer in p.model.layers][:2] == ["conv", "max_pool"]


def test_custom_arch_without_layers() -> None:
    message = error_of({"model": {"arch": "custom"}})
    assert "model.layers" in message
    assert "custom" in message


def test_layers_for_a_non_custom_arch() -> None:
    message = error_of({"model": {"arch": "small", "layers": [{"type": "flatten"}]}})
    assert "model.layers" in message
    assert "small" in message


def test_bad_layer_type_lists_the_types() -> None:
    message = error_of(custom({"type": "conv", "filters": 8}, {"type": "convolution"}))
    assert "model.layers[1].type" in message
    assert "convolution" in message
    for kind in ("conv", "max_pool", "dense", "dropout"):
        assert kind in message


def test_layer_without_type() -> None:
    assert "model.layers[0].type" in error_of(custom({"filters": 8}))


def test_unhashable_layer_type() -> None:
    assert "model.layers[0].type" in error_of(custom({"type": ["conv"], "filters": 8}))


def test_unknown_layer_key_lists_valid_ones() -> None:
    message = error_of(custom({"type": "conv", "filters": 8, "kernel_size": 3}))
    assert "model.layers[0].kernel_size" in message
    for key in ("filters", "kernel", "strides", "activation"):
        assert key in message


def test_key_for_a_layer_without_keys() -> None:
    message = error_of(custom({"type": "flatten", "units": 3}))
    assert "model.layers[0].units" in message


def test_missing_required_layer_key() -> None:
    message = error_of(custom({"type": "max_pool"}, {"type": "conv"}))
    assert "model.layers[1].filters" in message
    assert "required" in message


def test_wrong_type_of_layer_value() -> None:
    message = error_of(custom({"type": "conv", "filters": "32"}))
    assert "model.layers[0].filters" in message


def test_layer_value_out_of_range() -> None:
    assert "model.layers[0].filters" in error_of(custom({"type": "conv", "filters": 0}))
    assert "model.layers[0].rate" in error_of(custom({"type": "dropout", "rate": 1.0}))


def test_bad_layer_activation() -> None:
    message = error_of(custom({"type": "dense", "units": 4, "activation": "leaky"}))
    assert "model.layers[0].activation" in message
    assert "relu" in message


def test_layer_that_is_not_a_mapping() -> None:
    assert "model.layers[0]" in error_of(custom("conv"))  # type: ignore[arg-type]


# --- evaluate.splits ------------------------------------------------------------------


def test_evaluate_splits_without_test() -> None:
    message = error_of({"evaluate": {"splits": ["train", "val"]}})
    assert "evaluate.splits" in message
    assert "test" in message


def test_evaluate_splits_unknown_name() -> None:
    message = error_of({"evaluate": {"splits": ["test", "holdout"]}})
    assert "evaluate.splits[1]" in message
    assert "holdout" in message


def test_evaluate_splits_duplicate() -> None:
    assert "evaluate.splits" in error_of({"evaluate": {"splits": ["test", "test"]}})


def test_integer_too_large_for_a_float(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: 1" + "0" * 400 + "\n", encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert "train.learning_rate" in str(info.value)
    assert "\n" not in str(info.value)


# --- wandb ------------------------------------------------------------------------------


def test_wandb_defaults_and_repo_values() -> None:
    assert Params().wandb == WandbParams(enabled=True, project="imgclf", entity="",
                                         log_model=True, log_manifest=True, misclassified=32)
    assert load_params(REPO_PARAMS).wandb == WandbParams()


def test_wandb_values_are_read() -> None:
    p = params_from_dict({"wandb": {"enabled": False, "project": "pets", "entity": "my-team",
                                    "log_model": False, "misclassified": 0}})
    assert p.wandb == WandbParams(enabled=False, project="pets", entity="my-team",
                                  log_model=False, misclassified=0)


def test_wandb_unknown_key_lists_the_valid_ones() -> None:
    message = error_of({"wandb": {"log_models": True}})
    assert "wandb.log_models: unknown key" in message
    assert "enabled, project, entity, group, log_model, log_manifest, misclassified" in message


def test_the_api_key_is_never_a_param() -> None:
    # The key belongs in the environment or .env: params.yaml is committed.
    assert "wandb.api_key: unknown key" in error_of({"wandb": {"api_key": "x"}})


@pytest.mark.parametrize("raw,expected", [
    ({"enabled": "yes"}, "wandb.enabled: expected true or false"),
    ({"project": ""}, "wandb.project: must not be empty"),
    ({"project": "a/b"}, "wandb.project: 'a/b' has characters W&B does not allow: '/'"),
    ({"entity": "team:x"}, "wandb.entity"),
    ({"misclassified": -1}, "wandb.misclassified: must be 0 or more"),
    ({"misclassified": 2.5}, "wandb.misclassified: expected an integer"),
])
def test_wandb_bad_values(raw: dict[str, Any], expected: str) -> None:
    assert expected in error_of({"wandb": raw})


def test_wandb_section_must_be_a_mapping() -> None:
    assert "wandb: expected a mapping" in error_of({"wandb": True})


def test_wandb_is_no_dvc_dependency() -> None:
    # W&B settings change no output, so editing them must rerun no stage.
    dvc_yaml = yaml.safe_load((REPO_PARAMS.parent / "dvc.yaml").read_text(encoding="utf-8"))
    for name, stage in dvc_yaml["stages"].items():
        listed = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
        assert not any(str(p).startswith("wandb") for p in listed), name


# --- export -----------------------------------------------------------------------------


def test_export_values_are_read() -> None:
    p = params_from_dict({"export": {"formats": ["onnx", "tflite_int8"], "int8_samples": 50,
                                     "int8_max_size_ratio": 0.5}})
    assert p.export.formats == ["onnx", "tflite_int8"]
    assert (p.export.int8_samples, p.export.int8_max_size_ratio) == (50, 0.5)
    assert load_params(REPO_PARAMS).export == Params().export


@pytest.mark.parametrize(("export", "message"), [
    ({"formats": ["tflite"]}, "export.formats[0]: 'tflite' is not valid; choose one of "
                              "savedmodel, tflite_float16, tflite_int8, onnx"),
    ({"formats": []}, "export.formats: must list at least one format"),
    ({"formats": ["onnx", "onnx"]}, "export.formats: lists a format twice"),
    ({"int8_samples": 0}, "export.int8_samples: must be at least 1, got 0"),
    ({"min_agreement": 99.5}, "export.min_agreement: must be between 0 and 1, got 99.5"),
    ({"int8_max_accuracy_drop": 1.5}, "export.int8_max_accuracy_drop: must be between 0 and 1"),
    ({"int8_max_size_ratio": 0}, "export.int8_max_size_ratio: must be above 0"),
])
def test_bad_export_values_name_the_key(export: dict, message: str) -> None:
    assert message in error_of({"export": export})


# --- every key -----------------------------------------------------------------------------


def _set(key: str, value: Any) -> dict[str, Any]:
    """``{"train": {"augment": {"crop": value}}}`` for ``"train.augment.crop"``."""
    raw: dict[str, Any] = {}
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


@pytest.mark.parametrize("key", [k for k, _ in flat_keys(to_dict(Params()))])
def test_a_value_of_the_wrong_type_names_its_key_in_one_line(key: str) -> None:
    default = dict(flat_keys(to_dict(Params())))[key]
    wrong = 12345 if isinstance(default, str) else {"a": "mapping"}
    message = error_of(_set(key, wrong))
    assert message.startswith(f"params.yaml: {key}: "), message
    assert "expected" in message or "is not valid; choose one of" in message, message


def test_custom_layers_get_their_defaults_and_round_trip() -> None:
    p = params_from_dict(custom({"type": "conv", "filters": 8}, {"type": "dropout", "rate": 0}))
    conv, dropout = p.model.layers
    assert (conv.kernel, conv.strides, conv.activation) == (3, 1, "relu")
    assert dropout.rate == 0.0 and isinstance(dropout.rate, float)
    assert to_dict(p)["model"]["layers"][0] == {"type": "conv", "filters": 8, "kernel": 3,
                                                 "strides": 1, "activation": "relu"}
    assert params_from_dict(to_dict(p)) == p


def test_a_layer_without_a_type_says_it_is_required() -> None:
    assert error_of(custom({"filters": 8})).startswith(
        "params.yaml: model.layers[0].type: required; choose one of conv, separable_conv")


def test_the_params_are_frozen() -> None:
    p = Params()
    with pytest.raises(ValueError, match="frozen"):
        p.train.epochs = 9  # type: ignore[misc]

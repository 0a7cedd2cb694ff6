"""The export stage on the session's tiny model: every format written, loaded back through
the runtimes predict uses, and scored against the Keras model; the bounds fail the stage.

One export of all four formats (module fixture ``exported``) serves most tests; the
bound test exports the int8 model alone with a bound it cannot meet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from imgclf import cli
from imgclf.data.shards import SplitImages, read_split
from imgclf.errors import UserError
from imgclf.export import stage
from imgclf.export.formats import FORMATS, bound_misses
from imgclf.export.representative import representative_images, spread_indices
from imgclf.inference.runtimes import (
    INPUT_NAME,
    SAVEDMODEL_INFO,
    UINT8_SIGNATURE,
    load_runtime,
    model_format,
    read_runtime_info,
)
from imgclf.models.saving import load_model
from imgclf.params import ExportParams

TIMING_KEYS = {"latency_ms_p50", "latency_ms_p95", "images_per_s"}


def path_of(folder: Path, fmt: str) -> Path:
    return folder / FORMATS[fmt].file


@pytest.fixture(scope="module")
def exported(tiny_prepared: Path, tiny_model: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``(export folder, metrics)`` of the stage on the tiny model, every format; the
    machine's figures (timings, byte sizes) under ``metrics["machine"]``."""
    root = tmp_path_factory.mktemp("export")
    stage.run(ExportParams(int8_samples=20, latency_runs=5), tiny_prepared, tiny_model,
              root / "export", root / "export.json")
    metrics = json.loads((root / "export.json").read_text())
    assert "machine" not in metrics
    machine = json.loads((root / "export_machine.json").read_text())
    return root / "export", {**metrics, "machine": machine}


@pytest.fixture(scope="module")
def keras_probs(tiny_prepared: Path, tiny_model: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(test images (N, S, S, 3) uint8, the Keras model's probabilities (N, C))``."""
    images, _ = read_split(tiny_prepared, "test")
    model, _ = load_model(tiny_model)
    return images, np.asarray(model.predict_on_batch(images.astype(np.float32))[0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips(fmt: str, exported: tuple[Path, dict], tiny_model: Path,
                                 keras_probs: tuple[np.ndarray, np.ndarray]) -> None:
    folder, metrics = exported
    path = path_of(folder, fmt)
    assert model_format(path) is FORMATS[fmt].runtime  # its file is what its runtime loads
    runtime = load_runtime(path)
    keras_info = read_runtime_info(tiny_model)  # class names and size travel
    assert (runtime.info.class_names, runtime.info.image_size) == (keras_info.class_names,
                                                                   keras_info.image_size)
    assert runtime.info.ood is not None and runtime.info.ood.fitted_with == fmt
    images, reference = keras_probs
    probs = runtime.predict_on_batch(images)
    assert probs.shape == reference.shape
    assert np.abs(probs - reference).max() < FORMATS[fmt].tolerance
    agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    assert agree >= 0.995
    row = metrics[fmt]
    assert row["agreement"] == round(agree, 4)
    assert row["max_prob_diff"] == round(float(np.abs(probs - reference).max()), 3)
    assert row["confident_disagreements"] == 0 and row["confident_agreement"] == 1.0
    assert row["accuracy_delta"] == pytest.approx(row["accuracy"] - metrics["keras"]["accuracy"],
                                                  abs=1e-4)
    timed = metrics["machine"][fmt]
    assert timed["size_bytes"] > 0 and timed["latency_ms_p50"] > 0 and timed["images_per_s"] > 0
    assert timed["latency_ms_p95"] >= timed["latency_ms_p50"]
    # A batch of another size (LiteRT resizes its tensors) and a single image.
    assert np.allclose(runtime.predict_on_batch(images[:1]), probs[:1], atol=1e-5)


def test_metrics_hold_keras_beside_every_format(exported: tuple[Path, dict],
                                                tiny_prepared: Path, tiny_model: Path) -> None:
    _, metrics = exported
    _, labels = read_split(tiny_prepared, "test")
    assert metrics["test_images"] == len(labels)
    assert metrics["int8_calibration"] == {"split": "train", "images": 20}
    assert metrics["soft_misses"] == []
    machine = metrics["machine"]
    assert machine["keras"]["size_bytes"] == tiny_model.stat().st_size
    for fmt in FORMATS:
        ratio = machine[fmt]["size_bytes"] / machine["keras"]["size_bytes"]
        assert metrics[fmt]["size_ratio"] == round(ratio, 3)
    # int8 weights take half the bytes of float16's (plus the file's fixed overhead)
    assert machine["tflite_int8"]["size_bytes"] < 0.6 * machine["tflite_float16"]["size_bytes"]


def test_committed_metrics_hold_no_machine_figures(exported: tuple[Path, dict]) -> None:
    """What another machine measures differently goes to the git-ignored file beside it."""
    _, metrics = exported
    for fmt in ("keras", *FORMATS):
        assert not TIMING_KEYS & metrics[fmt].keys() and "size_bytes" not in metrics[fmt]
        assert TIMING_KEYS | {"size_bytes"} == metrics["machine"][fmt].keys()
    # Rounded to what a rerun reproduces: 4 decimals, size ratios 3.
    for fmt in FORMATS:
        assert all(round(v, 4) == v for v in metrics[fmt].values())
        assert round(metrics[fmt]["size_ratio"], 3) == metrics[fmt]["size_ratio"]


def test_savedmodel_serves_float_and_uint8_in_serving_layout(
        exported: tuple[Path, dict], keras_probs: tuple[np.ndarray, np.ndarray]) -> None:
    import tensorflow as tf

    folder = path_of(exported[0], "savedmodel")
    version = folder / "1"  # TensorFlow Serving's <base>/<version>/ layout
    assert (version / "saved_model.pb").is_file()
    assert json.loads((version / SAVEDMODEL_INFO).read_text())["class_names"] == [
        "blue", "green", "red"]
    loaded = tf.saved_model.load(str(version))
    images, reference = keras_probs
    as_float = loaded.signatures["serving_default"](
        **{INPUT_NAME: tf.constant(images.astype(np.float32))})["probabilities"]
    as_uint8 = loaded.signatures[UINT8_SIGNATURE](
        **{INPUT_NAME: tf.constant(images)})["probabilities"]
    assert np.allclose(as_float.numpy(), reference, atol=1e-5)
    assert np.allclose(as_uint8.numpy(), reference, atol=1e-5)
    # The version folder itself loads too.
    assert load_runtime(version).predict_on_batch(images[:2]).shape == (2, 3)


def test_int8_model_is_full_integer(exported: tuple[Path, dict]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path_of(exported[0], "tflite_int8")))
    (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()
    # Two outputs: the probabilities (B, C) and the OOD score (B,).
    assert sorted(len(out["shape"]) for out in outs) == [1, 2]
    assert inp["dtype"] == np.uint8 and all(out["dtype"] == np.float32 for out in outs)
    # Every tensor between them (weights, activations) is int8, or int32 (biases, shapes),
    # but the OOD score's last step: the converter computes logsumexp's guard (IsFinite)
    # and sum in float, after the int8 logits (a few values per image).
    ends = {inp["index"], *(out["index"] for out in outs)}
    inner = [t for t in interpreter.get_tensor_details() if t["index"] not in ends
             and "ood_score" not in t["name"] and t["name"] != "tfl.dequantize"]
    assert inner and all(t["dtype"] in (np.int8, np.int32) for t in inner), \
        [(t["name"], t["dtype"]) for t in inner if t["dtype"] not in (np.int8, np.int32)]


def test_int8_representative_images_are_only_training_images(tiny_prepared: Path) -> None:
    train = SplitImages(tiny_prepared, "train")
    picked = representative_images(tiny_prepared, 10)
    assert picked.shape == (10, 16, 16, 3) and picked.dtype == np.uint8
    train_bytes = {train[i].tobytes() for i in range(len(train))}
    held_out = {img.tobytes() for split in ("val", "test")
                for img in read_split(tiny_prepared, split)[0]}
    assert all(img.tobytes() in train_bytes for img in picked)
    assert not any(img.tobytes() in held_out for img in picked)
    assert len({img.tobytes() for img in picked}) == 10  # no image twice
    # More than the split holds: all of it.
    assert len(representative_images(tiny_prepared, 10_000)) == len(train)


def test_representative_indices_spread_over_the_split() -> None:
    idx = spread_indices(1000, 4)
    assert idx.tolist() == sorted(set(idx.tolist())) and len(idx) == 4
    assert idx[0] == 0 and idx[-1] == 999
    assert np.diff(idx).min() >= 300  # spread, not the first four
    assert spread_indices(3, 10).tolist() == [0, 1, 2]
    assert len(spread_indices(0, 10)) == 0


def test_a_missed_bound_fails_the_stage_with_one_line(
        tiny_prepared: Path, tiny_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    params = {"export": {"formats": ["tflite_int8"], "int8_samples": 10, "latency_runs": 3,
                         "int8_max_size_ratio": 0.01}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    metrics = tmp_path / "export.json"
    status = cli.main(["export", "--params", str(tmp_path / "params.yaml"),
                       "--data", str(tiny_prepared), "--model", str(tiny_model),
                       "--out", str(tmp_path / "export"), "--metrics", str(metrics)])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = err[-1]
    assert line.startswith("imgclf export: error: missed bounds: tflite_int8 is ")
    machine = json.loads((tmp_path / "export_machine.json").read_text())
    ratio = machine["tflite_int8"]["size_bytes"] / machine["keras"]["size_bytes"]
    assert f"{ratio:.3f}x the size of the .keras file, {ratio - 0.01:.3f}x over " \
           "export.int8_max_size_ratio (0.01x)" in line
    assert "savedmodel" not in line and "accuracy" not in line  # those bounds were met
    # The metrics are there to look at, and the file that missed too.
    assert path_of(tmp_path / "export", "tflite_int8").is_file()


def agreeing(agreement: float, confident: float = 1.0) -> dict[str, float]:
    return {"agreement": agreement, "confident_agreement": confident, "max_prob_diff": 0.02}


def test_bound_misses_say_which_and_by_how_much() -> None:
    good = {"keras": {"accuracy": 0.98}, "savedmodel": agreeing(1.0),
            "onnx": agreeing(0.999), "tflite_float16": agreeing(0.996),
            "tflite_int8": {"accuracy": 0.971, "size_ratio": 0.3}}
    assert bound_misses(good, ExportParams()) == []
    bad = {**good, "onnx": agreeing(0.99, confident=0.99),
           "tflite_int8": {"accuracy": 0.96, "size_ratio": 0.3}}
    misses = bound_misses(bad, ExportParams())
    assert [(m.text, m.soft) for m in misses] == [
        ("onnx agrees with the Keras model on 99.00% of the test images it is confident on "
         "(top probability 60% or more), 0.50 points below export.min_agreement (99.50%)",
         False),
        ("tflite_int8 test accuracy 0.9600 is 2.00 points below the Keras model's 0.9800, "
         "1.00 points more than export.int8_max_accuracy_drop (0.01) allows", False),
    ]
    # A NaN (nothing scored) is a miss, not a pass.
    assert bound_misses({**good, "savedmodel": agreeing(float("nan"))}, ExportParams())


def test_disagreeing_only_where_keras_is_unsure_is_a_soft_miss() -> None:
    rows = {"keras": {"accuracy": 0.98}, "tflite_float16": agreeing(0.97, confident=1.0)}
    (miss,) = bound_misses(rows, ExportParams())
    assert miss.soft
    assert miss.text == (
        "tflite_float16 agrees with the Keras model on 97.00% of the test images, 2.50 "
        "points below export.min_agreement (99.50%), but on 100.00% of those the Keras model "
        "is confident on (largest probability difference 0.020): wobble at the decision "
        "boundary")


def test_export_starts_from_a_keras_file(tiny_prepared: Path, tmp_path: Path) -> None:
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match=r"starts from a \.keras model file"):
        stage.run(ExportParams(), tiny_prepared, other, tmp_path / "e", tmp_path / "m.json")


# --- predict and evaluate take every format -------------------------------------------------


def _predict_json(paths: list[str], model: Path, capsys: pytest.CaptureFixture[str]) -> list:
    status = cli.main(["predict", *paths, "--model", str(model), "--format", "json",
                       "--tta", "flip", "--params", "no-such-params.yaml"])
    assert status == 0
    return json.loads(capsys.readouterr().out)


def test_predict_answers_alike_with_every_format(
        exported: tuple[Path, dict], tiny_model: Path, tmp_path: Path,
        image_folder: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    photos = image_folder(tmp_path / "photos", ["red", "green", "blue"], per_class=3, seed=7)
    expected = _predict_json([str(photos)], tiny_model, capsys)
    assert len(expected) == 9
    for fmt in FORMATS:
        got = _predict_json([str(photos)], path_of(exported[0], fmt), capsys)
        assert [r["path"] for r in got] == [r["path"] for r in expected]
        assert [r["predicted"] for r in got] == [r["predicted"] for r in expected], fmt
        assert all(len(r["top_k"]) == 3 for r in got)  # same output shape
        assert all(set(r) == {"path", "predicted", "confidence", "unknown", "ood_score",
                              "top_k"} for r in got)


def test_evaluate_scores_every_format(exported: tuple[Path, dict], tiny_model: Path,
                                      tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    photos = image_folder(tmp_path / "photos", ["red", "green", "blue"], per_class=4, seed=3)
    scores = {}
    for fmt, path in [("keras", tiny_model)] + [(f, path_of(exported[0], f)) for f in FORMATS]:
        metrics = tmp_path / f"{fmt}.json"
        assert cli.main(["evaluate", "--data", str(photos), "--model", str(path),
                         "--metrics", str(metrics), "--plots", str(tmp_path / f"{fmt}-plots"),
                         "--params", "no-such-params.yaml"]) == 0
        scores[fmt] = json.loads(metrics.read_text())["folder"]
    for fmt in FORMATS:
        assert scores[fmt]["n"] == scores["keras"]["n"] == 12
        assert scores[fmt]["accuracy"] == scores["keras"]["accuracy"], fmt


def test_evaluate_stage_takes_an_exported_model(exported: tuple[Path, dict],
                                                tiny_prepared: Path, tmp_path: Path) -> None:
    from imgclf.evaluation import evaluate
    from imgclf.params import EvaluateParams

    model = path_of(exported[0], "tflite_int8")
    evaluate.run(EvaluateParams(tta="none"), tiny_prepared, model, tmp_path / "eval.json",
                 tmp_path / "plots")
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(exported[1]["tflite_int8"]["accuracy"])

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
from imgclf.export.bounds import bound_misses
from imgclf.export.calibration import calibration_images, calibration_indices
from imgclf.export.writers import FILES
from imgclf.inference.runtimes import (
    INPUT_NAME,
    SAVEDMODEL_INFO,
    UINT8_SIGNATURE,
    load_runtime,
    read_runtime_info,
)
from imgclf.models.saving import load_model
from imgclf.params import ExportParams

FORMATS = ("savedmodel", "tflite_float16", "tflite_int8", "onnx")
# How far each format's probabilities may stray from Keras' on the same pixels.
TOLERANCE = {"savedmodel": 1e-5, "onnx": 1e-4, "tflite_float16": 1e-2, "tflite_int8": 0.1}


@pytest.fixture(scope="module")
def exported(tiny_prepared: Path, tiny_model: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``(export folder, metrics)`` of the stage on the tiny model, every format."""
    root = tmp_path_factory.mktemp("export")
    stage.run(ExportParams(int8_samples=20, latency_runs=5), tiny_prepared, tiny_model,
              root / "export", root / "export.json")
    return root / "export", json.loads((root / "export.json").read_text())


@pytest.fixture(scope="module")
def keras_probs(tiny_prepared: Path, tiny_model: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(test images (N, S, S, 3) uint8, the Keras model's probabilities (N, C))``."""
    images, _ = read_split(tiny_prepared, "test")
    model, _ = load_model(tiny_model)
    return images, np.asarray(model.predict_on_batch(images.astype(np.float32)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips(fmt: str, exported: tuple[Path, dict], tiny_model: Path,
                                 keras_probs: tuple[np.ndarray, np.ndarray]) -> None:
    folder, metrics = exported
    runtime = load_runtime(folder / FILES[fmt])
    assert runtime.info == read_runtime_info(tiny_model)  # class names and size travel
    images, reference = keras_probs
    probs = runtime.predict_on_batch(images)
    assert probs.shape == reference.shape
    assert np.abs(probs - reference).max() < TOLERANCE[fmt]
    agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    assert agree >= 0.995
    row = metrics[fmt]
    assert row["agreement"] == pytest.approx(agree)
    assert row["size_bytes"] > 0 and row["latency_ms_p50"] > 0 and row["images_per_s"] > 0
    assert row["latency_ms_p95"] >= row["latency_ms_p50"]
    # A batch of another size (LiteRT resizes its tensors) and a single image.
    assert np.allclose(runtime.predict_on_batch(images[:1]), probs[:1], atol=1e-5)


def test_metrics_hold_keras_beside_every_format(exported: tuple[Path, dict],
                                                tiny_prepared: Path, tiny_model: Path) -> None:
    _, metrics = exported
    _, labels = read_split(tiny_prepared, "test")
    assert metrics["test_images"] == len(labels)
    assert metrics["int8_calibration"] == {"split": "train", "images": 20}
    assert metrics["keras"]["size_bytes"] == tiny_model.stat().st_size
    for fmt in FORMATS:
        ratio = metrics[fmt]["size_bytes"] / metrics["keras"]["size_bytes"]
        assert metrics[fmt]["size_ratio"] == pytest.approx(ratio, abs=1e-6)
    # int8 weights take half the bytes of float16's (plus the file's fixed overhead)
    assert metrics["tflite_int8"]["size_bytes"] < 0.6 * metrics["tflite_float16"]["size_bytes"]


def test_savedmodel_serves_float_and_uint8_in_serving_layout(
        exported: tuple[Path, dict], keras_probs: tuple[np.ndarray, np.ndarray]) -> None:
    import tensorflow as tf

    folder = exported[0] / FILES["savedmodel"]
    version = folder / "1"  # TensorFlow Serving's <base>/<version>/ layout
    assert (version / "saved_model.pb").is_file()
    assert json.loads((version / SAVEDMODEL_INFO).read_text())["class_names"] == [
        "blue", "green", "red"]
    loaded = tf.saved_model.load(str(version))
    images, reference = keras_probs
    (as_float,) = loaded.signatures["serving_default"](
        **{INPUT_NAME: tf.constant(images.astype(np.float32))}).values()
    (as_uint8,) = loaded.signatures[UINT8_SIGNATURE](**{INPUT_NAME: tf.constant(images)}).values()
    assert np.allclose(as_float.numpy(), reference, atol=1e-5)
    assert np.allclose(as_uint8.numpy(), reference, atol=1e-5)
    # The version folder itself loads too.
    assert load_runtime(version).predict_on_batch(images[:2]).shape == (2, 3)


def test_int8_model_is_full_integer(exported: tuple[Path, dict]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported[0] / FILES["tflite_int8"]))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.float32
    # Every tensor between them (weights, activations) is int8, or int32 (biases, shapes).
    inner = [t for t in interpreter.get_tensor_details()
             if t["index"] not in (inp["index"], out["index"])]
    assert inner and all(t["dtype"] in (np.int8, np.int32) for t in inner), \
        [(t["name"], t["dtype"]) for t in inner if t["dtype"] not in (np.int8, np.int32)]


def test_int8_calibration_takes_only_training_images(tiny_prepared: Path) -> None:
    train = SplitImages(tiny_prepared, "train")
    picked = calibration_images(tiny_prepared, 10)
    assert picked.shape == (10, 16, 16, 3) and picked.dtype == np.uint8
    train_bytes = {train[i].tobytes() for i in range(len(train))}
    held_out = {img.tobytes() for split in ("val", "test")
                for img in read_split(tiny_prepared, split)[0]}
    assert all(img.tobytes() in train_bytes for img in picked)
    assert not any(img.tobytes() in held_out for img in picked)
    assert len({img.tobytes() for img in picked}) == 10  # no image twice
    # More than the split holds: all of it.
    assert len(calibration_images(tiny_prepared, 10_000)) == len(train)


def test_calibration_indices_spread_over_the_split() -> None:
    idx = calibration_indices(1000, 4)
    assert idx.tolist() == sorted(set(idx.tolist())) and len(idx) == 4
    assert idx[0] == 0 and idx[-1] == 999
    assert np.diff(idx).min() >= 300  # spread, not the first four
    assert calibration_indices(3, 10).tolist() == [0, 1, 2]
    assert len(calibration_indices(0, 10)) == 0


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
    ratio = json.loads(metrics.read_text())["tflite_int8"]["size_ratio"]
    assert f"{ratio:.3f}x the size of the .keras file, {ratio - 0.01:.3f}x over " \
           "export.int8_max_size_ratio (0.01x)" in line
    assert "savedmodel" not in line and "accuracy" not in line  # those bounds were met
    # The metrics are there to look at, and the file that missed too.
    assert (tmp_path / "export" / FILES["tflite_int8"]).is_file()


def test_bound_misses_say_which_and_by_how_much() -> None:
    good = {"keras": {"accuracy": 0.98}, "savedmodel": {"agreement": 1.0},
            "onnx": {"agreement": 0.999}, "tflite_float16": {"agreement": 0.996},
            "tflite_int8": {"accuracy": 0.971, "size_ratio": 0.3}}
    assert bound_misses(good, ExportParams()) == []
    bad = {**good, "onnx": {"agreement": 0.99},
           "tflite_int8": {"accuracy": 0.96, "size_ratio": 0.3}}
    misses = bound_misses(bad, ExportParams())
    assert misses == [
        "onnx agrees with the Keras model on 99.00% of the test images, 0.50 points below "
        "export.min_agreement (99.50%)",
        "tflite_int8 test accuracy 0.9600 is 2.00 points below the Keras model's 0.9800, "
        "1.00 points more than export.int8_max_accuracy_drop (0.01) allows",
    ]
    # A NaN (nothing scored) is a miss, not a pass.
    assert bound_misses({**good, "savedmodel": {"agreement": float("nan")}}, ExportParams())


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
        got = _predict_json([str(photos)], exported[0] / FILES[fmt], capsys)
        assert [r["path"] for r in got] == [r["path"] for r in expected]
        assert [r["predicted"] for r in got] == [r["predicted"] for r in expected], fmt
        assert all(len(r["top_k"]) == 3 for r in got)  # same output shape
        assert all(set(r) == {"path", "predicted", "confidence", "top_k"} for r in got)


def test_evaluate_scores_every_format(exported: tuple[Path, dict], tiny_model: Path,
                                      tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    photos = image_folder(tmp_path / "photos", ["red", "green", "blue"], per_class=4, seed=3)
    scores = {}
    for fmt, path in [("keras", tiny_model)] + [(f, exported[0] / FILES[f]) for f in FORMATS]:
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

    model = exported[0] / FILES["tflite_int8"]
    evaluate.run(EvaluateParams(tta="none"), tiny_prepared, model, tmp_path / "eval.json",
                 tmp_path / "plots")
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(exported[1]["tflite_int8"]["accuracy"])

"""The format-independent model loader: errors for what it cannot run, and the int
quantization of LiteRT inputs and outputs. Loading real exports is tested with the
export stage (tests/export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.data.shards import ShardsMeta
from imgclf.errors import UserError
from imgclf.inference.runtimes import (
    KERAS,
    MODEL_FORMATS,
    ONNX,
    SAVEDMODEL,
    SAVEDMODEL_FILE,
    SAVEDMODEL_INFO,
    TFLITE,
    check_scorable,
    dequantize,
    load_runtime,
    model_format,
    quantize,
    read_runtime_info,
    savedmodel_dir,
)
from imgclf.models.info import ModelInfo


def test_format_from_the_name(tmp_path: Path) -> None:
    for name, fmt in (("m.keras", KERAS), ("m.TFLITE", TFLITE), ("m.onnx", ONNX)):
        (tmp_path / name).write_bytes(b"")
        assert model_format(tmp_path / name) is fmt
    assert model_format(tmp_path) is SAVEDMODEL


def test_the_table_tells_every_format_apart() -> None:
    suffixes = [f.suffix for f in MODEL_FORMATS.values()]
    assert len(set(suffixes)) == len(suffixes)  # one entry per suffix
    assert suffixes.count("") == 1  # and one folder format
    assert all(name == f.name for name, f in MODEL_FORMATS.items())


def test_unknown_format_names_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(UserError, match=r"model\.h5: not a model format.*\.tflite or \.onnx"):
        load_runtime(tmp_path / "model.h5")


@pytest.mark.parametrize(("name", "hint"), [("model.keras", "dvc repro train"),
                                            ("model.tflite", "dvc repro export")])
def test_missing_file_says_what_to_run(tmp_path: Path, name: str, hint: str) -> None:
    with pytest.raises(UserError, match=f"{name}: no model file; run .*{hint}"):
        load_runtime(tmp_path / name)


def test_tflite_without_its_info_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"not read before the info")
    with pytest.raises(UserError, match=r"m\.tflite: no .*m\.json with the class names"):
        load_runtime(tmp_path / "m.tflite")


def test_tflite_with_a_broken_info_file(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"")
    (tmp_path / "m.json").write_text('{"class_names": ["a"]}')  # no image_size
    with pytest.raises(UserError, match="is not imgclf's model info"):
        read_runtime_info(tmp_path / "m.tflite")


def test_a_file_that_is_not_a_tflite_model(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"garbage")
    (tmp_path / "m.json").write_text(ModelInfo(["a", "b"], 8).to_json())
    with pytest.raises(UserError, match=r"m\.tflite: not a readable LiteRT model"):
        load_runtime(tmp_path / "m.tflite")


def test_a_file_that_is_not_an_onnx_model(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"m\.onnx: not a readable ONNX model"):
        load_runtime(tmp_path / "m.onnx")


def test_savedmodel_folder_picks_the_highest_version(tmp_path: Path) -> None:
    for version in ("1", "10", "2", "notes"):
        (tmp_path / version).mkdir()
        (tmp_path / version / SAVEDMODEL_FILE).write_bytes(b"")
    assert savedmodel_dir(tmp_path) == tmp_path / "10"
    assert savedmodel_dir(tmp_path / "2") == tmp_path / "2"
    (tmp_path / "10" / SAVEDMODEL_INFO).parent.mkdir()
    (tmp_path / "10" / SAVEDMODEL_INFO).write_text(json.dumps(
        {"class_names": ["x", "y"], "image_size": 12}))
    assert read_runtime_info(tmp_path) == ModelInfo(["x", "y"], 12)


def test_a_folder_without_a_savedmodel(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    with pytest.raises(UserError, match=r"no saved_model\.pb in it or in a numbered version"):
        load_runtime(tmp_path)


def test_quantize_uses_scale_and_zero_point_and_clips() -> None:
    pixels = np.array([0.0, 1.0, 127.4, 254.0, 255.0], np.float32)
    assert quantize(pixels, np.uint8, (1.0, 0)).tolist() == [0, 1, 127, 254, 255]
    assert quantize(pixels, np.uint8, (2.0, 10)).tolist() == [10, 10, 74, 137, 138]
    assert quantize(pixels, np.int8, (1.0, -128)).tolist() == [-128, -127, -1, 126, 127]
    assert quantize(np.array([300.0, -5.0]), np.uint8, (1.0, 0)).tolist() == [255, 0]
    assert quantize(pixels, np.float32, (0.0, 0)).dtype == np.float32


def test_dequantize_inverts_the_output_quantization() -> None:
    values = np.array([[0, 128, 255]], np.uint8)
    assert dequantize(values, (1 / 256, 0)).tolist() == [[0.0, 0.5, 255 / 256]]
    assert dequantize(np.array([-128, 127], np.int8), (0.5, -128)).tolist() == [0.0, 127.5]
    floats = np.array([0.25, 0.75], np.float32)
    assert dequantize(floats, (0.0, 0)).tolist() == [0.25, 0.75]


def test_check_scorable_names_the_mismatch_and_the_empty_split() -> None:
    meta = ShardsMeta(image_size=16, class_names=["a", "b"], counts={"train": 4, "test": 0})
    check_scorable(ModelInfo(["a", "b"], 16), meta, "m.keras", "prep", "train")
    for info in (ModelInfo(["a", "c"], 16), ModelInfo(["a", "b"], 32)):
        with pytest.raises(UserError, match=r"m\.keras was trained on other data .*dvc repro"):
            check_scorable(info, meta, "m.keras", "prep", "train")
    for split in ("test", "val"):  # no images, or none recorded
        with pytest.raises(UserError, match=f"prep: the {split} split is empty; raise split"):
            check_scorable(ModelInfo(["a", "b"], 16), meta, "m.keras", "prep", split)

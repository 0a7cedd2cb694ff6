from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.errors import UserError
from imgclf.models.saving import ModelInfo, load_model, read_info, save_model


def test_round_trip_keeps_weights_and_class_names(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    path = tmp_path / "m.keras"
    save_model(model, path, ModelInfo(["cat", "dog"], 4))
    assert read_info(path) == ModelInfo(["cat", "dog"], 4)
    loaded, _info = load_model(path)
    x = np.ones((1, 4, 4, 3), np.float32)
    np.testing.assert_allclose(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left behind


@pytest.fixture
def lambda_model(tmp_path: Path) -> Path:
    """A real model file whose Lambda layer is Python code (doubles its input)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "lambda.keras"
    save_model(model, path, ModelInfo(["a", "b"], 2))
    return path


def test_model_with_code_is_refused(lambda_model: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError) as info:
        load_model(lambda_model)
    message = str(info.value)
    assert message.startswith(f"{lambda_model}: refused to load: the file contains code (e.g. "
                              "a Lambda layer)")
    assert message.endswith("if, and only if, you trust the file, pass --allow-unsafe-model")
    assert "\n" not in message
    assert capsys.readouterr().err == ""  # no warning when nothing was allowed


def test_model_with_code_loads_and_predicts_when_allowed(
        lambda_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, info = load_model(lambda_model, allow_unsafe=True)
    assert info == ModelInfo(["a", "b"], 2)
    np.testing.assert_allclose(model(np.array([[1.0, -3.0]], np.float32)), [[2.0, -6.0]])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: loading {lambda_model} with code "
                                               "allowed (--allow-unsafe-model)")


@pytest.mark.parametrize("content", [b"", b"not a zip"])
def test_not_a_model_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.keras"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a model saved by imgclf"):
        read_info(path)


def test_missing_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dvc repro train"):
        read_info(tmp_path / "nope.keras")

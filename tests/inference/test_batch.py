"""Test-time augmentation: one scoring function for evaluate and predict."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf import cli
from imgclf.inference.batch import TTA_MODES, predict_batch
from imgclf.models.saving import ModelInfo, save_model


@pytest.fixture(scope="module")
def lopsided_model() -> keras.Model:
    """An untrained CNN: its random kernels make it see a picture and its mirror differently."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    return model


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 12, 12, 3)).astype(np.float32)


def test_none_is_each_images_own_probabilities() -> None:
    # A model simple enough to score by hand: the softmax of the mean colour / 100.
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.layers[-1].set_weights([np.eye(3, dtype=np.float32) / 100, np.zeros(3, np.float32)])
    colours = np.array([[255, 0, 0], [0, 0, 200], [100, 100, 100], [0, 150, 50]], np.float32)
    x = np.broadcast_to(colours[:, None, None, :], (4, 12, 12, 3)).copy()
    logits = colours / 100
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = predict_batch(model, x, "none")
    assert got.shape == (4, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)  # each row its own image's, in order
    assert got[0].argmax() == 0 and got[1].argmax() == 2


def test_flip_averages_the_image_and_its_mirror(lopsided_model: keras.Model) -> None:
    x = _images()
    plain = np.asarray(lopsided_model.predict_on_batch(x))
    mirrored = np.asarray(lopsided_model.predict_on_batch(x[:, :, ::-1].copy()))
    got = predict_batch(lopsided_model, x, "flip")
    assert got.shape == (6, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, (plain + mirrored) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(1), 1, rtol=1e-5)
    assert not np.allclose(got, plain, atol=1e-4), "the mirror changed nothing: test is blind"


def test_a_symmetric_picture_scores_the_same_either_way(lopsided_model: keras.Model) -> None:
    x = _images()
    x = (x + x[:, :, ::-1]) / 2  # each picture is its own mirror image
    np.testing.assert_allclose(predict_batch(lopsided_model, x, "flip"),
                               predict_batch(lopsided_model, x, "none"), rtol=1e-5, atol=1e-7)


def test_unknown_mode_is_refused(lopsided_model: keras.Model) -> None:
    assert TTA_MODES == ("none", "flip")
    with pytest.raises(ValueError, match="unknown tta 'rotate'"):
        predict_batch(lopsided_model, _images(), "rotate")  # type: ignore[arg-type]


def _probs(capsys: pytest.CaptureFixture[str], *args: str) -> list[list[list]]:
    """The top-k [class, probability] lists of ``imgclf predict ARGS --format json``."""
    assert cli.main(["predict", *args, "--format", "json"]) == 0
    return [row["top_k"] for row in json.loads(capsys.readouterr().out)]


def test_cli_defaults_to_the_params_file(tmp_path: Path, lopsided_model: keras.Model,
                                         image_folder: Callable[..., Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # The untrained model is unsure, so its 4-decimal probabilities show the mirror's effect.
    model_path = tmp_path / "model.keras"
    save_model(lopsided_model, model_path, ModelInfo(["a", "b", "c"], 12))
    folder = image_folder(tmp_path / "imgs", ["red", "green"], 3, size=16, seed=3)
    common = (str(folder), "--model", str(model_path))
    flip = _probs(capsys, *common, "--tta", "flip")
    none = _probs(capsys, *common, "--tta", "none")
    assert flip != none
    # No params file: the built-in default (flip), as the evaluate stage's default.
    assert _probs(capsys, *common, "--params", str(tmp_path / "missing.yaml")) == flip
    params = tmp_path / "params.yaml"
    params.write_text("evaluate:\n  tta: none\n")
    assert _probs(capsys, *common, "--params", str(params)) == none

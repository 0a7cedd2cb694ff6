"""The OOD scores: the in-graph layer against NumPy, the threshold and the figures.

Real Keras (a small CNN at 16 px), no training: the scores are functions of the
features, whatever the weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgclf.models import ood
from imgclf.models.info import ModelInfo, OodInfo


@pytest.fixture(scope="module")
def small() -> tuple[object, np.ndarray, np.ndarray]:
    """``(untrained small CNN, images (30, 16, 16, 3), labels (30,))``."""
    from imgclf.models.architectures import build_model
    from imgclf.params import ModelParams

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (30, 16, 16, 3)).astype(np.float32)
    return build_model(ModelParams(arch="small"), 16, 3), images, np.arange(30) % 3


@pytest.mark.parametrize("method", ood.SHIPPABLE)
def test_the_models_score_is_the_numpy_score_and_survives_saving(
        method: str, small: tuple, tmp_path: Path) -> None:
    from imgclf.models import ood_layer
    from imgclf.models.saving import load_model, save_model

    model, images, labels = small
    features = ood_layer.features_model(model).predict_on_batch(images)
    scored = ood_layer.with_score(model, method, ood.fit_gaussian(features, labels, 3))
    probs, scores = scored.predict_on_batch(images)
    assert probs.shape == (30, 3) and scores.shape == (30,)
    assert np.allclose(probs, model.predict_on_batch(images), atol=1e-6)  # same classifier
    expected = ood_layer.reference_of(scored).scores(features)[method]
    assert np.allclose(scores, expected, rtol=1e-4, atol=1e-4)
    info = ModelInfo(["a", "b", "c"], 16, OodInfo(method, 1.0, 0.95, "val", "keras",
                                                  ood.score_stats(scores)))
    save_model(scored, tmp_path / "m.keras", info)
    loaded, got = load_model(tmp_path / "m.keras")
    assert got == info and ModelInfo.from_json(info.to_json()) == info
    assert np.allclose(loaded.predict_on_batch(images)[1], scores, atol=1e-5)


def test_old_model_info_without_a_score_still_reads() -> None:
    info = ModelInfo.from_json('{"class_names": ["a", "b"], "image_size": 32}')
    assert info.ood is None and info.unknown_threshold(5.0) is None
    assert "ood" not in info.to_json()


def test_threshold_keeps_the_keep_rate_and_the_figures() -> None:
    scores = np.arange(100, dtype=float)
    t = ood.fit_threshold(scores, 0.95)
    assert t == 95 and np.mean(scores <= t) >= 0.95  # the lowest such score
    assert ood.auroc(np.zeros(5), np.ones(5)) == 1.0
    assert ood.auroc(np.ones(5), np.zeros(5)) == 0.0
    assert ood.auroc(np.ones(4), np.ones(4)) == 0.5  # ties count half
    assert ood.fpr_at_tpr(scores, np.array([0.0, 200.0])) == 0.5  # one kept, one refused
    correct = np.ones(100, bool)
    correct[-3:] = False  # the strangest are the wrong ones
    check = ood.keep_check(scores, correct, t, 0.95)
    assert check["kept_share_ok"] and check["kept_accuracy_ok"]
    assert check["unknown"] == 100 - int(np.sum(scores <= t))
    assert not ood.keep_check(scores, correct, 50.0, 0.95)["kept_share_ok"]


def test_mahalanobis_and_knn_tell_a_far_cluster() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 4, (3, 8))
    x = np.concatenate([c + rng.normal(0, 1, (50, 8)) for c in centres])
    y = np.repeat(np.arange(3), 50)
    far = rng.normal(0, 1, (40, 8)) + 12
    g = ood.fit_gaussian(x, y, 3)
    near = centres[y[::5]] + rng.normal(0, 1, (30, 8))
    assert ood.auroc(ood.mahalanobis_min(near, g), ood.mahalanobis_min(far, g)) > 0.99
    assert ood.auroc(ood.knn(near, x), ood.knn(far, x)) > 0.9


def test_generated_images_are_each_kind() -> None:
    known = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    kinds = ood.generated_images(32, 3, 0, known)
    assert list(kinds) == list(ood.GENERATED_KINDS)
    for images in kinds.values():
        assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert all(len(np.unique(img.reshape(-1, 3), axis=0)) == 1 for img in kinds["flat"])
    assert (kinds["text"] < 60).any()  # dark letters on a light ground
    assert "crops" not in ood.generated_images(32, 2, 0)

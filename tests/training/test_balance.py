"""train.class_weight: the weights themselves, and what they do to a 10:1 imbalance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.training.balance import class_weights

SIZE = 16
# Grey images whose brightness is drawn per image from a class's normal distribution:
# the two classes overlap, so how much each counts decides where the boundary goes.
LEVELS = {"common": (110.0, 22.0), "rare": (150.0, 22.0)}


def test_balanced_weights_are_inverse_to_the_counts() -> None:
    counts = np.array([90, 9, 0, 1])
    weights = class_weights(counts, "balanced")
    assert weights is not None
    # N / (K * n_k) over the K = 3 classes with images; class 2 has none and no entry.
    assert weights == pytest.approx({0: 100 / 270, 1: 100 / 27, 3: 100 / 3})
    # Every class then weighs the same in total, and the average image weighs 1.
    totals = [weights[k] * counts[k] for k in weights]
    assert totals == pytest.approx([totals[0]] * 3)
    assert sum(totals) == pytest.approx(counts.sum())
    assert class_weights(counts, "none") is None


def _grey_images(rng: np.random.Generator, level: tuple[float, float], n: int) -> np.ndarray:
    """(n, SIZE, SIZE, 3) uint8 grey images, each of one brightness ~ N(level) plus noise."""
    means = rng.normal(*level, size=(n, 1, 1, 1))
    noise = rng.integers(-10, 10, size=(n, SIZE, SIZE, 1))
    return np.clip(np.repeat(means + noise, 3, axis=3), 0, 255).astype(np.uint8)


def _write(root: Path, counts: dict[str, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i, pixels in enumerate(_grey_images(rng, LEVELS[name], n)):
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    return root


@pytest.mark.slow
def test_balanced_raises_the_minority_recall(tmp_path: Path) -> None:
    from imgclf.data import split
    from imgclf.evaluation.metrics import classification_metrics
    from imgclf.models.saving import load_model
    from imgclf.params import DataParams, ModelParams, SplitParams, TrainParams
    from imgclf.training import train

    raw = _write(tmp_path / "raw", {"common": 200, "rare": 20}, seed=0)  # 10:1
    prepared = tmp_path / "prepared"
    split.run(DataParams(image_size=SIZE), SplitParams(train=0.8, val=0.1, test=0.1, seed=0),
              raw, prepared)
    # Scored on a fresh, even set: 100 images of each class.
    rng = np.random.default_rng(1)
    images = np.concatenate([_grey_images(rng, LEVELS[c], 100) for c in ("common", "rare")])
    y_true = np.repeat([0, 1], 100)

    recall = {}
    for mode in ("none", "balanced"):  # the same seeds, data and params otherwise
        params = TrainParams(epochs=8, batch_size=16, learning_rate=0.003,
                             early_stopping_patience=0, class_weight=mode)
        train.run(ModelParams(arch="small"), params, prepared, tmp_path / mode / "m.keras",
                  tmp_path / mode / "live")
        model, info = load_model(tmp_path / mode / "m.keras")
        assert info.class_names == ["common", "rare"]
        # the model's first output: the probabilities (the second is the OOD score)
        probs = np.asarray(model.predict(images.astype(np.float32), verbose=0)[0])
        recall[mode] = classification_metrics(y_true, probs, info.class_names)["per_class"]
    assert recall["balanced"]["rare"]["recall"] > recall["none"]["rare"]["recall"] + 0.2
    assert recall["balanced"]["rare"]["support"] == 100

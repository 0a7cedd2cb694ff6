"""Tests for imgclf.evaluation.curves (DVC plot rows)."""

import json
import math

import numpy as np
import pytest

from imgclf.evaluation.curves import confusion_rows, pr_points, roc_points, subsample

NAMES = ["cat", "dog", "fox"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.4, 0.5, 0.1],
        [0.2, 0.7, 0.1],
        [0.3, 0.3, 0.4],
        [0.1, 0.2, 0.7],
        [0.05, 0.05, 0.9],
    ]
)


def random_problem(n: int = 3000, n_classes: int = 3, seed: int = 0):
    """Labels and noisy softmax probabilities with (almost surely) distinct scores."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, size=n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probs, [f"c{k}" for k in range(n_classes)]


def test_confusion_rows_one_per_sample():
    rows = confusion_rows(np.array([0, 2, 1]), np.array([0, 1, 1]), NAMES)
    assert rows == [
        {"actual": "cat", "predicted": "cat"},
        {"actual": "fox", "predicted": "dog"},
        {"actual": "dog", "predicted": "dog"},
    ]
    assert confusion_rows(np.array([], dtype=int), np.array([], dtype=int), NAMES) == []


def test_confusion_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="equally long"):
        confusion_rows(np.array([0, 1]), np.array([0]), NAMES)
    with pytest.raises(ValueError, match="y_pred has labels outside"):
        confusion_rows(np.array([0]), np.array([3]), NAMES)


def test_roc_runs_from_origin_to_one_one():
    curves = roc_points(Y_TRUE, PROBS, NAMES)
    assert list(curves) == NAMES
    for rows in curves.values():
        assert set(rows[0]) == {"fpr", "tpr", "threshold"}
        assert (rows[0]["fpr"], rows[0]["tpr"]) == (0.0, 0.0)
        assert (rows[-1]["fpr"], rows[-1]["tpr"]) == (1.0, 1.0)
        assert rows[0]["threshold"] == 1.0  # was +inf
        assert all(0.0 <= r["threshold"] <= 1.0 for r in rows)


def test_roc_of_perfect_class():
    # fox scores 0.7 and 0.9 on its samples, at most 0.4 elsewhere: the curve goes straight
    # up to tpr 1 at threshold 0.7, then across.
    rows = roc_points(Y_TRUE, PROBS, NAMES)["fox"]
    assert {"fpr": 0.0, "tpr": 1.0, "threshold": 0.7} in rows


def test_pr_ends_at_zero_recall_with_padded_threshold():
    curves = pr_points(Y_TRUE, PROBS, NAMES)
    assert list(curves) == NAMES
    for rows in curves.values():
        assert set(rows[0]) == {"recall", "precision", "threshold"}
        assert rows[0]["recall"] == 1.0
        assert rows[-1] == {"recall": 0.0, "precision": 1.0, "threshold": 1.0}
    # cat at its lowest threshold (0.05) counts all 6 samples positive: precision 2/6.
    assert curves["cat"][0]["precision"] == pytest.approx(1 / 3, abs=1e-6)


@pytest.mark.parametrize("points", [roc_points, pr_points])
def test_undefined_classes_are_left_out(points):
    # fox is absent from y_true: no curve for it.
    y_true = np.array([0, 0, 1, 1])
    assert list(points(y_true, PROBS[:4], NAMES)) == ["cat", "dog"]
    # dog is every sample (no negatives), cat and fox are absent: no curves at all.
    assert points(np.array([1, 1, 1]), PROBS[:3], NAMES) == {}


@pytest.mark.parametrize("points", [roc_points, pr_points])
def test_curves_are_finite_json(points):
    y_true, probs, names = random_problem(n=500)
    curves = points(y_true, probs, names)
    text = json.dumps(curves, allow_nan=False)
    assert "Infinity" not in text
    for rows in curves.values():
        for row in rows:
            assert all(type(v) is float and math.isfinite(v) for v in row.values())
            assert all(round(v, 6) == v for v in row.values())


@pytest.mark.parametrize("points", [roc_points, pr_points])
def test_long_curves_are_subsampled_keeping_ends(points):
    y_true, probs, names = random_problem()
    full = points(y_true, probs, names, max_points=10**9)
    short = points(y_true, probs, names, max_points=50)
    for name, rows in full.items():
        assert len(rows) > 50  # the case is big enough to need subsampling
        assert len(short[name]) <= 50
        assert short[name][0] == rows[0]
        assert short[name][-1] == rows[-1]


def test_subsample():
    rows = [{"i": float(i)} for i in range(1000)]
    kept = subsample(rows, 7)
    assert [r["i"] for r in kept] == [0.0, 166.0, 333.0, 499.0, 666.0, 832.0, 999.0]
    assert subsample(rows[:5], 7) == rows[:5]
    assert len(subsample(rows[:201], 200)) == 200
    with pytest.raises(ValueError, match="at least 2"):
        subsample(rows, 1)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="class_names"):
        roc_points(Y_TRUE, PROBS, NAMES[:2])
    with pytest.raises(ValueError, match="0 samples"):
        pr_points(np.array([], dtype=int), np.zeros((0, 3)), NAMES)

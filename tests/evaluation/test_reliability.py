"""Expected calibration error and reliability rows, checked against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgclf.evaluation.reliability import expected_calibration_error, reliability_rows

# Four predictions of 3 classes: confidences 0.85 (right), 0.85 (wrong), 0.65, 0.65 (right).
Y = np.array([0, 1, 1, 2])
P = np.array([[0.85, 0.10, 0.05],
              [0.85, 0.10, 0.05],
              [0.20, 0.65, 0.15],
              [0.15, 0.20, 0.65]])


def test_perfectly_sure_and_right_is_zero() -> None:
    y = np.array([0, 1, 2, 1])
    assert expected_calibration_error(y, np.eye(3)[y]) == 0.0


def test_always_sure_and_always_wrong_is_one() -> None:
    y = np.array([0, 1, 2])
    assert expected_calibration_error(y, np.eye(3)[(y + 1) % 3]) == 1.0


def test_one_bin_underconfident() -> None:
    # Every prediction 0.8 sure and every one right: the gap is 1.0 - 0.8.
    y = np.zeros(5, dtype=int)
    probs = np.tile([0.8, 0.2], (5, 1))
    assert expected_calibration_error(y, probs) == pytest.approx(0.2)
    assert reliability_rows(y, probs) == [
        {"bin": 7, "confidence": 0.8, "accuracy": 1.0, "count": 5}]


def test_two_bins_weighted_by_size() -> None:
    # bin (0.8, 0.9]: accuracy 1/2, confidence 0.85 -> gap 0.35, weight 2/4
    # bin (0.6, 0.7]: accuracy 2/2, confidence 0.65 -> gap 0.35, weight 2/4
    assert expected_calibration_error(Y, P) == pytest.approx(0.35)
    assert reliability_rows(Y, P) == [
        {"bin": 6, "confidence": 0.65, "accuracy": 1.0, "count": 2},
        {"bin": 8, "confidence": 0.85, "accuracy": 0.5, "count": 2},
    ]


def test_one_bin_compares_overall_accuracy_and_confidence() -> None:
    # accuracy 3/4, mean confidence (0.85 + 0.85 + 0.65 + 0.65) / 4 = 0.75: calibrated.
    assert expected_calibration_error(Y, P, n_bins=1) == pytest.approx(0.0)
    # Drop the last sample: accuracy 2/3, confidence (0.85 + 0.85 + 0.65) / 3.
    assert expected_calibration_error(Y[:3], P[:3], n_bins=1) == pytest.approx(
        abs(2 / 3 - 2.35 / 3), abs=1e-6)


def test_bin_edges_belong_to_the_lower_bin() -> None:
    # With 2 bins, (0, 0.5] and (0.5, 1]: a tie at 0.5 is in the first, 1.0 in the last.
    y = np.array([0, 0])
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    rows = reliability_rows(y, probs, n_bins=2)
    assert [(r["bin"], r["count"]) for r in rows] == [(0, 1), (1, 1)]
    assert expected_calibration_error(y, probs, n_bins=2) == pytest.approx(0.25)


def test_rows_cover_every_sample_and_are_json_ready() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, 200)
    rows = reliability_rows(y, probs, n_bins=15)
    assert sum(r["count"] for r in rows) == 200
    assert [r["bin"] for r in rows] == sorted(r["bin"] for r in rows)
    assert all(0 <= r["accuracy"] <= 1 and 0 < r["confidence"] <= 1 for r in rows)
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    ece = expected_calibration_error(y, probs, n_bins=15)
    weighted = sum(r["count"] / 200 * abs(r["accuracy"] - r["confidence"]) for r in rows)
    assert ece == pytest.approx(weighted, abs=1e-5)
    assert isinstance(ece, float)


@pytest.mark.parametrize(("y", "probs", "n_bins", "match"), [
    (np.array([], dtype=int), np.zeros((0, 2)), 10, "0 samples"),
    (np.array([0, 1]), np.array([0.4, 0.6]), 10, "2-D"),
    (np.array([0, 1, 1]), np.eye(2), 10, "samples"),
    (np.array([0, 2]), np.eye(2), 10, "labels"),
    (np.array([0, 1]), np.eye(2), 0, "n_bins"),
])
def test_bad_inputs_are_refused(y: np.ndarray, probs: np.ndarray, n_bins: int,
                                match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y, probs, n_bins)

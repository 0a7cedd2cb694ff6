"""Calibration: does a confidence of 0.9 mean "right 9 times out of 10"? (pure functions)

The confidence of a prediction is its top probability. Predictions are put into
``n_bins`` equal-width bins of confidence over ``[0, 1]`` (bin ``b`` holds confidences
in ``(b / n_bins, (b + 1) / n_bins]``, the first bin also 0). In each bin the mean
confidence is compared with the accuracy:

* :func:`expected_calibration_error` is the mean gap weighted by the bins' sizes,
  ``ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|`` (Guo et al., 2017): 0 for a
  perfectly calibrated model, up to 1 for one that is always sure and always wrong.
* :func:`reliability_rows` is the data of a reliability diagram: one row per non-empty
  bin, ready for a DVC plot (x ``confidence``, y ``accuracy``).
"""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.metrics import check_inputs, rounded

N_BINS = 10
"""Default number of confidence bins."""


def _bins(y_true: np.ndarray, probs: np.ndarray,
          n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bin index (N,), confidence (N,), correct (N,) bool)`` of validated inputs."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {probs.shape}")
    y_true, probs = check_inputs(y_true, probs, range(probs.shape[1]))  # type: ignore[arg-type]
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(predicted)), predicted]
    # ceil(c * n) - 1 puts c in (b / n, (b + 1) / n] into bin b; 0 goes to the first bin.
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return index, confidence, predicted == y_true


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray,
                               n_bins: int = N_BINS) -> float:
    """The expected calibration error of ``probs`` (N, C) for labels ``y_true`` (N,).

    A plain float in ``[0, 1]``, rounded to :data:`~imgclf.evaluation.metrics.DECIMALS`
    places. Raises ``ValueError`` on empty or mismatched inputs or ``n_bins < 1``.
    """
    index, confidence, correct = _bins(y_true, probs, n_bins)
    count = np.bincount(index, minlength=n_bins)
    gap = np.abs(np.bincount(index, correct.astype(float), minlength=n_bins)
                 - np.bincount(index, confidence, minlength=n_bins))
    # sum_b (n_b / N) * |acc_b - conf_b| == sum_b |sum correct - sum confidence| / N
    return rounded(gap.sum() / count.sum())


def reliability_rows(y_true: np.ndarray, probs: np.ndarray,
                     n_bins: int = N_BINS) -> list[dict[str, float | int]]:
    """Reliability-diagram data: ``{"bin", "confidence", "accuracy", "count"}`` per bin.

    ``bin`` is the bin's index (0 = lowest confidences); ``confidence`` the mean
    confidence and ``accuracy`` the fraction of correct predictions of the ``count``
    predictions in it. Empty bins have no row. Rows are in bin order.
    """
    index, confidence, correct = _bins(y_true, probs, n_bins)
    rows: list[dict[str, float | int]] = []
    for b in range(n_bins):
        members = index == b
        n = int(members.sum())
        if n:
            rows.append({"bin": b, "confidence": rounded(confidence[members].mean()),
                         "accuracy": rounded(correct[members].mean()), "count": n})
    return rows

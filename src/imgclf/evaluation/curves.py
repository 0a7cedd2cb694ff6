"""Plot data for DVC: rows of plain values that DVC's vega templates render.

DVC plots read CSV/JSON/TSV files of rows; these functions build those rows (lists of flat
dicts) and leave writing them to the evaluate stage. Curves are one-vs-rest per class, with
floats rounded to :data:`~imgclf.evaluation.metrics.DECIMALS` places and no infinities, so
the result can be written with ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics as skm

from imgclf.evaluation.metrics import check_inputs, has_both_classes, rounded

MAX_POINTS = 200
"""Default cap on the number of rows kept per curve."""

Curve = dict[str, np.ndarray]
"""Named, equal-length columns of one curve, e.g. ``{"fpr": ..., "tpr": ..., ...}``."""


def confusion_rows(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, str]]:
    """One ``{"actual": name, "predicted": name}`` row per sample, in sample order.

    ``y_true`` and ``y_pred`` are (N,) integer labels indexing ``class_names``. DVC's
    ``confusion`` template counts these rows into a confusion matrix.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D and equally long, got {y_true.shape} and {y_pred.shape}"
        )
    for label_name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"{label_name} has labels outside [0, {len(class_names)})")
    return [
        {"actual": class_names[t], "predicted": class_names[p]}
        for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)
    ]


def subsample(rows: list[dict], max_points: int = MAX_POINTS) -> list[dict]:
    """Keep at most ``max_points`` evenly spaced rows, always including the first and last.

    Rows are returned unchanged (same list) when there are already few enough.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if len(rows) <= max_points:
        return rows
    # Spacing is >= 1, so flooring gives distinct, increasing indices; linspace ends exactly
    # on len(rows) - 1.
    keep = np.linspace(0, len(rows) - 1, max_points).astype(int)
    return [rows[i] for i in keep]


def _roc(is_positive: np.ndarray, scores: np.ndarray) -> Curve:
    fpr, tpr, thresholds = skm.roc_curve(is_positive, scores, drop_intermediate=True)
    # sklearn puts an +inf threshold before the (0, 0) point; a probability never exceeds 1.
    return {"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thresholds, 1.0)}


def _pr(is_positive: np.ndarray, scores: np.ndarray) -> Curve:
    precision, recall, thresholds = skm.precision_recall_curve(
        is_positive, scores, drop_intermediate=True
    )
    # The final (recall 0, precision 1) point has no threshold; give it the top one, 1.0.
    return {"recall": recall, "precision": precision, "threshold": np.append(thresholds, 1.0)}


def _per_class_curves(
    curve: Callable[[np.ndarray, np.ndarray], Curve],
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    max_points: int,
) -> dict[str, list[dict[str, float]]]:
    """Apply a one-vs-rest ``curve`` to each class that has both positives and negatives."""
    y_true, probs = check_inputs(y_true, probs, class_names)
    curves: dict[str, list[dict[str, float]]] = {}
    for k, name in enumerate(class_names):
        is_k = y_true == k
        if not has_both_classes(is_k):
            continue
        columns = curve(is_k, probs[:, k])
        rows = [
            {key: rounded(value) for key, value in zip(columns, values, strict=True)}
            for values in zip(*columns.values(), strict=True)
        ]
        curves[name] = subsample(rows, max_points)
    return curves


def roc_points(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    max_points: int = MAX_POINTS,
) -> dict[str, list[dict[str, float]]]:
    """One-vs-rest ROC curve per class: ``{class_name: [{"fpr", "tpr", "threshold"}, ...]}``.

    Parameters
    ----------
    y_true : (N,) integer labels in ``[0, C)``.
    probs : (N, C) predicted probabilities; class ``k`` is scored by ``probs[:, k]``.
    class_names : C names, ``class_names[k]`` for label ``k``.
    max_points : most rows kept per class (see :func:`subsample`).

    Rows run from (fpr 0, tpr 0) to (1, 1) with decreasing thresholds, as from
    :func:`sklearn.metrics.roc_curve` with ``drop_intermediate=True``; the leading ``+inf``
    threshold becomes 1.0. Classes absent from ``y_true`` or covering every sample (no
    negatives) have no ROC curve and are left out.
    """
    return _per_class_curves(_roc, y_true, probs, class_names, max_points)


def pr_points(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    max_points: int = MAX_POINTS,
) -> dict[str, list[dict[str, float]]]:
    """One-vs-rest precision-recall curve per class:
    ``{class_name: [{"recall", "precision", "threshold"}, ...]}``.

    Arguments are as for :func:`roc_points`. Rows come from
    :func:`sklearn.metrics.precision_recall_curve` (``drop_intermediate=True``) in its order,
    increasing threshold, ending at (recall 0, precision 1), whose missing threshold is set
    to 1.0. Classes are left out under the same rule as :func:`roc_points`.
    """
    return _per_class_curves(_pr, y_true, probs, class_names, max_points)

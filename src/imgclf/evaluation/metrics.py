"""Scalar classification metrics: numpy arrays in, JSON-ready plain data out.

Every function here is pure (no file I/O); the evaluate stage decides where results go.
Floats are plain Python floats rounded to :data:`DECIMALS` places so that metrics files
written from them diff cleanly between runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from imgclf.fsutil import DECIMALS  # the places kept in every float returned here

PROB_EPS = 1e-7
"""Probabilities are clipped to ``[PROB_EPS, 1]`` before taking logs (same epsilon as Keras)."""

TOP_K = 5
"""Top-k accuracy is reported with this k, and only for more than ``TOP_K`` classes (with
fewer it would be 1 or nearly so and say nothing)."""


def rounded(value: float) -> float:
    """Return ``value`` as a plain Python float rounded to :data:`DECIMALS` places."""
    return round(float(value), DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def check_inputs(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a labels/probabilities pair and return them as numpy arrays.

    Parameters
    ----------
    y_true : (N,) integer labels, each in ``[0, C)``.
    probs : (N, C) predicted class probabilities, finite.
    class_names : C class names; ``class_names[k]`` names label ``k``.

    Raises
    ------
    ValueError
        If there are no samples, or any shape, dtype or label range does not match.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=float)
    n_classes = len(class_names)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D (N,), got shape {y_true.shape}")
    if y_true.size == 0:
        raise ValueError("cannot evaluate on 0 samples: y_true is empty")
    if y_true.dtype.kind not in "iu":
        raise ValueError(f"y_true must hold integer class labels, got dtype {y_true.dtype}")
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {probs.shape}")
    if probs.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} samples but probs has {probs.shape[0]} rows"
        )
    if probs.shape[1] != n_classes:
        raise ValueError(
            f"probs has {probs.shape[1]} columns but there are {n_classes} class_names"
        )
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(
            f"y_true labels must lie in [0, {n_classes}), "
            f"got range [{y_true.min()}, {y_true.max()}]"
        )
    if not np.isfinite(probs).all():
        raise ValueError("probs contains NaN or infinite values")
    return y_true, probs


def has_both_classes(is_positive: np.ndarray) -> bool:
    """True when a one-vs-rest boolean target has at least one positive and one negative."""
    return bool(is_positive.any() and not is_positive.all())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Count matrix of shape (C, C): entry ``[i, j]`` is the number of samples of true class
    ``i`` predicted as class ``j`` (rows = true class, columns = predicted class).

    ``y_true`` and ``y_pred`` are (N,) integer labels in ``[0, n_classes)``; every class gets
    a row and a column even when it never occurs.
    """
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def cross_entropy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean categorical cross-entropy of (N,) labels under (N, C) probabilities.

    Probabilities are clipped to ``[PROB_EPS, 1]`` so a confident mistake costs a large but
    finite ``-log(PROB_EPS)`` instead of infinity.
    """
    p_true = probs[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(p_true, PROB_EPS, 1.0))))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of the (N,) labels that are among the ``k`` most probable classes of (N, C) probs.

    A label counts as within the top ``k`` when fewer than ``k`` classes have a strictly
    higher probability, so ties never depend on the order of the classes.
    """
    p_true = probs[np.arange(len(y_true)), y_true]
    higher = (probs > p_true[:, None]).sum(axis=1)
    return float((higher < k).mean())


def balanced_accuracy(recall: np.ndarray, support: np.ndarray) -> float:
    """Mean of the (C,) per-class recalls over the classes present (``support > 0``).

    Each class weighs the same whatever its number of images, so a model that ignores a
    small class scores low even when the plain accuracy is high (as scikit-learn's
    ``balanced_accuracy_score``).
    """
    return float(recall[support > 0].mean())


def one_vs_rest_auroc(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """Per-class one-vs-rest ROC AUC, a list of length C.

    Class ``k`` scores with ``probs[:, k]`` against all other classes. The AUC is undefined
    (``None``) when class ``k`` is absent from ``y_true`` or makes up every sample.
    """
    aurocs: list[float | None] = []
    for k in range(probs.shape[1]):
        is_k = y_true == k
        aurocs.append(skm.roc_auc_score(is_k, probs[:, k]) if has_both_classes(is_k) else None)
    return aurocs


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Summary metrics for a C-class classifier (C >= 2), ready for ``json.dump``.

    Parameters
    ----------
    y_true : (N,) integer labels in ``[0, C)``, N >= 1.
    probs : (N, C) predicted probabilities (rows sum to 1); the prediction is the argmax.
    class_names : C names, ``class_names[k]`` for label ``k``.

    Returns
    -------
    dict
        ``{"accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc", "loss",
        "n", "per_class"}``, and ``"top5_accuracy"`` after ``balanced_accuracy`` when
        C > :data:`TOP_K` (see :func:`top_k_accuracy`). ``balanced_accuracy`` is the mean
        recall of the classes present in ``y_true``; precision/recall/f1 are macro
        averages over all C classes (0 where undefined, i.e. ``zero_division=0``);
        ``auroc`` is the mean of the defined one-vs-rest AUCs (``None`` if no class has
        one); ``loss`` is the mean cross-entropy; ``n`` is N.
        ``per_class`` maps each class name to
        ``{"precision", "recall", "f1", "auroc", "support"}`` where ``auroc`` may be ``None``
        (class absent from, or the only class in, ``y_true``) and ``support`` is the int
        count of that class in ``y_true``. All floats are rounded to :data:`DECIMALS`.

    Raises
    ------
    ValueError
        On empty input or mismatched shapes (see :func:`check_inputs`).
    """
    y_true, probs = check_inputs(y_true, probs, class_names)
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(class_names)), zero_division=0
    )
    aurocs = one_vs_rest_auroc(y_true, probs)
    defined = [a for a in aurocs if a is not None]

    def maybe_rounded(value: float | None) -> float | None:
        return None if value is None else rounded(value)

    top_k = ({f"top{TOP_K}_accuracy": rounded(top_k_accuracy(y_true, probs, TOP_K))}
             if len(class_names) > TOP_K else {})
    return {
        "accuracy": rounded(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": rounded(balanced_accuracy(recall, support)),
        **top_k,
        "precision": rounded(precision.mean()),
        "recall": rounded(recall.mean()),
        "f1": rounded(f1.mean()),
        "auroc": maybe_rounded(np.mean(defined) if defined else None),
        "loss": rounded(cross_entropy(y_true, probs)),
        "n": len(y_true),
        "per_class": {
            name: {
                "precision": rounded(precision[k]),
                "recall": rounded(recall[k]),
                "f1": rounded(f1[k]),
                "auroc": maybe_rounded(aurocs[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(class_names)
        },
    }


def worst_mistakes(y_true: np.ndarray, probs: np.ndarray,
                   limit: int | None = None) -> np.ndarray:
    """Indices of the misclassified samples, most confident first, at most ``limit`` (all).

    Ties keep the sample order (a stable sort), so the choice is reproducible.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != y_true)
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")]
    return ranked if limit is None else ranked[:max(limit, 0)]

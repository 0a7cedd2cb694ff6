"""Per-image results of a scored set: the predictions CSV and the most confused pairs.

* :func:`write_predictions`: one CSV row per image (its path, true and predicted class,
  and the probability of each class), so a user can find which of their photos were
  wrong, and sort or filter them in any spreadsheet;
* :func:`most_confused`: the (actual, predicted, count) pairs of the mistakes, most
  frequent first, as fastai's ``ClassificationInterpretation.most_confused`` gives.

Pure apart from :func:`write_predictions`; no TensorFlow.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from imgclf import fsutil
from imgclf.evaluation.metrics import confusion_matrix, rounded

PROB_PREFIX = "p_"
"""The probability columns are ``p_<class name>``, so no class name can clash with the
columns before them."""
SHOWN_PAIRS = 5
"""The console summary names this many of the most confused pairs."""


def most_confused(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                  min_count: int = 1) -> list[dict[str, str | int]]:
    """``[{"actual", "predicted", "count"}, ...]``: every off-diagonal cell of the confusion
    matrix with at least ``min_count`` images, the largest count first.

    ``y_true`` and ``y_pred`` are (N,) labels in ``[0, C)``. Equal counts keep the
    matrix's order (actual, then predicted, by class index), so the list is reproducible.
    """
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), len(class_names))
    np.fill_diagonal(matrix, 0)
    actual, predicted = np.nonzero(matrix >= max(min_count, 1))
    counts = matrix[actual, predicted]
    order = np.argsort(-counts, kind="stable")
    return [{"actual": class_names[actual[k]], "predicted": class_names[predicted[k]],
             "count": int(counts[k])} for k in order]


def confused_line(pairs: Sequence[dict[str, str | int]], shown: int = SHOWN_PAIRS) -> str:
    """The most confused pairs in one line: ``cats -> dogs 3, dogs -> cats 1``."""
    if not pairs:
        return "no mistakes"
    text = ", ".join(f"{p['actual']} -> {p['predicted']} {p['count']}" for p in pairs[:shown])
    more = len(pairs) - shown
    return text + (f" (and {more} more pairs)" if more > 0 else "")


def write_predictions(path: str | os.PathLike[str], files: Sequence[str], y_true: np.ndarray,
                      probs: np.ndarray, class_names: Sequence[str],
                      split: str | Sequence[str]) -> None:
    """Write one CSV row per image: ``split, path, true, predicted, correct, p_<class>...``.

    ``files[i]`` names image ``i``, whose label is ``y_true[i]`` (N,) and class
    probabilities ``probs[i]`` (N, C); ``split`` is the set's name, or one per image.
    The prediction is the argmax; probabilities are rounded as the metrics are.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    splits = [split] * len(files) if isinstance(split, str) else list(split)
    if not len(files) == len(y_true) == len(probs) == len(splits):
        raise ValueError(f"{len(files)} files, {len(y_true)} labels, {len(probs)} rows of "
                         f"probabilities and {len(splits)} split names do not match")
    predicted = probs.argmax(axis=1)
    with fsutil.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["split", "path", "true", "predicted", "correct",
                      *(PROB_PREFIX + name for name in class_names)])
        for i, name in enumerate(files):
            out.writerow([splits[i], name, class_names[y_true[i]], class_names[predicted[i]],
                          int(predicted[i] == y_true[i]), *(rounded(p) for p in probs[i])])

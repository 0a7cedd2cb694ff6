"""Tests for imgclf.evaluation.metrics: expected values are worked out by hand."""

import json
import math

import numpy as np
import pytest

from imgclf.evaluation.metrics import (
    TOP_K,
    classification_metrics,
    confusion_matrix,
    top_k_accuracy,
)

NAMES3 = ["cat", "dog", "fox"]

# A 3-class example. Each sample puts 0.8 on its predicted class and 0.1 on the others.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 2, 1, 2, 2, 2, 2, 0])
# Confusion counts, rows = true class, columns = predicted class.
COUNTS = np.array(
    [
        [2, 0, 1],
        [0, 1, 1],
        [1, 0, 3],
    ]
)


def probs_from_predictions(y_pred: np.ndarray, n_classes: int, top: float = 0.8) -> np.ndarray:
    """(N, C) probabilities with ``top`` on the predicted class, the rest shared equally."""
    probs = np.full((len(y_pred), n_classes), (1 - top) / (n_classes - 1))
    probs[np.arange(len(y_pred)), y_pred] = top
    return probs


def test_confusion_matrix_rows_are_true_class():
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == COUNTS.tolist()


def test_confusion_matrix_keeps_unseen_classes():
    assert confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3).tolist() == [
        [1, 1, 0],
        [0, 0, 0],
        [0, 0, 0],
    ]


def test_three_class_scores_match_confusion_counts():
    result = classification_metrics(Y_TRUE, probs_from_predictions(Y_PRED, 3), NAMES3)

    tp = np.diag(COUNTS)
    precision = tp / COUNTS.sum(axis=0)  # cat 2/3, dog 1/1, fox 3/5
    recall = tp / COUNTS.sum(axis=1)  # cat 2/3, dog 1/2, fox 3/4
    f1 = 2 * precision * recall / (precision + recall)
    assert result["accuracy"] == pytest.approx(6 / 9, abs=1e-6)
    # Balanced accuracy: every class's recall weighs the same (2/3, 1/2, 3/4).
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3, abs=1e-6)
    assert result["precision"] == pytest.approx(precision.mean(), abs=1e-6)
    assert result["recall"] == pytest.approx(recall.mean(), abs=1e-6)
    assert result["f1"] == pytest.approx(f1.mean(), abs=1e-6)
    # 6 correct samples give the true class 0.8, 3 wrong ones give it 0.1.
    expected_loss = -(6 * math.log(0.8) + 3 * math.log(0.1)) / 9
    assert result["loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert result["n"] == 9
    for k, name in enumerate(NAMES3):
        row = result["per_class"][name]
        assert row["precision"] == pytest.approx(precision[k], abs=1e-6)
        assert row["recall"] == pytest.approx(recall[k], abs=1e-6)
        assert row["f1"] == pytest.approx(f1[k], abs=1e-6)
        assert row["support"] == COUNTS[k].sum()


def test_result_is_json_ready_and_rounded():
    result = classification_metrics(Y_TRUE, probs_from_predictions(Y_PRED, 3), NAMES3)
    json.dumps(result, allow_nan=False)
    assert set(result) == {
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "auroc",
        "loss",
        "n",
        "per_class",
    }
    assert type(result["n"]) is int
    assert type(result["per_class"]["dog"]["support"]) is int
    assert type(result["accuracy"]) is float
    assert result["accuracy"] == 0.666667  # 6/9 rounded to 6 decimals


def test_perfect_predictions():
    y_true = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[y_true]
    result = classification_metrics(y_true, probs, NAMES3)
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc"):
        assert result[key] == 1.0
    assert result["loss"] == 0.0
    assert all(row["auroc"] == 1.0 for row in result["per_class"].values())


def test_confidently_wrong_loss_is_finite():
    # Probability 0 on the true class is clipped, not log(0).
    probs = np.array([[0.0, 1.0], [1.0, 0.0]])
    result = classification_metrics(np.array([0, 1]), probs, NAMES3[:2])
    assert math.isfinite(result["loss"]) and result["loss"] > 10
    assert result["accuracy"] == 0.0


def test_binary_auroc():
    # Positive scores: negatives 0.1, 0.4; positives 0.35, 0.8. Of the 4 (pos, neg) pairs,
    # only (0.35, 0.4) is ordered wrongly, so AUROC = 3/4 for both one-vs-rest views.
    y_true = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    result = classification_metrics(y_true, np.column_stack([1 - p1, p1]), ["neg", "pos"])
    assert result["auroc"] == 0.75
    assert result["per_class"]["neg"]["auroc"] == 0.75
    assert result["per_class"]["pos"]["auroc"] == 0.75
    # Predictions (threshold 0.5): neg, neg, neg, pos.
    assert result["accuracy"] == 0.75
    assert result["per_class"]["pos"]["recall"] == 0.5
    assert result["per_class"]["neg"]["precision"] == pytest.approx(2 / 3, abs=1e-6)


def test_absent_class_has_null_auroc_and_zero_scores():
    y_true = np.array([0, 0, 1, 1])
    probs = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
        ]
    )
    result = classification_metrics(y_true, probs, NAMES3)
    fox = result["per_class"]["fox"]
    assert fox == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "auroc": None, "support": 0}
    # Macro AUROC averages only the defined (perfect) ones; macro recall counts fox as 0.
    assert result["auroc"] == 1.0
    assert result["recall"] == pytest.approx(2 / 3, abs=1e-6)
    # Balanced accuracy averages the classes present only: fox has no images to recall.
    assert result["balanced_accuracy"] == 1.0
    assert "null" in json.dumps(result, allow_nan=False)


def test_single_class_present_gives_null_macro_auroc():
    y_true = np.array([1, 1, 1])
    result = classification_metrics(y_true, probs_from_predictions(y_true, 3), NAMES3)
    assert result["auroc"] is None
    assert all(row["auroc"] is None for row in result["per_class"].values())


def test_empty_input_raises():
    with pytest.raises(ValueError, match="0 samples"):
        classification_metrics(np.array([], dtype=int), np.zeros((0, 3)), NAMES3)


@pytest.mark.parametrize(
    ("y_true", "probs", "message"),
    [
        (np.array([0, 1]), np.full((2, 2), 0.5), "2 columns but there are 3 class_names"),
        (np.array([0, 1, 2]), np.full((2, 3), 1 / 3), "3 samples but probs has 2 rows"),
        (np.array([0, 3]), np.full((2, 3), 1 / 3), r"labels must lie in \[0, 3\)"),
        (np.array([0.0, 1.0]), np.full((2, 3), 1 / 3), "integer class labels"),
        (np.array([0, 1]), np.full(3, 1 / 3), "2-D"),
        (np.array([0, 1]), np.array([[np.nan, 0.5, 0.5], [0.2, 0.4, 0.4]]), "NaN"),
    ],
)
def test_bad_inputs_raise(y_true, probs, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, probs, NAMES3)


def test_balanced_accuracy_exposes_an_ignored_minority():
    # 90 majority images all right, 10 minority images all called majority.
    y_true = np.array([0] * 90 + [1] * 10)
    result = classification_metrics(y_true, probs_from_predictions(np.zeros(100, int), 2),
                                     ["big", "small"])
    assert result["accuracy"] == 0.9
    assert result["balanced_accuracy"] == 0.5  # (1 + 0) / 2
    assert result["per_class"]["small"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                            "auroc": 0.5, "support": 10}


def test_top_k_accuracy_counts_classes_ranked_above_the_label():
    probs = np.array([
        [0.50, 0.20, 0.15, 0.10, 0.05],  # label 0: nothing above it -> rank 0
        [0.50, 0.20, 0.15, 0.10, 0.05],  # label 3: three above -> rank 3
        [0.50, 0.20, 0.15, 0.10, 0.05],  # label 4: four above -> rank 4
        [0.25, 0.25, 0.25, 0.25, 0.00],  # label 3 tied with three others: rank 0
    ])
    y_true = np.array([0, 3, 4, 3])
    assert top_k_accuracy(y_true, probs, 1) == 0.5
    assert top_k_accuracy(y_true, probs, 4) == 0.75
    assert top_k_accuracy(y_true, probs, 5) == 1.0


def test_top5_accuracy_only_with_more_than_five_classes():
    row = [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05]  # classes c0..c6, most probable first
    probs = np.array([row, row, row, row, [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1]])
    # c0: first -> in; c4: fifth -> in; c5, c6: sixth, seventh -> out;
    # c6 tied for fourth with c3..c5 (three classes above it) -> in.
    y_true = np.array([0, 4, 5, 6, 6])
    names = [f"c{k}" for k in range(7)]
    result = classification_metrics(y_true, probs, names)
    assert result[f"top{TOP_K}_accuracy"] == 0.6  # 3 of 5
    assert result["accuracy"] == 0.2  # only the first row's top class is its label
    assert len(result["per_class"]) == 7
    assert sum(row["support"] for row in result["per_class"].values()) == 5
    five = classification_metrics(y_true % 5, probs[:, :5] / probs[:, :5].sum(1, keepdims=True),
                                  names[:5])
    assert "top5_accuracy" not in five

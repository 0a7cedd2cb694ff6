"""The evaluate stage: model + held-out splits -> metrics/eval.json and plot data.

A W&B ``Tracker`` (optional; ``imgclf evaluate`` passes one) gets the metrics as the run
summary, and the test split's charts and misclassified images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from imgclf import fsutil
from imgclf.data.shards import ShardsMeta, read_meta
from imgclf.errors import UserError
from imgclf.evaluation.curves import confusion_rows, pr_points, roc_points
from imgclf.evaluation.metrics import classification_metrics
from imgclf.models.saving import load_model
from imgclf.params import EvaluateParams
from imgclf.tracking.wandb_run import Tracker
from imgclf.training.dataset import make_dataset

PLOTS_SPLIT = "test"  # the confusion matrix and curves are drawn for this split


def predict_split(model: object, data: str | os.PathLike[str], meta: ShardsMeta, split: str,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,) int, probabilities (N, C))`` of ``model`` on a prepared split."""
    ds = make_dataset(data, meta, split, batch_size)
    labels, probs = [], []
    for images, y in ds:
        probs.append(model.predict_on_batch(images))  # type: ignore[attr-defined]
        labels.append(y.numpy())
    return np.concatenate(labels), np.concatenate(probs)


def run(params: EvaluateParams, data: str | os.PathLike[str], model_path: str | os.PathLike[str],
        metrics_path: str | os.PathLike[str], plots_dir: str | os.PathLike[str],
        tracker: Tracker | None = None) -> None:
    tracker = tracker or Tracker.disabled("evaluate")
    meta = read_meta(data)
    model, info = load_model(model_path)
    if info.class_names != meta.class_names or info.image_size != meta.image_size:
        raise UserError(f"{model_path} was trained on other data (classes {info.class_names}, "
                        f"{info.image_size} px); retrain it: dvc repro train")
    metrics, plotted = {}, None
    for split in params.splits:
        if not meta.counts.get(split):
            continue  # e.g. no val images in a tiny dataset
        y_true, probs = predict_split(model, data, meta, split, params.batch_size)
        metrics[split] = classification_metrics(y_true, probs, meta.class_names)
        if split == PLOTS_SPLIT:
            plotted = (y_true, probs)
    if plotted is None:
        raise UserError(f"{data}: the test split is empty; raise split.test")

    y_true, probs = plotted
    names = meta.class_names
    with fsutil.atomic_dir(plots_dir) as tmp:
        _dump(tmp / "confusion.json", confusion_rows(y_true, probs.argmax(1), names))
        for folder, curves in (("roc", roc_points(y_true, probs, names)),
                               ("precision_recall", pr_points(y_true, probs, names))):
            (tmp / folder).mkdir()
            for name, rows in curves.items():
                _dump(tmp / folder / f"{name}.json", rows)
    fsutil.write_json(metrics_path, metrics)
    tracker.log_summary(metrics)
    tracker.log_test_results(data, y_true, probs, names)
    summary = ", ".join(f"{s} accuracy {m['accuracy']:.4f}" for s, m in metrics.items())
    print(f"evaluate: {summary}; metrics in {metrics_path}")


def _dump(path: Path, rows: list[dict]) -> None:
    path.write_text(json.dumps(rows, allow_nan=False) + "\n", encoding="utf-8")

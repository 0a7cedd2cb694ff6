"""The evaluate stage: model + held-out splits -> metrics/eval.json and plots.

Beside the metrics of each split (with the expected calibration error ``ece``), the
plots folder gets the test split's error analysis:

* ``confusion.json``, ``roc/<class>.json``, ``precision_recall/<class>.json`` and
  ``calibration.json`` (the reliability diagram): plot data for DVC;
* ``most_confused.json``: the (actual, predicted, count) pairs of the mistakes, most
  frequent first (also printed in the summary line);
* ``confusion.png``, ``calibration.png`` and ``misclassified.png`` (the most confident
  mistakes, each with its file name and, for a ``.keras`` model, beside its heatmap of
  the predicted class: :mod:`imgclf.inference.explain`): pictures for places that
  cannot draw DVC plots.

``--predictions`` gets one CSV row per scored image of every split (its file, true and
predicted class, probabilities): which photos were wrong.

``imgclf evaluate --data FOLDER`` scores the model the same way on any folder of class
sub-folders (:mod:`imgclf.evaluation.folder`, which no stage runs). The computations
live in ``metrics``, ``curves``, ``reliability`` and ``figures``; this module reads and
writes.

``run`` returns what it scored (``Scored``), so ``imgclf evaluate`` can hand it to the
W&B tracker: this stage imports no tracking code, and a change to W&B logging reruns
nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from imgclf import fsutil
from imgclf.data.records import make_dataset
from imgclf.data.shards import ShardsMeta, SplitImages, read_meta
from imgclf.evaluation.curves import confusion_rows, pr_points, roc_points
from imgclf.evaluation.figures import (
    Heatmaps,
    confusion_figure,
    gallery_figure,
    reliability_figure,
    save_png,
)
from imgclf.evaluation.metrics import classification_metrics, worst_mistakes
from imgclf.evaluation.predictions import confused_line, most_confused, write_predictions
from imgclf.evaluation.reliability import expected_calibration_error, reliability_rows
from imgclf.inference.batch import score_batch
from imgclf.inference.runtimes import check_scorable, load_runtime
from imgclf.params import EvaluateParams, Tta

PLOTS_SPLIT = "test"  # the confusion matrix, curves and pictures are drawn for this split


def predict_split(model: object, data: str | os.PathLike[str], meta: ShardsMeta, split: str,
                  batch_size: int, tta: Tta = "none") -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,) int, probabilities (N, C))`` of ``model`` on a prepared split."""
    labels, probs, _ = score_split(model, data, meta, split, batch_size, tta)
    return labels, probs


def score_split(model: object, data: str | os.PathLike[str], meta: ShardsMeta, split: str,
                batch_size: int, tta: Tta = "none",
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(labels (N,), probabilities (N, C), OOD scores (N,) or None)`` on a split."""
    ds = make_dataset(data, meta, split, batch_size)
    labels, probs, scores = [], [], []
    for images, y in ds:
        p, s = score_batch(model, images, tta)
        probs.append(p)
        scores += [] if s is None else [s]
        labels.append(y.numpy())
    return (np.concatenate(labels), np.concatenate(probs),
            np.concatenate(scores) if scores else None)


def unknown_counts(scores: np.ndarray | None, threshold: float | None) -> dict[str, Any]:
    """``{"unknown": {threshold, count, share}}`` of the images scored above ``threshold``
    (none of the classes); empty for a model without the OOD score."""
    if scores is None or threshold is None:
        return {}
    flagged = int(np.sum(scores > threshold))
    return {"unknown": {"threshold": float(threshold), "count": flagged,
                        "share": flagged / len(scores) if len(scores) else 0.0}}


def split_metrics(y_true: np.ndarray, probs: np.ndarray,
                  class_names: Sequence[str]) -> dict[str, Any]:
    """``classification_metrics`` plus the expected calibration error ``ece``."""
    metrics = classification_metrics(y_true, probs, class_names)
    per_class = metrics.pop("per_class")
    return {**metrics, "ece": expected_calibration_error(y_true, probs), "per_class": per_class}


@dataclass(frozen=True)
class Scored:
    """What ``run`` scored, for a tracker to log: nothing here is computed twice.

    ``metrics`` is what ``metrics/eval.json`` holds; the rest is of the test split:
    ``images[i]`` the ``(H, W, 3)`` image whose label is ``y_true[i]`` (N,) and whose
    class probabilities are ``probs[i]`` (N, C); ``curves`` the per-class points of
    ``"roc"`` and ``"precision_recall"``; ``mistakes`` the indices of the misclassified
    images, most confident first.
    """

    metrics: dict[str, Any]
    class_names: list[str]
    images: Any
    y_true: np.ndarray
    probs: np.ndarray
    curves: dict[str, dict[str, list[dict[str, float]]]]
    mistakes: np.ndarray


def run(params: EvaluateParams, data: str | os.PathLike[str], model_path: str | os.PathLike[str],
        metrics_path: str | os.PathLike[str], plots_dir: str | os.PathLike[str],
        gallery: str | os.PathLike[str] | None = None,
        predictions: str | os.PathLike[str] | None = None,
        allow_unsafe_model: bool = False, unknown_threshold: float | None = None) -> Scored:
    """Score ``params.splits`` of ``data``; ``predictions``, when given, gets the CSV.
    Each split's metrics count the images flagged unknown (above ``unknown_threshold``,
    ``ood.threshold``, else the model file's own)."""
    meta = read_meta(data)
    model = load_runtime(model_path, allow_unsafe=allow_unsafe_model)  # any format
    check_scorable(model.info, meta, model_path, data, PLOTS_SPLIT)
    metrics, scored = {}, {}
    for split in params.splits:
        if not meta.counts.get(split):
            continue  # e.g. no val images in a tiny dataset
        y_true, probs, scores = score_split(model, data, meta, split, params.batch_size,
                                            params.tta)
        metrics[split] = split_metrics(y_true, probs, meta.class_names) | unknown_counts(
            scores, model.info.unknown_threshold(unknown_threshold))
        scored[split] = split_images(data, split, y_true), y_true, probs
    # check_scorable: the test split has images

    images, y_true, probs = scored[PLOTS_SPLIT]
    names = meta.class_names
    plotted = write_plots(plots_dir, y_true, probs, names, images, f"{PLOTS_SPLIT} split",
                          gallery, files=images.filenames,
                          heatmaps=keras_heatmaps(model_path, allow_unsafe_model))
    if predictions is not None:
        write_split_predictions(predictions, scored, names)
    fsutil.write_json(metrics_path, metrics)
    print_summary(metrics, metrics_path, plotted.confused)
    return Scored(metrics, list(names), images, y_true, probs, plotted.curves,
                  worst_mistakes(y_true, probs))


def keras_heatmaps(model_path: str | os.PathLike[str],
                   allow_unsafe: bool = False) -> Heatmaps | None:
    """The gallery's heatmap function of a ``.keras`` model (loaded once more: the runtime
    gives probabilities, the heatmaps need the layers); None for the other formats."""
    from imgclf.inference.runtimes import KERAS, model_format

    if model_format(model_path) is not KERAS:
        return None
    from imgclf.inference import explain
    from imgclf.models.saving import load_model

    model, _ = load_model(model_path, allow_unsafe=allow_unsafe)
    parts = explain.explainer(model)
    return lambda pixels, classes: explain.heatmaps(model, pixels, classes, parts=parts)


def write_split_predictions(path: str | os.PathLike[str],
                            scored: Mapping[str, tuple[SplitImages, np.ndarray, np.ndarray]],
                            class_names: Sequence[str]) -> None:
    """The predictions CSV of every scored split (``split -> (images, y_true, probs)``),
    one after the other; each file is named by its path under the raw folder."""
    splits = [split for split, (images, _, _) in scored.items() for _ in range(len(images))]
    files = [name for images, _, _ in scored.values() for name in images.filenames]
    y_true = np.concatenate([y for _, y, _ in scored.values()])
    probs = np.concatenate([p for _, _, p in scored.values()])
    write_predictions(path, files, y_true, probs, class_names, splits)


def split_images(data: str | os.PathLike[str], split: str, y_true: np.ndarray) -> SplitImages:
    """The images of ``split`` (``images[i]``, read on demand), in the order it was scored.

    ``make_dataset`` reads an unshuffled split in the records' order, so sample ``i``
    of ``predict_split`` is record ``i``; the labels are checked to be sure.
    """
    images = SplitImages(data, split)
    if not np.array_equal(images.labels, y_true):
        raise ValueError(f"the {split} shards of {data} do not match the scored labels")
    return images


class Plotted(NamedTuple):
    """What ``write_plots`` wrote: ``curves`` the per-class points,
    ``{"roc": {class: rows}, "precision_recall": ...}``; ``confused`` the rows of
    ``most_confused.json``."""

    curves: dict[str, dict[str, list[dict[str, float]]]]
    confused: list[dict[str, str | int]]


def write_plots(plots_dir: str | os.PathLike[str], y_true: np.ndarray, probs: np.ndarray,
                class_names: Sequence[str], images: Any, what: str,
                gallery: str | os.PathLike[str] | None = None,
                files: Sequence[str] | None = None, heatmaps: Heatmaps | None = None,
                ) -> Plotted:
    """Replace ``plots_dir`` with the plot data and pictures of one scored set.

    ``images[i]`` is the ``(H, W, 3)`` image of sample ``i`` and ``files[i]`` its file
    (needed for the most confident mistakes only); ``what`` names the set in the
    pictures' titles; ``heatmaps`` puts each mistake beside its heatmap in the gallery
    (see ``gallery_figure``). The gallery of mistakes shows the photos themselves, so the stage
    writes it to ``gallery``, a DVC-cached output, rather than into the git-tracked
    ``plots_dir``.
    """
    names = list(class_names)
    predicted = probs.argmax(1)
    confused = most_confused(y_true, predicted, names)
    calibration = reliability_rows(y_true, probs)
    ece = expected_calibration_error(y_true, probs)
    curves = {"roc": roc_points(y_true, probs, names),
              "precision_recall": pr_points(y_true, probs, names)}
    with fsutil.atomic_dir(plots_dir) as tmp:
        _dump(tmp / "confusion.json", confusion_rows(y_true, predicted, names))
        for folder, per_class in curves.items():
            (tmp / folder).mkdir()
            for name, rows in per_class.items():
                _dump(tmp / folder / f"{name}.json", rows)
        _dump(tmp / "calibration.json", calibration)
        _dump(tmp / "most_confused.json", confused)
        save_png(confusion_figure(y_true, predicted, names, f"Confusion matrix, {what}"),
                 tmp / "confusion.png")
        save_png(reliability_figure(calibration, ece, f"Reliability, {what}"),
                 tmp / "calibration.png")
        mistakes = gallery_figure(images, y_true, probs, names,
                                  title=f"Most confident mistakes, {what}", files=files,
                                  heatmaps=heatmaps)
        save_png(mistakes, Path(gallery) if gallery else tmp / "misclassified.png")
    return Plotted(curves, confused)


def print_summary(metrics: Mapping[str, Mapping[str, Any]],
                  metrics_path: str | os.PathLike[str],
                  confused: Sequence[dict[str, str | int]] = (), skipped: int = 0) -> None:
    """Two lines: each scored set's accuracy and ECE, and where the metrics went; the
    most confused pairs (actual -> predicted count) of the plotted set."""
    summary = ", ".join(f"{s} accuracy {m['accuracy']:.4f} (ECE {m['ece']:.4f}"
                        + (f", {m['unknown']['count']} unknown" if "unknown" in m else "")
                        + ")" for s, m in metrics.items())
    more = f", {skipped} unreadable files skipped" if skipped else ""
    print(f"evaluate: {summary}{more}; metrics in {metrics_path}")
    print(f"evaluate: most confused (actual -> predicted images): {confused_line(confused)}")


def _dump(path: Path, rows: list[dict]) -> None:
    path.write_text(json.dumps(rows, allow_nan=False) + "\n", encoding="utf-8")

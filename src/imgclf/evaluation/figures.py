"""Error-analysis pictures of the evaluate stage, as PNG-ready matplotlib figures.

* :func:`gallery_figure`: the most confident mistakes, each image with its file name,
  true class, predicted class and confidence, and beside it (given a heatmap function,
  :mod:`imgclf.inference.explain`) where in it the model saw the predicted class;
* :func:`confusion_figure`: the confusion matrix, for places that cannot draw DVC's
  vega plots (a pull request, a plain file browser);
* :func:`reliability_figure`: the reliability diagram of
  :mod:`imgclf.evaluation.reliability`.

Figures are built with matplotlib's object API and drawn by the Agg backend
(:func:`save_png`): no pyplot, no global state, no display needed. The functions take
arrays and return a ``Figure``; only :func:`save_png` writes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from imgclf import fsutil
from imgclf.evaluation.metrics import confusion_matrix, worst_mistakes
from imgclf.inference.explain import side_by_side

Heatmaps = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(images (k, H, W, 3) uint8, classes (k,)) -> (k, H, W)`` heatmaps in [0, 1] of those
classes (``imgclf.inference.explain.heatmaps`` of a model)."""

GALLERY_SIZE = 16
"""Default number of images in the gallery."""
FILE_CHARS = 26
"""File names longer than this are shortened in the gallery (the predictions CSV keeps
them whole)."""
WRONG = "#c0392b"
RIGHT = "#1e8449"


def gallery_figure(images: Any, y_true: np.ndarray, probs: np.ndarray,
                   class_names: Sequence[str], limit: int = GALLERY_SIZE,
                   columns: int = 4, title: str = "Most confident mistakes",
                   files: Sequence[str] | None = None,
                   heatmaps: Heatmaps | None = None) -> Figure:
    """A grid of the ``limit`` most confident mistakes (see :func:`worst_mistakes`).

    With ``heatmaps`` each mistake is shown beside its heatmap of the predicted class
    (the overlay of :func:`imgclf.inference.explain.side_by_side`): what the model took
    for that class.

    ``images`` is anything indexable by sample number giving an ``(H, W, 3)`` uint8
    image (an array, a memory-mapped split, a lazy loader): only the chosen samples are
    read. ``y_true`` (N,) and ``probs`` (N, C) are in the same order, and so is
    ``files``, whose base names head the images' titles when given. With no mistake
    the figure says so.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    chosen = worst_mistakes(y_true, probs, limit)
    predicted = probs.argmax(axis=1)
    columns = max(1, min(columns, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / columns))
    width = 4.4 if heatmaps is not None else 2.4  # an image and its heatmap, or the image
    size = (width * columns, 2.8 * rows + 0.5) if len(chosen) else (6.4, 2.4)
    fig = Figure(figsize=size, dpi=100)
    heading = fig.suptitle(f"{title} ({len(chosen)} of {int((predicted != y_true).sum())} "
                           f"wrong, {len(y_true)} images)", fontsize=11)
    _fit_width(fig, heading)
    if not len(chosen):
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "No misclassified images", ha="center", va="center", fontsize=12,
                color=RIGHT)
        return fig
    shown = _with_heatmaps(images, chosen, predicted, heatmaps)
    for n, i in enumerate(chosen.tolist()):
        ax = fig.add_subplot(rows, columns, n + 1)
        ax.imshow(shown[n], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(WRONG)
            spine.set_linewidth(2)
        name = f"{short_label(PurePath(files[i]).name, FILE_CHARS)}\n" if files else ""
        ax.set_title(f"{name}true: {class_names[y_true[i]]}\npredicted: "
                     f"{class_names[predicted[i]]} ({probs[i, predicted[i]]:.2f})",
                     fontsize=9, color=WRONG)
    fig.tight_layout()
    return fig


def _with_heatmaps(images: Any, chosen: np.ndarray, predicted: np.ndarray,
                   heatmaps: Heatmaps | None) -> list[np.ndarray]:
    """The pictures of the ``chosen`` samples: each image, or (with ``heatmaps``) the
    image beside its heatmap of the ``predicted`` class."""
    pictures = [np.asarray(images[i], dtype=np.uint8) for i in chosen.tolist()]
    if heatmaps is None or not pictures:
        return pictures
    heat = heatmaps(np.stack(pictures), predicted[chosen])
    return [side_by_side(p, h) for p, h in zip(pictures, heat, strict=True)]


def _fit_width(fig: Figure, text: Text, margin: float = 0.3) -> None:
    """Widen ``fig`` (inches) when ``text`` and ``margin`` on either side do not fit: a
    gallery of one or two images is narrower than its title."""
    width = text.get_window_extent(FigureCanvasAgg(fig).get_renderer()).width / fig.dpi
    if width + 2 * margin > fig.get_figwidth():
        fig.set_figwidth(width + 2 * margin)


CONFUSION_COUNTS_UP_TO = 30
"""Up to this many classes the confusion matrix writes each cell's count in it."""
LABEL_CHARS = 20
"""Class names longer than this are shortened in the confusion matrix's labels (the
plot data, ``confusion.json``, keeps them whole)."""


def confusion_layout(n: int) -> tuple[float, float]:
    """``(cell inches, label font points)`` for an n-class matrix.

    Cells shrink from 0.6 in (a few classes) to 0.17 in (100 classes and more), so the
    picture stays under about 20 in (2,000 px) a side; the labels' font follows the
    cell so neighbouring names never overlap (at least 6 pt: readable when zoomed).
    """
    cell = min(0.6, max(0.17, 9.0 / max(n, 1)))
    font = max(6.0, min(9.0, cell * 72 * 0.75))
    return cell, font


def short_label(name: str, limit: int = LABEL_CHARS) -> str:
    """``name`` cut to ``limit`` characters, the last one an ellipsis when it was cut."""
    return name if len(name) <= limit else name[:limit - 1] + "\u2026"


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                     title: str = "Confusion matrix") -> Figure:
    """True (rows) against predicted (columns) classes, shaded by the share of the row.

    Normalized by row, so a small class's mistakes show as clearly as a large one's;
    up to :data:`CONFUSION_COUNTS_UP_TO` classes each cell also shows its count. With
    many classes (50-100) the cells and labels shrink to fit (:func:`confusion_layout`)
    and long names are shortened (:func:`short_label`).
    """
    n = len(class_names)
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), n)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    cell, font = confusion_layout(n)
    labels = [short_label(name) for name in class_names]
    # The longest label's length in inches (about 0.6 em a character).
    longest = 0.6 * font / 72 * max(len(label) for label in labels)
    margin = longest + 0.8  # room for it beside and below the cells
    side = max(3.5, cell * n) + margin
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    shaded = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shaded, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    # Column labels lie flat when the longest fits its cell, else stand upright.
    flat = longest < 0.9 * max(cell, 3.5 / n)
    ax.set_xticks(range(n), labels=labels, fontsize=font, rotation=0 if flat else 90)
    ax.set_yticks(range(n), labels=labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title} ({int(matrix.sum())} images)")
    if n <= CONFUSION_COUNTS_UP_TO:
        for (r, c), count in np.ndenumerate(matrix):
            ax.text(c, r, str(count), ha="center", va="center", fontsize=min(9.0, font),
                    color="white" if share[r, c] > 0.5 else "black")
    fig.tight_layout()
    return fig


def reliability_figure(rows: Sequence[dict[str, float | int]], ece: float,
                       title: str = "Reliability diagram") -> Figure:
    """Accuracy against mean confidence per bin (the rows of ``reliability_rows``).

    Points on the diagonal are calibrated; below it the model is overconfident. The
    size of each point is its bin's share of the images.
    """
    fig = Figure(figsize=(4.8, 4.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated")
    if rows:
        total = sum(int(r["count"]) for r in rows)
        x = [float(r["confidence"]) for r in rows]
        y = [float(r["accuracy"]) for r in rows]
        ax.plot(x, y, color=WRONG, linewidth=1.5, label="model")
        ax.scatter(x, y, s=[20 + 300 * int(r["count"]) / total for r in rows], color=WRONG,
                   zorder=3)
    ax.set_xlim(0, 1.03)
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("confidence (mean of the bin)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}, ECE {ece:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Draw ``fig`` with the Agg backend into the PNG file ``path`` (atomically)."""
    FigureCanvasAgg(fig)
    with fsutil.atomic_path(path) as tmp:
        # No "Software" entry: the bytes depend on the picture only, so an unchanged
        # plot stays byte-identical in git.
        fig.savefig(tmp, format="png", metadata={"Software": None})

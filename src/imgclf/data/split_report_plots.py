"""Pictures of the split stage's data report (``metrics/data_report/`` in the pipeline).

Each ``*_figure`` function takes the report (``report.json``'s dict) or pixels and
returns a matplotlib ``Figure``, drawn with the Agg backend: no pyplot, no display. The
notebook ``notebooks/data_analysis.ipynb`` shows the same figures.
:func:`write_report_plots` writes them all:

* ``class_balance.png``: images per class, split into train/val/test;
* ``image_sizes.png``: the original widths and heights, and the aspect ratios;
* ``samples/<class>.png``: a grid of sample images of each class, as the model sees them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from imgclf import fsutil
from imgclf.data.shards import SplitImages

SAMPLES_PER_CLASS = 8
SPLIT_COLOURS = {"train": "#2e86c1", "val": "#f39c12", "test": "#27ae60"}
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def class_balance_figure(report: Mapping[str, Any]) -> Figure:
    """Horizontal bars: images per class, one segment per split, with the counts."""
    classes = list(report["classes"])
    counts: Mapping[str, Mapping[str, int]] = report["counts"]
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(classes)), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    left = np.zeros(len(classes))
    for split, per_class in counts.items():
        values = np.array([per_class.get(c, 0) for c in classes], dtype=float)
        bars = ax.barh(classes, values, left=left, label=split,
                       color=SPLIT_COLOURS.get(split))
        ax.bar_label(bars, labels=[str(int(v)) if v else "" for v in values],
                     label_type="center", fontsize=8, color="white")
        left += values
    for y, total in enumerate(left):
        ax.text(total, y, f" {int(total)}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(initial=0) * 1.12, 1))
    ax.set_xlabel("images")
    ax.set_title(f"Images per class and split ({report['images']} in all)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def image_sizes_figure(report: Mapping[str, Any]) -> Figure:
    """Original width against height per class (point area: how many), and the
    histogram of aspect ratios."""
    sizes = report.get("image_sizes") or {}
    fig = Figure(figsize=(11, 4.4), dpi=100)
    scatter, hist = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rows = sizes.get("sizes", [])
    top = max((r["count"] for r in rows), default=1)
    for i, name in enumerate(report["classes"]):
        mine = [r for r in rows if r["class"] == name]
        if mine:
            scatter.scatter([r["width"] for r in mine], [r["height"] for r in mine],
                            s=[12 + 200 * r["count"] / top for r in mine], alpha=0.5,
                            color=CLASS_COLOURS[i % len(CLASS_COLOURS)], label=name)
    if sizes.get("resized_to"):
        side = sizes["resized_to"]
        scatter.axvline(side, color="grey", linestyle=":", linewidth=1)
        scatter.axhline(side, color="grey", linestyle=":", linewidth=1,
                        label=f"resized to {side}")
    scatter.set_xlabel("width (px)")
    scatter.set_ylabel("height (px)")
    scatter.set_title("Original sizes")
    if rows:
        scatter.legend(fontsize=8, markerscale=0.6)
    bins = sizes.get("aspect_ratio_histogram", [])
    labels = [f"{b['from']:g}-{b['to']:g}" if b["to"] is not None else f"≥{b['from']:g}"
              for b in bins]
    bars = hist.bar(labels, [b["count"] for b in bins], color="#5d6d7e")
    hist.bar_label(bars, fontsize=8)
    hist.set_xlabel("aspect ratio (width / height)")
    hist.set_ylabel("images")
    hist.set_title("Aspect ratios (1 = square)")
    hist.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def sample_grid_figure(samples: Sequence[tuple[np.ndarray, str]], class_name: str,
                       columns: int = 4) -> Figure:
    """The ``(image, caption)`` samples of one class in a grid."""
    columns = max(1, min(columns, len(samples)))
    rows = max(1, math.ceil(len(samples) / columns))
    fig = Figure(figsize=(2.2 * columns, 2.3 * rows + 0.4), dpi=100)
    fig.suptitle(f"{class_name}: {len(samples)} samples", fontsize=11)
    for n, (image, caption) in enumerate(samples):
        ax = fig.add_subplot(rows, columns, n + 1)
        ax.imshow(np.asarray(image, dtype=np.uint8), interpolation="nearest")
        ax.set_title(caption, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig


def sample_images(prepared: str | os.PathLike[str], rows: Sequence[Mapping[str, str]],
                  per_class: int = SAMPLES_PER_CLASS) -> dict[str, list[tuple[np.ndarray, str]]]:
    """Up to ``per_class`` images of each class from the shards of ``prepared``.

    ``rows`` are the manifest's rows in its order, which is the shards' order within
    each split; the first rows of each class are taken (train first: its order is
    shuffled by the split's seed). Captions are ``<file name> (<split>)``.
    """
    position: dict[str, int] = {}
    wanted: dict[str, list[tuple[str, int, str]]] = {}
    for row in rows:
        split = row["split"]
        index = position.get(split, 0)
        position[split] = index + 1
        mine = wanted.setdefault(row["label"], [])
        if len(mine) < per_class:
            mine.append((split, index, Path(row["path"]).name))
    images = {split: SplitImages(prepared, split) for split in position}
    return {label: [(np.array(images[split][index]), f"{_short(name)} ({split})")
                    for split, index, name in picks] for label, picks in wanted.items()}


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def save_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Draw ``fig`` with the Agg backend into the PNG file ``path`` (atomically)."""
    FigureCanvasAgg(fig)
    with fsutil.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # bytes: the picture only


def write_report_plots(report: Mapping[str, Any], prepared: str | os.PathLike[str],
                       rows: Sequence[Mapping[str, str]], out: str | os.PathLike[str],
                       per_class: int = SAMPLES_PER_CLASS) -> None:
    """Replace the folder ``out`` with the report's pictures (see the module docstring).

    ``prepared`` is the split's output folder (its shards give the samples) and
    ``rows`` its manifest rows.
    """
    samples = sample_images(prepared, rows, per_class)
    with fsutil.atomic_dir(out) as tmp:
        save_png(class_balance_figure(report), tmp / "class_balance.png")
        save_png(image_sizes_figure(report), tmp / "image_sizes.png")
        (tmp / "samples").mkdir()
        for name in report["classes"]:
            if samples.get(name):
                save_png(sample_grid_figure(samples[name], name), tmp / "samples" / f"{name}.png")

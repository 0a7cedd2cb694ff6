"""W&B charts and tables of the evaluate stage's results, drawn from what it hands over.

W&B's ROC and PR helpers need pandas, which this project does not install; these use
W&B's preset chart on a plain table instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Per-class curve points, {class name: [{"fpr": 0.0, "tpr": 0.5}, ...]}.
Curves = dict[str, list[dict[str, float]]]


def curve_chart(curves: Curves, x: str, y: str, title: str,
                 x_title: str, y_title: str) -> Any:
    """One line per class, drawn with the preset chart of ``wandb.plot.roc_curve``."""
    import wandb

    table = wandb.Table(columns=["class", x, y], data=[
        [name, row[x], row[y]] for name, rows in curves.items() for row in rows])
    return wandb.plot_table("wandb/area-under-curve/v0", table,
                            {"x": x, "y": y, "class": "class"},
                            {"title": title, "x-axis-title": x_title, "y-axis-title": y_title})


def misclassified_table(images: Any, y_true: np.ndarray, probs: np.ndarray,
                        class_names: list[str], rows: np.ndarray) -> Any:
    """A table of the images ``rows`` (indices, in order): image, true, predicted, confidence."""
    import wandb

    predicted = probs.argmax(1)
    table = wandb.Table(columns=["image", "true", "predicted", "confidence", "index"])
    for i in np.asarray(rows).tolist():
        table.add_data(wandb.Image(np.asarray(images[i])), class_names[y_true[i]],
                       class_names[predicted[i]], round(float(probs[i, predicted[i]]), 4), i)
    return table

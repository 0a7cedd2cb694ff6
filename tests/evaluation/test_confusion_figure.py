"""The confusion matrix picture stays readable from 3 to 100 classes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from imgclf.evaluation.figures import (
    LABEL_CHARS,
    confusion_figure,
    save_png,
    short_label,
)


def _predictions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(n), 5)
    y_pred = np.where(rng.random(len(y_true)) < 0.7, y_true, rng.integers(0, n, len(y_true)))
    return y_true, y_pred


def _overlaps(boxes: list) -> int:
    """How many neighbouring label boxes overlap (they come in axis order)."""
    return sum(a.overlaps(b) for a, b in itertools.pairwise(boxes))


@pytest.mark.parametrize("n", [3, 12, 50, 100])
def test_every_label_is_drawn_without_overlapping(n: int, tmp_path: Path) -> None:
    names = [f"species_{k:03d}_with_a_long_latin_name" for k in range(n)]
    fig = confusion_figure(*_predictions(n), names)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        assert [t.get_text() for t in ticks] == [short_label(name) for name in names]
        assert all(len(t.get_text()) <= LABEL_CHARS for t in ticks)
        assert min(t.get_fontsize() for t in ticks) >= 6
        boxes = [t.get_window_extent(renderer) for t in ticks]
        assert _overlaps(boxes) == 0
        # Every label lies inside the picture.
        width, height = canvas.get_width_height()
        assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height
                   for b in boxes)
    save_png(fig, tmp_path / "c.png")
    width, height = Image.open(tmp_path / "c.png").size
    assert max(width, height) <= 2500  # a picture a browser shows at a glance


def test_shading_is_the_share_of_each_true_class() -> None:
    # 9 of 10 'big' right, 1 of 2 'small' right: the rows are shaded 0.9 and 0.5.
    y_true = np.array([0] * 10 + [1] * 2)
    y_pred = np.array([0] * 9 + [1] + [1, 0])
    fig = confusion_figure(y_true, y_pred, ["big", "small"])
    shaded = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(shaded), [[0.9, 0.1], [0.5, 0.5]])
    counts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert counts == ["1", "1", "1", "9"]


def test_counts_are_left_out_beyond_thirty_classes() -> None:
    assert confusion_figure(*_predictions(30), [f"c{k}" for k in range(30)]).axes[0].texts
    assert not confusion_figure(*_predictions(31), [f"c{k}" for k in range(31)]).axes[0].texts


def test_short_label_marks_what_it_cut() -> None:
    assert short_label("cat") == "cat"
    assert short_label("x" * LABEL_CHARS) == "x" * LABEL_CHARS
    assert short_label("abcdefghijklmnopqrstuvwxyz") == "abcdefghijklmnopqrs\u2026"

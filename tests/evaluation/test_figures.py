"""The evaluate stage's pictures: the most confident mistakes, confusion matrix, reliability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from imgclf.evaluation.figures import (
    confusion_figure,
    gallery_figure,
    reliability_figure,
    save_png,
)
from imgclf.evaluation.metrics import worst_mistakes

NAMES = ["cat", "dog", "eel"]
# Samples 0 and 3 are right; 1 (dog, 0.9), 2 (cat, 0.6), 4 (cat, 0.9), 5 (eel, 0.7) wrong.
Y = np.array([0, 0, 1, 2, 2, 1])
P = np.array([[0.8, 0.1, 0.1], [0.05, 0.9, 0.05], [0.6, 0.3, 0.1],
              [0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.1, 0.2, 0.7]])


class OnlyThese:
    """Images that may be read only at the given indices (the gallery reads no others)."""

    def __init__(self, allowed: set[int]) -> None:
        self.allowed, self.read = allowed, []

    def __getitem__(self, i: int) -> np.ndarray:
        assert i in self.allowed, f"image {i} read, but it is not a chosen mistake"
        self.read.append(i)
        return np.full((8, 8, 3), 40 * i, dtype=np.uint8)


def test_worst_mistakes_most_confident_first_ties_in_sample_order() -> None:
    assert worst_mistakes(Y, P).tolist() == [1, 4, 5, 2]
    assert worst_mistakes(Y, P, limit=2).tolist() == [1, 4]
    assert worst_mistakes(Y, P, limit=0).tolist() == []
    assert worst_mistakes(np.array([0, 1]), np.eye(2)).tolist() == []


def test_gallery_shows_the_chosen_mistakes_with_their_labels() -> None:
    images = OnlyThese({1, 4, 5})
    fig = gallery_figure(images, Y, P, NAMES, limit=3, columns=2)
    assert isinstance(fig, Figure)
    assert images.read == [1, 4, 5]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["true: cat\npredicted: dog (0.90)", "true: eel\npredicted: cat (0.90)",
                      "true: dog\npredicted: eel (0.70)"]
    assert "3 of 4 wrong, 6 images" in fig._suptitle.get_text()


def test_gallery_without_mistakes_says_so(tmp_path: Path) -> None:
    fig = gallery_figure(OnlyThese(set()), np.array([0, 1]), np.eye(2), ["a", "b"])
    assert "No misclassified images" in [t.get_text() for t in fig.axes[0].texts]
    save_png(fig, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").format == "PNG"


def test_save_png_writes_a_png_atomically_and_reproducibly(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        save_png(gallery_figure(images, Y, P, NAMES), tmp_path / name)
    with Image.open(tmp_path / "a.png") as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 200
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp files


def test_confusion_figure_annotates_the_counts() -> None:
    fig = confusion_figure(Y, P.argmax(1), NAMES, "Confusion (test)")
    ax = fig.axes[0]
    counts = [t.get_text() for t in ax.texts]
    assert len(counts) == 9 and sum(map(int, counts)) == len(Y)
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert ax.get_title() == "Confusion (test) (6 images)"


@pytest.mark.parametrize("rows", [[], [{"bin": 8, "confidence": 0.85, "accuracy": 0.5,
                                         "count": 2}]])
def test_reliability_figure(rows: list[dict], tmp_path: Path) -> None:
    fig = reliability_figure(rows, 0.35)
    assert "ECE 0.350" in fig.axes[0].get_title()
    save_png(fig, tmp_path / "r.png")
    assert Image.open(tmp_path / "r.png").format == "PNG"


@pytest.mark.parametrize("mistakes", [1, 2])
def test_the_gallery_title_fits_with_few_mistakes(mistakes: int, tmp_path: Path) -> None:
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.9, 0.1], [0.1, 0.9]])  # 0 and 1 wrong
    if mistakes == 1:
        probs[1] = [0.2, 0.8]  # now right
    fig = gallery_figure(np.zeros((4, 8, 8, 3), np.uint8), y, probs, ["cats", "dogs"],
                         title="Most confident mistakes, labelled")
    save_png(fig, tmp_path / "g.png")  # draws it
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width = fig.bbox.width
    texts = [fig._suptitle, *(ax.title for ax in fig.axes)]
    assert f"({mistakes} of {mistakes} wrong" in texts[0].get_text()
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width, (text.get_text(), box, width)
    assert Image.open(tmp_path / "g.png").size[0] == round(width)

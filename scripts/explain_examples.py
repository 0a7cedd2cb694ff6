"""The pictures of docs/predict.md's "Why it decided": the gallery of mistakes beside
their heatmaps, made from generated images only (never the dataset's photos).

The small CNN is trained on the corner-square set of ``tests/inference/test_explain.py``
(a coloured square in one corner of grey noise; its colour, or its absence, is the
class). Its test images then get a decoy: a second square of another colour in the
opposite corner, the label staying the first's. The evaluate stage's gallery code draws
the most confident mistakes, each beside its Grad-CAM heatmap of the predicted class,
which lights the decoy. It also prints the mean heatmap mass in the square's quadrant
(test images without decoys), per method.

    python scripts/explain_examples.py [--out docs/explain-gallery.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _corner_module() -> ModuleType:
    """tests/inference/test_explain.py: the one definition of the generated set."""
    path = REPO / "tests" / "inference" / "test_explain.py"
    spec = importlib.util.spec_from_file_location("corner_set", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_decoys(pixels: np.ndarray, labels: np.ndarray, corners: np.ndarray, n_colours: int,
                colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images that have a square, each with a second square of the next colour in the
    opposite corner: the label stays the first square's, so a model that reads the decoy
    errs, and its heatmap shows which square it read."""
    keep = np.flatnonzero(corners >= 0)
    out = pixels[keep].copy()
    size = out.shape[1]
    side = size // 6
    for n, i in enumerate(keep):
        other = 3 - corners[i]
        top = 0 if other < 2 else size - side
        left = 0 if other % 2 == 0 else size - side
        out[n, top:top + side, left:left + side] = colours[(labels[i] + 1) % n_colours]
    return out, labels[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "explain-gallery.png"))
    args = parser.parse_args()
    import keras

    from imgclf.evaluation.figures import gallery_figure, save_png
    from imgclf.inference import explain
    from imgclf.models.architectures import build_model
    from imgclf.params import ModelParams

    corners = _corner_module()
    keras.utils.set_random_seed(0)
    x, y, _ = corners.corner_set(600, 32, seed=0)
    xt, yt, ct = corners.corner_set(120, 32, seed=1)
    model = build_model(ModelParams(arch="small", dropout=0.0), 32, len(corners.CLASSES))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  jit_compile=False)
    model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    shown, labels = with_decoys(xt, yt, ct, len(corners.SQUARE_COLOURS),
                                corners.SQUARE_COLOURS)
    probs = model.predict(shown, verbose=0)
    fig = gallery_figure(shown.astype(np.uint8), labels, probs, corners.CLASSES, limit=8,
                         title="Most confident mistakes, corner squares with a decoy",
                         heatmaps=lambda p, c: explain.heatmaps(model, p, c))
    save_png(fig, args.out)
    print(f"{args.out}: {(probs.argmax(1) != labels).sum()} mistakes of {len(labels)} "
          "images with a decoy square")
    for method in explain.METHODS:
        masses = corners.corner_masses(model, xt, ct, method)
        print(f"small CNN, 8 epochs, {method}: quadrant mass mean {masses.mean():.3f}, "
              f"images >= 0.5: {(masses >= 0.5).mean():.0%}", file=sys.stdout)


if __name__ == "__main__":
    main()

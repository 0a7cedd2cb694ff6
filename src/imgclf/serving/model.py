"""The one place the server loads a model and turns pixels into probabilities.

It uses exactly what ``imgclf predict`` uses (``load_runtime``, so any exported format,
and ``predict_batch``), so the server answers as predict does. The batcher makes one
model call at a time, which a LiteRT runtime requires.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgclf.params import Tta


@dataclass(frozen=True)
class Predictor:
    """A loaded model: its class names, input size, and its batch function."""

    class_names: list[str]
    image_size: int
    tta: Tta
    predict: Callable[[np.ndarray], np.ndarray]
    """``(B, S, S, 3)`` float32 pixels -> ``(B, C)`` float32 probabilities."""


def load_predictor(path: str | os.PathLike[str], tta: Tta = "none",
                   allow_unsafe: bool = False) -> Predictor:
    """The model at ``path`` (``.keras``, ``.tflite``, ``.onnx`` or a SavedModel folder) as
    a :class:`Predictor`; ``UserError`` if unusable."""
    from imgclf.inference.batch import predict_batch
    from imgclf.inference.runtimes import load_runtime  # TensorFlow: only when loaded

    model = load_runtime(path, allow_unsafe=allow_unsafe)
    info = model.info

    def predict(pixels: np.ndarray) -> np.ndarray:
        return predict_batch(model, pixels, tta)

    return Predictor(list(info.class_names), info.image_size, tta, predict)

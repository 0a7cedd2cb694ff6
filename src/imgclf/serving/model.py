"""The one place the server loads a model and turns pixels into probabilities.

A :class:`Predictor` is a runtime (``load_runtime``, as ``imgclf predict`` loads it, so
any exported format) plus the test-time augmentation it is called with
(``predict_batch``), so the server answers as predict does. The batcher makes one
model call at a time, which a LiteRT runtime requires.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from imgclf.inference.batch import predict_batch
from imgclf.inference.runtimes import Runtime, load_runtime  # TensorFlow: only when loaded
from imgclf.params import Tta


@dataclass(frozen=True)
class Predictor:
    """A loaded model and the test-time augmentation it is called with."""

    runtime: Runtime
    tta: Tta = "none"

    @property
    def class_names(self) -> list[str]:
        return list(self.runtime.info.class_names)

    @property
    def image_size(self) -> int:
        return self.runtime.info.image_size

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(B, S, S, 3)`` float32 pixels -> ``(B, C)`` float32 probabilities."""
        return predict_batch(self.runtime, pixels, self.tta)


def load_predictor(path: str | os.PathLike[str], tta: Tta = "none",
                   allow_unsafe: bool = False) -> Predictor:
    """The model at ``path`` (``.keras``, ``.tflite``, ``.onnx`` or a SavedModel folder) as
    a :class:`Predictor`; ``UserError`` if unusable."""
    return Predictor(load_runtime(path, allow_unsafe=allow_unsafe), tta)

"""The one place the server loads a model and turns pixels into probabilities.

A :class:`Predictor` is a runtime (``load_runtime``, as ``imgclf predict`` loads it, so
any exported format) plus the test-time augmentation it is called with
(``score_batch``) and the OOD threshold it flags with, so the server answers as
predict does. The batcher makes one model call at a time, which a LiteRT runtime
requires; it moves one array per request, so the OOD score rides along as the last
column (:meth:`Predictor.predict`, :meth:`Predictor.split`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from imgclf.inference.batch import score_batch
from imgclf.inference.predict import Unknown, fill_rows
from imgclf.inference.runtimes import Runtime, load_runtime  # TensorFlow: only when loaded
from imgclf.params import Tta


@dataclass(frozen=True)
class Predictor:
    """A loaded model, the test-time augmentation it is called with and the OOD
    threshold override (None: the model file's own)."""

    runtime: Runtime
    tta: Tta = "none"
    unknown_threshold: float | None = None

    @property
    def threshold(self) -> float | None:
        """The threshold the server flags with; None for a model without the score."""
        return self.runtime.info.unknown_threshold(self.unknown_threshold)

    def unknown_line(self) -> str:
        if self.threshold is None:
            return "no OOD score"
        ood = self.runtime.info.ood
        method = ood.method if ood is not None else "?"
        return f"unknown above {method} score {self.threshold:.6g}"

    @property
    def class_names(self) -> list[str]:
        return list(self.runtime.info.class_names)

    @property
    def image_size(self) -> int:
        return self.runtime.info.image_size

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(B, S, S, 3)`` float32 pixels -> ``(B, C)`` float32 probabilities, and the
        OOD score as a last column ``(B, C + 1)`` for a model with the score."""
        probs, scores = score_batch(self.runtime, pixels, self.tta)
        return probs if scores is None else np.concatenate([probs, scores[:, None]], 1)

    def split(self, out: np.ndarray | None, n: int, rows: list[int],
              ) -> tuple[np.ndarray, Unknown | None]:
        """``(probs (n, C), the unknown flags' scores and threshold or None)`` of the
        ``predict`` output ``out`` of the usable ``rows`` of ``n`` images (NaN elsewhere)."""
        c = len(self.class_names)
        probs = fill_rows(n, rows, None if out is None else out[:, :c], c)
        if self.threshold is None:
            return probs, None
        scores = fill_rows(n, rows, None if out is None else out[:, c:c + 1], 1)[:, 0]
        return probs, Unknown(scores, self.threshold)


def load_predictor(path: str | os.PathLike[str], tta: Tta = "none",
                   allow_unsafe: bool = False,
                   unknown_threshold: float | None = None) -> Predictor:
    """The model at ``path`` (``.keras``, ``.tflite``, ``.onnx`` or a SavedModel folder) as
    a :class:`Predictor`; ``UserError`` if unusable."""
    return Predictor(load_runtime(path, allow_unsafe=allow_unsafe), tta, unknown_threshold)

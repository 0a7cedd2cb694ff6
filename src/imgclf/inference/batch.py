"""Class probabilities (and OOD scores) of a batch, with optional test-time augmentation.

Evaluate (the stage and ``--data FOLDER``) and ``imgclf predict`` all score images
through ``score_batch`` (``predict_batch`` is its probabilities), so the metrics
describe exactly what predict answers.
"""

from __future__ import annotations

from typing import Any, get_args

import numpy as np

from imgclf.inference.runtimes import split_outputs
from imgclf.params import Tta

TTA_MODES: tuple[str, ...] = get_args(Tta)


def _scored(model: Any, images: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A runtime's ``predict_scored``; a Keras model's outputs split likewise."""
    if hasattr(model, "predict_scored"):
        return model.predict_scored(images)
    probs, scores = split_outputs(model.predict_on_batch(images))
    return np.asarray(probs, np.float32), None if scores is None else np.asarray(scores)


def score_batch(model: Any, images: Any, tta: Tta = "none",
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(probs (B, C) float32, OOD scores (B,) or None)`` of ``images``, a
    ``(B, S, S, 3)`` batch of pixels.

    With ``tta="flip"`` each row is the mean of the image's and of its left-right
    mirror's (the training augmentation's flip, so the model has seen both
    orientations), the score too: one model call on the ``2B`` images.
    """
    if tta == "none":
        return _scored(model, images)
    if tta != "flip":
        raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_MODES)}")
    pixels = np.asarray(images)
    both = np.concatenate([pixels, pixels[:, :, ::-1]])
    probs, scores = _scored(model, both)
    n = len(pixels)
    return ((probs[:n] + probs[n:]) / 2,
            None if scores is None else (scores[:n] + scores[n:]) / 2)


def predict_batch(model: Any, images: Any, tta: Tta = "none") -> np.ndarray:
    """``(B, C)`` float32 probabilities of ``images`` (see :func:`score_batch`)."""
    return score_batch(model, images, tta)[0]

"""Class probabilities of a batch, with optional test-time augmentation.

Evaluate (the stage and ``--data FOLDER``) and ``imgclf predict`` all score images
through ``predict_batch``, so the metrics describe exactly what predict answers.
"""

from __future__ import annotations

from typing import Any, get_args

import numpy as np

from imgclf.params import Tta

TTA_MODES: tuple[str, ...] = get_args(Tta)


def predict_batch(model: Any, images: Any, tta: Tta = "none") -> np.ndarray:
    """``(B, C)`` float32 probabilities of ``images``, a ``(B, S, S, 3)`` batch of pixels.

    With ``tta="flip"`` each row is the mean of the probabilities of the image and of
    its left-right mirror (the training augmentation's flip, so the model has seen both
    orientations): one model call on the ``2B`` images.
    """
    if tta == "none":
        return np.asarray(model.predict_on_batch(images), dtype=np.float32)
    if tta != "flip":
        raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_MODES)}")
    pixels = np.asarray(images)
    both = np.concatenate([pixels, pixels[:, :, ::-1]])
    probs = np.asarray(model.predict_on_batch(both), dtype=np.float32)
    n = len(pixels)
    return (probs[:n] + probs[n:]) / 2

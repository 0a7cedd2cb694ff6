"""Class weights for uneven classes (``train.class_weight``): counts in, weights out."""

from __future__ import annotations

import numpy as np

from imgclf.params import ClassWeight


def class_weights(counts: np.ndarray, mode: ClassWeight) -> dict[int, float] | None:
    """Keras' ``class_weight`` for ``(C,)`` class counts of the train split, or None.

    ``balanced`` gives class ``k`` the weight ``N / (K * counts[k])`` over the K classes
    that have images (scikit-learn's "balanced"): every class then weighs the same in
    the loss in total, and the weights average 1 per image so the learning rate keeps
    its meaning. A class without images gets no entry (Keras then uses 1; it has no
    samples to weigh). ``none`` gives None: every image weighs 1.
    """
    if mode == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    present = np.flatnonzero(counts > 0)
    total = counts.sum()
    return {int(k): float(total / (len(present) * counts[k])) for k in present}

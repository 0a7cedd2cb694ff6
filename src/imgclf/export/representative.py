"""The int8 model's representative dataset: a spread of the *train* split only.

The LiteRT converter fixes the int8 ranges of every tensor from these images (its
``representative_dataset``); drawing them from val or test would let the scored images
tune the model that is scored.
"""

from __future__ import annotations

import os

import numpy as np

from imgclf.data.shards import SplitImages

REPRESENTATIVE_SPLIT = "train"


def spread_indices(n_available: int, n_wanted: int) -> np.ndarray:
    """``(min(n_wanted, n_available),)`` int indices spread evenly over ``0..n_available-1``.

    Evenly spaced rather than the first ones, so that whatever order the records are in
    (by class, by file name), every part of the split is represented.
    """
    n = min(n_wanted, n_available)
    if n <= 0:
        return np.zeros((0,), np.int64)
    return np.unique(np.linspace(0, n_available - 1, n).round().astype(np.int64))


def representative_images(data: str | os.PathLike[str], n: int) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 images of the prepared train split (``N = min(n, its size)``)."""
    images = SplitImages(data, REPRESENTATIVE_SPLIT)
    picked = spread_indices(len(images), n)
    if len(picked) == 0:
        raise ValueError(f"the {REPRESENTATIVE_SPLIT} split of {data} is empty")
    return np.stack([images[int(i)] for i in picked])

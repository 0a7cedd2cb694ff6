"""The Python API: ``imgclf.load(path).predict(images)``, the rows of ``imgclf predict``.

::

    import imgclf
    clf = imgclf.load("models/model.keras")    # or any export: SavedModel, .tflite, .onnx
    clf.predict(["photos/", "cat.jpg"])        # files and folders, as the CLI takes them
    clf.predict(pixels)                        # (H, W, 3) or (N, H, W, 3) RGB arrays, 0..255

Each row is what ``imgclf predict --format json`` prints for that image:
``{"path", "predicted", "confidence", "unknown", "ood_score", "top_k": [[class, p],
...]}`` (``unknown``: none of the classes, docs/ood.md), or ``{"path",
"error"}`` for a file that could not be read. A Pillow image counts as its array;
a 4th channel is transparency, put onto white as for files. Files are decoded and scored as the CLI
does (:mod:`imgclf.inference.predict`); an array of another size than the model's is
resized as a file would be (bilinear), one of the model's size is scored as it is.
An array's ``path`` is ``"<array I>"``, ``I`` its place in the input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.inference.batch import score_batch
from imgclf.inference.predict import (
    BATCH_SIZE,
    TOP_K,
    Unknown,
    find_images,
    score_paths,
    to_predictions,
)
from imgclf.inference.runtimes import Runtime, load_runtime
from imgclf.params import Tta

Image = Path | np.ndarray  # one input: a file, or its pixels
ARRAY_DIMS = (2, 3)  # grayscale (H, W) or colour (H, W, 3|4); one more for a batch


class Classifier:
    """A loaded model of any format, with the class names and image size it was trained on."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def class_names(self) -> list[str]:
        return list(self.runtime.info.class_names)

    @property
    def image_size(self) -> int:
        """Pixels a side the model takes; inputs are resized to it."""
        return self.runtime.info.image_size

    def __repr__(self) -> str:
        return (f"Classifier({str(self.runtime.path)!r}, classes={self.class_names}, "
                f"image_size={self.image_size})")

    def predict(self, images: Any, top_k: int = TOP_K, batch_size: int = BATCH_SIZE,
                tta: Tta = "none", unknown_threshold: float | None = None,
                ) -> list[dict[str, Any]]:
        """One row per image (see the module doc), in the order given.

        ``images``: a path (a folder gives its image files, sorted), an array, or a
        list of either. ``tta`` is the test-time augmentation (``evaluate.tta``);
        ``unknown_threshold`` overrides the model file's OOD threshold.
        """
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be at least 1, got {top_k}, "
                             f"{batch_size}")
        items = _items(images)
        probs, scores, errors = self._score(items, batch_size, tta)
        threshold = self.runtime.info.unknown_threshold(unknown_threshold)
        unknown = Unknown(scores, threshold) if threshold is not None else None
        names = [str(x) if isinstance(x, Path) else f"<array {i}>" for i, x in enumerate(items)]
        return [p.to_json() for p in to_predictions(names, probs, errors, self.class_names,
                                                    top_k, unknown)]

    def _score(self, items: Sequence[Image], batch_size: int, tta: Tta,
               ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """``(probs (N, C), OOD scores (N,), errors (N,))`` as ``score_paths`` gives them,
        for any items (the scores NaN for a model without them)."""
        probs = np.full((len(items), len(self.class_names)), np.nan, dtype=np.float32)
        scores = np.full(len(items), np.nan, dtype=np.float32)
        errors: list[str | None] = [None] * len(items)
        files = [i for i, x in enumerate(items) if isinstance(x, Path)]
        if files:
            got, got_scores, why = score_paths(self.runtime, [items[i] for i in files],
                                               self.image_size, batch_size, tta)
            for row, i in enumerate(files):
                errors[i] = why[row]
                if why[row] is None:
                    probs[i] = got[row]
                    scores[i] = np.nan if got_scores is None else got_scores[row]
        arrays = [i for i, x in enumerate(items) if not isinstance(x, Path)]
        for start in range(0, len(arrays), batch_size):
            chunk = arrays[start:start + batch_size]
            pixels = np.stack([_pixels(items[i], self.image_size) for i in chunk])
            probs[chunk], chunk_scores = score_batch(self.runtime, pixels, tta)
            if chunk_scores is not None:
                scores[chunk] = chunk_scores
        return probs, scores, errors


def load(path: str | os.PathLike[str], allow_unsafe_model: bool = False) -> Classifier:
    """The model at ``path`` (``models/model.keras`` or any export), ready to predict.

    ``allow_unsafe_model`` loads a ``.keras`` file that carries code, as the CLI's
    ``--allow-unsafe-model``: only for files you trust.
    """
    return Classifier(load_runtime(path, allow_unsafe=allow_unsafe_model))


def _items(images: Any) -> list[Image]:
    """``images`` as a flat list of files (folders expanded) and single-image arrays."""
    if isinstance(images, str | os.PathLike):
        return list(find_images([images]))
    if isinstance(images, np.ndarray):
        if images.ndim == ARRAY_DIMS[-1] + 1:  # a batch
            return [np.asarray(a) for a in images]
        return [images]
    items: list[Image] = []
    for image in images:
        if isinstance(image, np.ndarray) and image.ndim in ARRAY_DIMS:
            items.append(image)
        elif isinstance(image, str | os.PathLike | np.ndarray):
            items += _items(image)
        else:  # a Pillow image, or nested lists of pixels
            items += _items(np.asarray(image))
    return items


def _pixels(array: np.ndarray, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 RGB pixels of one image array, resized as files are."""
    a = np.asarray(array)
    if a.ndim not in ARRAY_DIMS or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got "
                         f"shape {a.shape}")
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # transparency onto white, as for files
        alpha = a[:, :, 3:] / 255
        a = a[:, :, :3] * alpha + 255 * (1 - alpha)
    if a.shape[:2] == (size, size):
        return a
    from PIL import Image as PILImage

    pil = PILImage.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")
    return np.asarray(pil.resize((size, size), PILImage.Resampling.BILINEAR), np.float32)

"""When the frozen backbone's work can be cached, and the feature set's file format.

The features stage writes, into ``data/features``, in the prepared shards' record order
(``imgclf.data.records.make_dataset``'s order, unshuffled):

- ``S-cut.npy`` for S in train, val: ``(N, V, h, w, c)`` float16, the activations at
  the cut of each view (train's fine-tuning phase reads them);
- ``S-pooled.npy`` for S in train, val: ``(N, V, d)`` float16, the pooled backbone output
  of each view (train's head phase);
- ``S-embed.npy`` for S in train, val, test: ``(N, d)`` float16, the pooled backbone
  output averaged over the image and its mirror, computed in float32 and rounded once.
  It is mirror-invariant and, bit for bit, the same whatever ``train.fine_tune.layers``
  (the cut) and ``train.augment.flip``: a stage that depends on these files alone does
  not rerun when only those change (docs/pipeline.md). Read it with
  ``read_features(folder).array(S, "embed")``;
- ``S-labels.npy`` for S in train, val, test: ``(N,)`` int32, the class indices;
- ``features.json``: the cut's layer name, the views, and what they were computed for.

Views (V): train has 2 with ``train.augment.flip`` (the image, then its mirror), else 1;
val always 1; test has no cut or pooled file. ``d`` is the backbone's pooled width (1280
for MobileNetV2). For a model the cache cannot serve the stage writes ``NONE.txt``, saying
why (docs/pipeline.md), and ``read_features`` returns None; the embed and labels files
are still there, with ``d`` 0 (no backbone to describe the images), so that a stage
can depend on those files alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.params import BACKBONES, ModelParams, TrainParams

META = "features.json"
MARKER = "NONE.txt"
SPLITS = ("train", "val")  # the splits train reads: with cut and pooled files
EMBED_SPLITS = ("train", "val", "test")  # the splits with embed and labels files
KINDS = ("cut", "pooled", "embed", "labels")
DTYPE = "float16"  # half the disk of float32; the equivalence test bounds its error


def stage_blocker(model: ModelParams, layers: int) -> str | None:
    """Why the features stage computes nothing for ``model`` and ``fine_tune.layers``."""
    if model.arch not in BACKBONES:
        return f"model.arch: {model.arch} has no pretrained backbone"
    if not model.pretrained:
        return "model.pretrained: false (a backbone trained from scratch changes every step)"
    if layers == 0:
        return "train.fine_tune.layers: 0 (every layer trains, none stays fixed)"
    return None


def train_blocker(model: ModelParams, train: TrainParams) -> str | None:
    """Why train cannot use cached features for ``model`` and ``train``, or None.

    A random augmentation other than the flip (whose two views are cached) changes
    the pixels, and so every activation, differently in each epoch; so does mixup in
    pixel space.
    """
    blocked = stage_blocker(model, train.fine_tune.layers)
    if blocked:
        return blocked
    augment = train.augment
    for name in ("rotation", "zoom", "contrast", "crop", "mixup"):
        value = getattr(augment, name)
        if value:
            return f"train.augment.{name}: {value:g} (random pixels each epoch, not cacheable)"
    return None


def cut_views(split: str, flip: bool) -> int:
    """The views of ``split`` whose cut and pooled outputs are kept (0: embed only)."""
    if split == "train":
        return 2 if flip else 1
    return 1 if split in SPLITS else 0


def features_meta(model: ModelParams, layers: int, flip: bool, image_size: int,
                  cut: str, counts: dict[str, int]) -> dict[str, Any]:
    """What ``features.json`` holds; train compares it with what it is asked to train."""
    return {"arch": model.arch, "alpha": model.alpha, "image_size": image_size,
            "fine_tune_layers": layers, "flip": flip, "cut": cut, "dtype": DTYPE,
            "views": {s: cut_views(s, flip) for s in SPLITS}, "counts": counts,
            "embed": {"splits": list(EMBED_SPLITS), "views": "image and mirror, mean"}}


@dataclass(frozen=True)
class FeatureSet:
    """A features stage output, its arrays opened lazily (memory-mapped, never loaded)."""

    folder: Path
    meta: dict[str, Any]

    def array(self, split: str, kind: str) -> np.ndarray:
        """The ``kind`` array of ``split``, memory-mapped read-only."""
        return np.load(self.folder / f"{split}-{kind}.npy", mmap_mode="r")


def read_features(folder: str | Path) -> FeatureSet | None:
    """The feature set in ``folder``, or None where the stage wrote only its marker."""
    folder = Path(folder)
    meta = folder / META
    if not meta.is_file():
        return None
    return FeatureSet(folder, json.loads(meta.read_text(encoding="utf-8")))


def mismatch(features: FeatureSet, model: ModelParams, train: TrainParams,
             image_size: int) -> str | None:
    """Why ``features`` were not computed for this training (stale), or None."""
    want = {"arch": model.arch, "alpha": model.alpha, "image_size": image_size,
            "fine_tune_layers": train.fine_tune.layers, "flip": train.augment.flip}
    for key, value in want.items():
        if features.meta.get(key) != value:
            return (f"{features.folder}/{META} was computed for {key} "
                    f"{features.meta.get(key)!r}, not {value!r}; run dvc repro features")
    return None

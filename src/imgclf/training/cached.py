"""Train's cached path: the head on pooled features, fine-tuning on the activations at
the cut, both read from the features stage's output instead of recomputed each epoch.

Where the cache cannot stand in exactly for the frozen layers (see
``imgclf.training.caching.train_blocker``), or the feature set is missing or stale,
train runs the whole model on the images, as before, and prints one line saying why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from imgclf.data.shards import ShardsMeta
from imgclf.models.cut import split_model
from imgclf.params import ModelParams, TrainParams
from imgclf.training.cached_data import steps, train_batches, val_batches
from imgclf.training.caching import mismatch, read_features, train_blocker
from imgclf.training.fitting import Feed
from imgclf.training.optim import uses_one_hot


@dataclass(frozen=True)
class Feeds:
    """The two phases' feeds: the head on pooled features, the top on the cut's."""

    head: Feed
    top: Feed


def _blocker(model_params: ModelParams, train: TrainParams, folder: str | os.PathLike[str]
             | None, image_size: int) -> str | None:
    reason = train_blocker(model_params, train)
    if reason is None:
        features = read_features(folder) if folder is not None else None
        if folder is None:
            reason = "no feature set given (imgclf train --features '')"
        elif features is None:
            reason = f"no feature set in {folder} (run dvc repro features)"
        else:
            reason = mismatch(features, model_params, train, image_size)
    return reason


def cached_feeds(model: keras.Model, model_params: ModelParams, train: TrainParams,
                 folder: str | os.PathLike[str] | None, meta: ShardsMeta) -> Feeds | None:
    """The feeds of the cached path for ``model`` (build_model's), or None (and a line
    naming the param or file why) when train must run the whole model."""
    reason = _blocker(model_params, train, folder, meta.image_size)
    features = read_features(folder) if reason is None and folder is not None else None
    if features is None:
        print(f"train: the whole model runs on every image in every epoch: {reason}")
        return None
    parts = split_model(model, train.fine_tune.layers)
    if parts.cut != features.meta["cut"]:  # a backbone that changed under the same params
        print(f"train: the whole model runs on every image in every epoch: "
              f"{folder} was cut at {features.meta['cut']}, this model at {parts.cut}")
        return None
    n, one_hot, size = len(meta.class_names), uses_one_hot(train), train.batch_size

    def feed(part: keras.Model, kind: str) -> Feed:
        return Feed(part, lambda e: train_batches(features, kind, size, train.seed, e, n,
                                                  one_hot),
                    val_batches(features, kind, size, n, one_hot),
                    steps(features, "train", size), endless=True)

    print(f"train: on the cached features of {folder}: the head on the pooled backbone "
          f"output, fine-tuning above {parts.cut}")
    return Feeds(feed(parts.head, "pooled"), feed(parts.top, "cut"))

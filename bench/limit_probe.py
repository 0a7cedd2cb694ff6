"""Section 12's limit, timed piece by piece in one process: ``python bench/limit_probe.py
PROJECT`` prints one JSON line.

``frozen_s``: the bottom of the model (pixel scaling and the layers below the cut) over
exactly the views the features stage computes (every train, val and test image and its
mirror: the embeddings need both views of every split), on decoded
images held in memory, so reading and decoding are not counted. ``head_s`` and
``top_s``: the head's and the top's own forward and backward passes, on the cached
features in memory, for ``train.epochs`` and ``train.fine_tune.epochs`` epochs (no
validation). Each is timed after one warm-up batch (tracing).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _timed_forward(bottom: Any, images: np.ndarray, views: int, batch: int) -> float:
    import tensorflow as tf

    forward = tf.function(lambda x: bottom(x, training=False))
    forward(tf.cast(images[:batch], tf.float32))  # warm-up: tracing
    t0 = time.perf_counter()
    for view in range(views):
        for i in range(0, len(images), batch):
            x = tf.cast(images[i:i + batch], tf.float32)
            forward(x if view == 0 else tf.reverse(x, axis=[2]))
    return time.perf_counter() - t0


def _timed_fit(model: Any, x: np.ndarray, y: np.ndarray, epochs: int, rate: float,
               train: Any) -> float:
    from imgclf.training.optim import make_accuracy, make_loss, make_optimizer

    if not epochs:
        return 0.0
    batch = train.batch_size
    model.compile(optimizer=make_optimizer(train, rate, epochs * -(-len(x) // batch)),
                  loss=make_loss(train), metrics=[make_accuracy(train)])
    model.fit(x[:batch], y[:batch], epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    return time.perf_counter() - t0


def main(project: Path) -> dict[str, float]:
    from imgclf.data.shards import read_meta, read_split
    from imgclf.models.architectures import build_model, unfreeze_top
    from imgclf.models.cut import split_model
    from imgclf.models.weights import weights_path
    from imgclf.params import load_params
    from imgclf.training.caching import EMBED_SPLITS, read_features
    from imgclf.training.train import configure_runtime

    params = load_params(project / "params.yaml")
    train, prepared = params.train, project / "data" / "prepared"
    configure_runtime(train)
    meta = read_meta(prepared)
    model = build_model(params.model, meta.image_size, len(meta.class_names), [],
                        weights_path(params.model, project / "data" / "pretrained"))
    parts = split_model(model, train.fine_tune.layers)
    frozen = 0.0
    for split in EMBED_SPLITS:
        images, _ = read_split(prepared, split)
        frozen += _timed_forward(parts.bottom, images, 2, 32)
        del images
    features = read_features(project / "data" / "features")
    assert features is not None, "the features stage wrote no feature set"
    labels = np.asarray(features.array("train", "labels"))
    pooled = np.asarray(features.array("train", "pooled"))[:, 0].astype("float32")
    head_s = _timed_fit(parts.head, pooled, labels, train.epochs, train.learning_rate, train)
    unfreeze_top(model, train.fine_tune.layers)
    cut = np.asarray(features.array("train", "cut"))[:, 0].astype("float32")
    top_s = _timed_fit(parts.top, cut, labels, train.fine_tune.epochs,
                       train.fine_tune.learning_rate, train)
    return {"frozen_s": frozen, "head_s": head_s, "top_s": top_s}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(json.dumps(main(Path(sys.argv[1]))))

"""The end of train: fit the OOD score's statistics and threshold, and add the score
to the model (``imgclf.models.ood_layer.with_score``).

For ``mahalanobis`` the Gaussian (class means, shared covariance) is fitted on the
penultimate features of the train split, read once unaugmented (``energy`` and ``msp``
need no statistics); the threshold on the val split's scores,
computed by the scored model itself (so it is the graph every format converts), at the
``ood.keep_rate`` quantile. Nothing here reads test.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from imgclf.data.records import make_dataset
from imgclf.data.shards import ShardsMeta
from imgclf.models.info import OodInfo
from imgclf.models.ood import PCA_DIMS, Gaussian, fit_gaussian, fit_threshold, score_stats
from imgclf.models.ood_layer import features_model, with_score
from imgclf.params import OodParams

BATCH = 64  # images per forward pass; the features do not depend on it
THRESHOLD_SPLIT = "val"


def split_outputs(model: keras.Model, data: Path, meta: ShardsMeta, split: str,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(outputs (N, ...) float32, labels (N,))`` of ``model`` on ``split``, in order."""
    outs, labels = [], []
    for images, y in make_dataset(data, meta, split, BATCH):
        outs.append(np.asarray(model.predict_on_batch(images), np.float32))
        labels.append(y.numpy())
    return np.concatenate(outs), np.concatenate(labels)


def fit_ood(model: keras.Model, data: Path, meta: ShardsMeta,
            params: OodParams) -> tuple[keras.Model, OodInfo]:
    """The scored model of trained ``model`` and its :class:`OodInfo`."""
    n_classes = len(meta.class_names)
    if params.method == "mahalanobis":
        features, labels = split_outputs(features_model(model), data, meta, "train")
        gaussian = fit_gaussian(features, labels, n_classes, PCA_DIMS)
        fitted = f"fitted on {len(features)} train images; "
    else:  # msp and energy read the head alone: no statistics, no pass over train
        d = int(features_model(model).outputs[0].shape[-1])
        gaussian = Gaussian(np.zeros((d, 1), np.float32), np.zeros((n_classes, d), np.float32))
        fitted = ""
    scored = with_score(model, params.method, gaussian)
    split = THRESHOLD_SPLIT if meta.counts.get(THRESHOLD_SPLIT) else "train"
    scores = []
    for images, _ in make_dataset(data, meta, split, BATCH):
        scores.append(np.asarray(scored.predict_on_batch(images)[1], np.float64))
    val = np.concatenate(scores)
    threshold = fit_threshold(val, params.keep_rate)
    print(f"train: OOD score {params.method} {fitted}threshold {threshold:.4g} keeps "
          f"{params.keep_rate:.0%} of the {len(val)} {split} images")
    return scored, OodInfo(params.method, threshold, params.keep_rate, split, "keras",
                           score_stats(val))

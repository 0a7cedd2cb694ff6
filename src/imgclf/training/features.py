"""The features stage: the frozen part of a pretrained backbone, run once.

data/prepared + data/pretrained -> data/features (format: ``imgclf.training.caching``).
Every train, val and test image and its mirror go once through the bottom of the
model (the backbone's preprocessing and its layers below the cut, see
``imgclf.models.cut``). Kept of them: the activations at the cut and the pooled backbone
output of the views train needs (train: the image, and its mirror with
``train.augment.flip``; val: the image), and for every split the mirror-invariant
embedding (the mean of the image's and the mirror's pooled output) that other stages
read. All stream to memory-mapped ``.npy`` files, a batch at a time, so memory does not
grow with the image count. Nothing here reads the head's or the fine-tuning's settings
(rates, epochs, dropout ...): changing those reruns train only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from imgclf import fsutil
from imgclf.data.records import make_dataset
from imgclf.data.shards import ShardsMeta, read_meta
from imgclf.models.architectures import build_model
from imgclf.models.cut import split_model
from imgclf.models.weights import weights_path
from imgclf.params import ModelParams
from imgclf.progress import progress
from imgclf.training.caching import (
    DTYPE,
    EMBED_SPLITS,
    MARKER,
    META,
    cut_views,
    features_meta,
    stage_blocker,
)

BATCH = 32  # images per forward pass; the activations do not depend on it (bit for bit)
Forward = tf.types.experimental.GenericFunction  # pixels -> (at the cut, pooled)


def run(model_params: ModelParams, layers: int, flip: bool, data: str | os.PathLike[str],
        pretrained: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write the feature set of ``model_params`` cut for ``layers`` unfrozen layers."""
    meta = read_meta(data)
    blocked = stage_blocker(model_params, layers)
    with fsutil.atomic_dir(out) as tmp:
        if blocked:
            (tmp / MARKER).write_text(f"no features: {blocked}; train runs the whole model\n",
                                      encoding="utf-8")
            print(f"features: none, {blocked}")
            return
        weights = weights_path(model_params, pretrained)
        model = build_model(model_params, meta.image_size, len(meta.class_names), [], weights)
        parts = split_model(model, layers)
        forward = tf.function(lambda x: parts.bottom(x, training=False))
        for split in EMBED_SPLITS:
            _write_split(forward, Path(data), meta, split, cut_views(split, flip), tmp)
        info = features_meta(model_params, layers, flip, meta.image_size, parts.cut,
                             {s: meta.counts[s] for s in EMBED_SPLITS})
        fsutil.write_json(tmp / META, info)
    print(f"features: cut at {parts.cut} ({parts.bottom.outputs[0].shape[1:]}) for "
          f"{meta.counts['train']} train images x {cut_views('train', flip)} views and "
          f"{meta.counts['val']} val images; embeddings of "
          f"{sum(meta.counts[s] for s in EMBED_SPLITS)} train, val and test images and "
          f"their mirrors -> {out}")


def _open(out: Path, split: str, kind: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.lib.format.open_memmap(out / f"{split}-{kind}.npy", "w+", dtype, shape)


def _write_split(forward: Forward, data: Path, meta: ShardsMeta, split: str, views: int,
                 out: Path) -> None:
    """Stream ``split``'s images and mirrors through ``forward`` into ``out/split-*.npy``:
    the first ``views`` views' cut and pooled outputs (none for 0), and the embedding."""
    count = meta.counts[split]
    cut_shape, pooled_shape = _shapes(forward, meta.image_size)
    arrays = {"embed": _open(out, split, "embed", DTYPE, (count, *pooled_shape)),
              "labels": _open(out, split, "labels", "int32", (count,))}
    if views:
        arrays["cut"] = _open(out, split, "cut", DTYPE, (count, views, *cut_shape))
        arrays["pooled"] = _open(out, split, "pooled", DTYPE, (count, views, *pooled_shape))
    start = 0
    with progress(total=count * 2, desc=f"features {split}", unit="image") as bar:
        for images, labels in make_dataset(data, meta, split, BATCH):
            rows = batch_rows(forward, images, views)
            rows["labels"] = labels.numpy()
            end = start + len(rows["labels"])
            for kind, array in arrays.items():
                array[start:end] = rows[kind]
            bar.update(2 * (end - start))
            start = end
    for array in arrays.values():
        array.flush()
    if start != count:
        raise ValueError(f"{split}: read {start} records, meta.json says {count}")


def batch_rows(forward: Forward, images: tf.Tensor, views: int) -> dict[str, np.ndarray]:
    """One batch's rows: ``embed`` (B, d), and with ``views`` > 0 ``cut`` (B, views, h, w,
    c) and ``pooled`` (B, views, d), all float16.

    Both views always run: the embedding needs the mirror even where train does not
    (no flip, val, test). The mirror is the flip Keras' RandomFlip makes.
    """
    plain_cut, plain_pool = forward(images)
    mirror_cut, mirror_pool = forward(tf.reverse(images, axis=[2]))
    # The mean in float32, rounded once: the same bits whatever the cut (tests check).
    embed = (plain_pool.numpy() + mirror_pool.numpy()) * np.float32(0.5)
    rows = {"embed": embed.astype(DTYPE)}
    if views:
        rows["cut"] = np.stack([plain_cut, mirror_cut][:views], axis=1).astype(DTYPE)
        rows["pooled"] = np.stack([plain_pool, mirror_pool][:views], axis=1).astype(DTYPE)
    return rows


def _shapes(forward: Forward, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes of one image's activations at the cut and pooled output."""
    at_cut, at_pool = forward(tf.zeros((1, size, size, 3)))
    return tuple(at_cut.shape[1:]), tuple(at_pool.shape[1:])

"""Batches of cached features for train, with tf.data: what the frozen backbone gave.

Each epoch's order is a function of ``(train.seed, epoch)`` alone (a stateless
shuffle), and so is the view each image shows (the image or its mirror, each with
probability 1/2, as ``RandomFlip`` draws): a run resumed at epoch ``e`` reads exactly
the batches an uninterrupted run would have read there. The arrays stay memory-mapped;
a batch is gathered from them when tf.data asks for it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from imgclf.training.caching import FeatureSet

VIEW_STREAM = 1 << 20  # offsets the view draws' seeds from the order's, so they differ
LAST_EPOCH = 1 << 30  # the train stream's end: never reached, fit counts the steps


def steps(features: FeatureSet, split: str, batch_size: int) -> int:
    """Batches per epoch of ``split``."""
    return -(-int(features.meta["counts"][split]) // batch_size)


def _gather(features: FeatureSet, split: str, kind: str, n_classes: int,
            one_hot: bool) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """A tf.data map ``(indices, views) -> (float32 features, labels)`` over the arrays."""
    values, labels = features.array(split, kind), features.array(split, "labels")

    def take(index: np.ndarray, view: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Sorted reads are sequential on disk; the batch keeps its drawn order.
        order = np.argsort(index, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        rows = np.asarray(values[index[order], view[order]])[back]
        return rows, np.asarray(labels[index], dtype=np.int32)

    shape = values.shape[2:]

    def load(index: tf.Tensor, view: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rows, label = tf.numpy_function(take, [index, view], [tf.float16, tf.int32],
                                        stateful=False)
        rows = tf.ensure_shape(tf.cast(rows, tf.float32), (None, *shape))
        label = tf.ensure_shape(label, (None,))
        return rows, (tf.one_hot(label, n_classes) if one_hot else label)

    return load


def train_batches(features: FeatureSet, kind: str, batch_size: int, seed: int,
                  start_epoch: int, n_classes: int, one_hot: bool) -> tf.data.Dataset:
    """Endless batches of the train split's ``kind`` ("pooled" or "cut"), epoch after
    epoch from ``start_epoch``; ``steps`` batches make one epoch (the last one short)."""
    count = int(features.meta["counts"]["train"])
    views = int(features.meta["views"]["train"])

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(seed, tf.int64), e])
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64),
                                                         seed=key)
        view_key = key + tf.constant([0, VIEW_STREAM], tf.int64)
        view = tf.random.stateless_uniform([count], seed=view_key, minval=0, maxval=views,
                                           dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((order, view)).batch(batch_size)

    load = _gather(features, "train", kind, n_classes, one_hot)
    ds = tf.data.Dataset.range(start_epoch, LAST_EPOCH).flat_map(epoch)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def val_batches(features: FeatureSet, kind: str, batch_size: int, n_classes: int,
                one_hot: bool) -> tf.data.Dataset:
    """The val split's ``kind``, once, in the records' order."""
    count = int(features.meta["counts"]["val"])
    load = _gather(features, "val", kind, n_classes, one_hot)
    ds = tf.data.Dataset.range(count).batch(batch_size)
    ds = ds.map(lambda i: load(i, tf.zeros_like(i)), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def _options() -> tf.data.Options:
    """Shared by element among multi-worker workers (each keeps its share of every
    global batch: all draw the same order from the same seed), no autotuning (see
    ``imgclf.data.records``)."""
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.DATA
    options.autotune.enabled = False
    return options

"""Stream a split's TFRecord shards into batches with tf.data: parallel interleaved reads,
images decoded in a parallel map, bounded memory.

Every image is decoded by ``load_image``'s code (``shards.parse_record``, Pillow through
``tf.numpy_function``), so what features, train and evaluate see is, pixel for pixel,
what ``predict`` sees for the same file.

The reader of :mod:`imgclf.data.shards`' files, for train and evaluate alike. Why the
pipeline is tuned as it is (no autotuning, the shuffle buffer's size) was measured:
see docs/performance.md, "Measurements behind the code".
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from imgclf.data.shards import ShardsMeta, parse_record

EPOCH_SEEDS = 1_000_003  # epoch e's shuffles use seed * EPOCH_SEEDS + e (distinct per seed)
LAST_EPOCH = 1 << 30  # an endless dataset's end: never reached, fit counts the steps
SHUFFLE_BYTES = 128 * 1024 * 1024  # memory the shuffle buffer may use, whatever the dataset size
READ_BUFFER = 1 << 20  # bytes each open shard file reads ahead


def make_dataset(folder: str | os.PathLike[str], meta: ShardsMeta, split: str, batch_size: int,
                 *, shuffle: bool = False, seed: int = 0, one_hot: bool = False,
                 mixup: float = 0.0, workers: int = 1,
                 first_epoch: int | None = None) -> tf.data.Dataset:
    """Batches of ``(images (B, S, S, 3) float32 in 0..255, labels)`` from ``split``.

    Labels are ``(B,)`` int32, or ``(B, C)`` float32 one-hot when ``one_hot`` (for
    ``categorical_crossentropy``: the loss and the label form must match, or training
    silently sits at chance level). With ``shuffle``, shard order and records are
    reshuffled every epoch from ``seed``; otherwise the order is the shards' order.
    With ``mixup`` (needs ``one_hot``) each image is blended with another of its batch,
    and its label likewise, by a weight drawn from Beta(mixup, mixup) (Zhang et al.
    2018): for training only. It lives here, not in the model, because it changes the
    labels too. ``workers`` is the number of multi-worker training processes reading it
    (see ``_options``).

    With ``shuffle`` and ``first_epoch`` the dataset is endless, epoch after epoch from
    ``first_epoch``, each epoch's shard and record order drawn from ``(seed, epoch)``
    alone: a run resumed at epoch ``e`` reads the batches an uninterrupted run would
    have read there (the caller passes fit ``steps_per_epoch``). Not when reading by
    file: tf.distribute finds the files to share out at the dataset's source, which the
    per-epoch datasets would hide; nor for mixup's draws, which run on in one stream.
    """
    if mixup and not one_hot:
        raise ValueError("mixup needs one-hot labels")  # params validation prevents this
    files = meta.files(folder, split)
    if not files:
        raise ValueError(f"split {split!r} has no shards in {folder}")
    count = meta.counts[split]
    # Training under multi_worker with a shard file for every worker: each worker reads
    # only its own files (auto-sharding by file), so reading scales with the workers.
    by_file = shuffle and 1 < workers <= len(files)
    steps = -(-count // batch_size)
    record_bytes = max(1, meta.sizes.get(split, 0) // max(count, 1))
    # Shuffled: the encoded records, far smaller than their pixels.
    buffer = max(64, min(count, SHUFFLE_BYTES // record_bytes)) if shuffle else 0

    def batches(epoch_seed: int | tf.Tensor, repeat: bool) -> tf.data.Dataset:
        ds = _records(files, shuffle, epoch_seed, repeat=repeat)
        if shuffle:
            ds = ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda r: parse_record(r, meta), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
        return ds.batch(batch_size)

    if shuffle and first_epoch is not None and not by_file:
        ds = tf.data.Dataset.range(first_epoch, LAST_EPOCH).flat_map(
            lambda e: batches(seed * EPOCH_SEEDS + e, repeat=False))
    else:
        ds = batches(seed, repeat=by_file)
        # The record count is known from meta.json; telling tf.data lets Keras size its
        # progress bar and not warn that the input "ran out of data" at each epoch's end.
        ds = (ds.take(steps) if by_file
              else ds.apply(tf.data.experimental.assert_cardinality(steps)))
    ds = _labelled(ds, len(meta.class_names), one_hot, mixup, seed)
    return ds.with_options(_options(by_file)).prefetch(tf.data.AUTOTUNE)


def _records(files: list[str], shuffle: bool, seed: int | tf.Tensor,
             repeat: bool) -> tf.data.Dataset:
    """The serialized records of ``files``: interleaved and shard order reshuffled when
    ``shuffle``, read round and round when ``repeat`` (multi-worker, by file)."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    # Unshuffled, shards are read one after another, so batches come in exactly the
    # records' order (read_split's order): evaluation can match images to predictions.
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=READ_BUFFER),
        cycle_length=min(len(files), 4) if shuffle else 1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if repeat:
        # Workers' files hold different numbers of records, but every worker must take
        # each global step: each reads its files round and round, and an epoch ends
        # after `steps` global batches (Keras reads the count, not the data).
        # After the reads: tf.distribute gives each worker its files from the file list
        # above, which must stay one list (not a repeated one) for the shares to part.
        ds = ds.repeat()
    return ds


def _labelled(ds: tf.data.Dataset, n_classes: int, one_hot: bool, mixup: float,
              seed: int) -> tf.data.Dataset:
    """Batches of uint8 images and int labels -> float32 images, the labels as the loss
    wants them, mixed up when ``mixup``."""

    def finish(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.cast(images, tf.float32)
        return images, (tf.one_hot(labels, n_classes) if one_hot else labels)

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if mixup:
        mix = keras.layers.MixUp(alpha=mixup, seed=seed)

        def blend(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            out = mix({"images": images, "labels": labels}, training=True)
            return out["images"], out["labels"]

        # One call at a time: the layer's random draws then come in a fixed order.
        ds = ds.map(blend, num_parallel_calls=None)
    return ds


def _options(by_file: bool) -> tf.data.Options:
    """How tf.distribute shares the dataset among workers, and no autotuning.

    Sharded ``by_file``, each worker reads its own shard files. Otherwise (fewer shard
    files than workers, or validation, which must see each record once) each worker
    keeps its share of every global batch: by element works for any file count. Every
    worker runs the same code with the same seed, so all draw the same order and the
    shares never overlap.
    """
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.FILE if by_file else policy.DATA
    # No autotuning: under Keras' fit, tf.data's autotuner stalled training on a small
    # machine (docs/performance.md, "Measurements behind the code"). AUTOTUNE
    # parallelism then means one thread per core.
    options.autotune.enabled = False
    return options

"""The features stage: the frozen part of a pretrained backbone, run once.

data/prepared + data/pretrained -> data/features (format: ``imgclf.training.caching``).
Every train, val and test image and its mirror go once through the bottom of the
model (the backbone's preprocessing and its layers below the cut, see
``imgclf.models.cut``). Kept of them: the activations at the cut and the pooled backbone
output of the views train needs (train: the image, and its mirror with
``train.augment.flip``; val: the image), and for every split the mirror-invariant
embedding (the mean of the image's and the mirror's pooled output) that other stages
read. All stream to ``.npy`` files, a batch at a time, so memory does not grow with the
image count. Nothing here reads the head's or the fine-tuning's settings
(rates, epochs, dropout ...): changing those reruns train only.

Under ``train.strategy: multi_worker`` the workers of ``TF_CONFIG`` share the work:
global batch ``b`` (records ``32 b .. 32 b + 31`` of a split) is computed by worker
``b mod W``, reading only its own records, and the rows reach every worker through the
strategy's collectives; the chief writes them (and any worker given an ``out``). A
batch holds the same records whatever ``W``, and an image's activations do not depend
on its batch, so the files are the same, byte for byte, for any worker count
(tests/training/test_features_workers.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from imgclf import fsutil
from imgclf.data.shards import ShardsMeta, SplitImages, parse_record, read_meta
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
from imgclf.training.distribute import Team

BATCH = 32  # images per forward pass; the activations do not depend on it (bit for bit)
Forward = tf.types.experimental.GenericFunction  # pixels -> (at the cut, pooled)
Shapes = dict[str, tuple[tuple[int, ...], str]]  # kind -> (one record's shape, dtype)


def run(model_params: ModelParams, layers: int, flip: bool, data: str | os.PathLike[str],
        pretrained: str | os.PathLike[str], out: str | os.PathLike[str] | None,
        strategy: str = "auto") -> None:
    """Write the feature set of ``model_params`` cut for ``layers`` unfrozen layers into
    ``out``. Under ``strategy`` multi_worker each worker computes its share and every
    worker receives all rows: one given an ``out`` writes the whole set there (each
    node its own copy), one given None only computes (the chief's folder is shared)."""
    team = Team.join(strategy)  # first: multi_worker must set TensorFlow up itself
    meta = read_meta(data)
    blocked = stage_blocker(model_params, layers)
    with fsutil.atomic_dir(out) if out is not None else contextlib.nullcontext() as tmp:
        if blocked:
            if tmp is not None:
                (tmp / MARKER).write_text(f"no features: {blocked}; train runs the whole "
                                          "model\n", encoding="utf-8")
                _write_no_embeddings(Path(data), tmp)
            print(f"features: none, {blocked}")
            return
        weights = weights_path(model_params, pretrained)
        model = build_model(model_params, meta.image_size, len(meta.class_names), [], weights)
        parts = split_model(model, layers)
        forward = tf.function(lambda x: parts.bottom(x, training=False))
        for split in EMBED_SPLITS:
            _write_split(forward, team, Path(data), meta, split, cut_views(split, flip), tmp)
        if tmp is not None:
            fsutil.write_json(tmp / META, features_meta(
                model_params, layers, flip, meta.image_size, parts.cut,
                {s: meta.counts[s] for s in EMBED_SPLITS}))
    role = f" (worker {team.task.index} of {team.task.count})" if team.task.count > 1 else ""
    print(f"features: cut at {parts.cut} ({parts.bottom.outputs[0].shape[1:]}) for "
          f"{meta.counts['train']} train images x {cut_views('train', flip)} views and "
          f"{meta.counts['val']} val images; embeddings of "
          f"{sum(meta.counts[s] for s in EMBED_SPLITS)} train, val and test images and "
          f"their mirrors{role}" + (f" -> {out}" if out is not None else ", shared"))


def _write_no_embeddings(data: Path, out: Path) -> None:
    """``S-embed.npy`` of shape ``(N, 0)`` and ``S-labels.npy`` for every split: the
    files exist whatever the model, so a stage can depend on them alone (the audit does,
    and so does not rerun when only the cut changes); zero columns say "no backbone"."""
    for split in EMBED_SPLITS:
        labels = SplitImages(data, split).labels
        np.save(out / f"{split}-embed.npy", np.zeros((len(labels), 0), DTYPE))
        np.save(out / f"{split}-labels.npy", labels)


def _shapes(forward: Forward, size: int, views: int) -> Shapes:
    """Each kind's shape and dtype for one record of a split with ``views`` cut views."""
    at_cut, at_pool = forward(tf.zeros((1, size, size, 3)))
    cut, pooled = tuple(at_cut.shape[1:]), tuple(at_pool.shape[1:])
    shapes: Shapes = {"embed": (pooled, DTYPE), "labels": ((), "int32")}
    if views:
        shapes.update(cut=((views, *cut), DTYPE), pooled=((views, *pooled), DTYPE))
    return shapes


def _my_batches(data: Path, meta: ShardsMeta, split: str,
                team: Team) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
    """``(images (B, S, S, 3) float32 0..255, labels (B,))`` of this worker's global
    batches of ``split``, in order; the records of the others' are skipped undecoded."""
    index, count = team.task.index, team.task.count
    ds = tf.data.TFRecordDataset(meta.files(data, split)).enumerate()
    if count > 1:
        ds = ds.filter(lambda i, _: (i // BATCH) % count == index)
    ds = ds.map(lambda _, record: parse_record(record, meta),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(BATCH).map(lambda x, y: (tf.cast(x, tf.float32), y))
    options = tf.data.Options()
    options.autotune.enabled = False  # as imgclf.data.records does (it stalled on 2 cores)
    return iter(ds.with_options(options).prefetch(2))


def _write_split(forward: Forward, team: Team, data: Path, meta: ShardsMeta, split: str,
                 views: int, out: Path | None) -> None:
    """``split``'s images and mirrors through ``forward``: each worker its own global
    batches, round by round; every worker's rows go into ``out/split-*`` (None: nowhere)."""
    count, workers = meta.counts[split], team.task.count
    shapes = _shapes(forward, meta.image_size, views)
    batches, mine = -(-count // BATCH), _my_batches(data, meta, split, team)
    with contextlib.ExitStack() as files, progress(
            total=count * 2, desc=f"features {split}", unit="image") as bar:
        arrays = ({kind: files.enter_context(NpyWriter(out / f"{split}-{kind}.npy", dtype,
                                                        (count, *shape)))
                   for kind, (shape, dtype) in shapes.items()} if out is not None else {})
        for first in range(0, batches, workers):  # one round: a batch per worker
            rows = (padded_rows(forward, *next(mine), views, shapes)
                    if first + team.task.index < batches else empty_rows(shapes))
            for got in team.gather(rows):  # batches first, first + 1, ...: in order
                n = int(got["n"][0])
                for kind, array in arrays.items():
                    array.append(got[kind][:n])
                bar.update(2 * n)


class NpyWriter:
    """A ``.npy`` file of ``shape`` written row block after row block, in order.

    Plain writes rather than a memory map: the pages of a written map count in the
    process's memory until the kernel writes them back, so a memory-mapped output grew
    the stage's RSS with the image count; written, they are the page cache's alone.
    """

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape, self.rows = path, np.dtype(dtype), shape, 0
        self._file = open(path, "wb")  # noqa: SIM115 (closed in __exit__)
        np.lib.format.write_array_header_1_0(self._file, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": shape})

    def append(self, block: np.ndarray) -> None:
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path}: a block of {block.shape} after {self.rows} rows "
                             f"does not fit {self.shape}")
        self._file.write(np.ascontiguousarray(block, self.dtype).tobytes())
        self.rows += len(block)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        if exc[0] is None and self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self.rows} rows, meta.json says "
                             f"{self.shape[0]}")


def empty_rows(shapes: Shapes) -> dict[str, np.ndarray]:
    """A batch of ``BATCH`` zero rows of each kind, ``n`` 0: a worker with no batch left."""
    rows = {kind: np.zeros((BATCH, *shape), dtype) for kind, (shape, dtype) in shapes.items()}
    rows["n"] = np.zeros(1, np.int32)
    return rows


def padded_rows(forward: Forward, images: tf.Tensor, labels: tf.Tensor, views: int,
                shapes: Shapes) -> dict[str, np.ndarray]:
    """``batch_rows`` of one batch with its labels, padded to ``BATCH`` rows (every
    worker gathers the same shapes); ``n``: the real rows."""
    rows = batch_rows(forward, images, views)
    rows["labels"] = labels.numpy().astype(np.int32)
    n = len(rows["labels"])
    padded = empty_rows(shapes)
    for kind, value in rows.items():
        padded[kind][:n] = value
    padded["n"][0] = n
    return padded


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

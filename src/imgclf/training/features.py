"""The features stage: the frozen part of a pretrained backbone, run once.

data/prepared + data/pretrained -> data/features (format: ``imgclf.training.caching``).
Every train image (and its mirror, with ``train.augment.flip``) and every val image
goes once through the bottom of the model (the backbone's preprocessing and its layers
below the cut, see ``imgclf.models.cut``); the activations at the cut and the pooled
backbone output are streamed to memory-mapped ``.npy`` files, a batch at a time, so
memory does not grow with the image count. Nothing here reads the head's or the
fine-tuning's settings (rates, epochs, dropout ...): changing those reruns train only.
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
from imgclf.training.caching import DTYPE, MARKER, META, SPLITS, features_meta, stage_blocker

BATCH = 32  # images per forward pass; the activations do not depend on it


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
        for split in SPLITS:
            views = 2 if flip and split == "train" else 1
            _write_split(forward, Path(data), meta, split, views, tmp)
        info = features_meta(model_params, layers, flip, meta.image_size, parts.cut,
                             {s: meta.counts[s] for s in SPLITS})
        fsutil.write_json(tmp / META, info)
    print(f"features: cut at {parts.cut} ({parts.bottom.outputs[0].shape[1:]}), "
          f"{meta.counts['train']} train images x {2 if flip else 1} views and "
          f"{meta.counts['val']} val images -> {out}")


def _write_split(forward: tf.types.experimental.GenericFunction, data: Path, meta: ShardsMeta,
                 split: str, views: int, out: Path) -> None:
    """Stream ``split``'s views through ``forward`` into ``out/split-*.npy``."""
    count = meta.counts[split]
    cut_shape, pooled_shape = _shapes(forward, meta.image_size)
    cut = np.lib.format.open_memmap(out / f"{split}-cut.npy", "w+", DTYPE,
                                    (count, views, *cut_shape))
    pooled = np.lib.format.open_memmap(out / f"{split}-pooled.npy", "w+", DTYPE,
                                       (count, views, *pooled_shape))
    labels = np.lib.format.open_memmap(out / f"{split}-labels.npy", "w+", np.int32, (count,))
    start = 0
    with progress(total=count * views, desc=f"features {split}", unit="image") as bar:
        for images, batch_labels in make_dataset(data, meta, split, BATCH):
            end = start + len(batch_labels)
            for view in range(views):
                # The second view is the mirror: the flip Keras' RandomFlip makes.
                x = images if view == 0 else tf.reverse(images, axis=[2])
                at_cut, at_pool = forward(x)
                cut[start:end, view] = at_cut.numpy().astype(DTYPE)
                pooled[start:end, view] = at_pool.numpy().astype(DTYPE)
                bar.update(end - start)
            labels[start:end] = batch_labels.numpy()
            start = end
    for array in (cut, pooled, labels):
        array.flush()
    if start != count:
        raise ValueError(f"{split}: read {start} records, meta.json says {count}")


def _shapes(forward: tf.types.experimental.GenericFunction,
            size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes of one image's activations at the cut and pooled output."""
    at_cut, at_pool = forward(tf.zeros((1, size, size, 3)))
    return tuple(at_cut.shape[1:]), tuple(at_pool.shape[1:])

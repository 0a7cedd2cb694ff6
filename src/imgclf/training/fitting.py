"""Keras' fit of one training phase, resumable, on the whole model or on a part of it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from imgclf.params import TrainParams
from imgclf.training.optim import make_accuracy, make_loss, make_optimizer


@dataclass(frozen=True)
class Feed:
    """What one phase fits, on what.

    ``model`` is the whole model (pixels in) or one of its parts (cached features in,
    sharing the whole model's layers); ``train(e)`` gives the train batches from epoch
    ``e`` on (0-based); ``steps`` batches make an epoch. ``endless``: ``train(e)`` runs
    on past one epoch (its order a function of the epoch), so fit counts the steps.
    """

    model: keras.Model
    train: Callable[[int], tf.data.Dataset]
    val: tf.data.Dataset
    steps: int
    endless: bool = False


class AtomicBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, whose files are written under a temporary name and renamed
    into place: Keras writes ``latest.weights.h5`` in place, so a kill during that write
    left a truncated file the next run could not open (seen: "truncated file: eof = 96").
    The weights are renamed in before the epoch count, so a kill between the two renames
    at worst redoes one epoch from the weights after it: never a file half written."""

    def _save_model(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = self._weights_path.replace(".weights.h5", ".partial.weights.h5")
        self.model.save_weights(filepath=weights, overwrite=True)
        meta = f"{self._training_metadata_path}.partial"
        with open(meta, "w", encoding="utf-8") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        os.replace(weights, self._weights_path)
        os.replace(meta, self._training_metadata_path)


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch's start, reseed every random layer of the model (dropout) from
    ``(seed, epoch)``.

    Keras' backups hold the weights and the optimizer, not the random layers' generator
    states, so a resumed run would draw other dropout masks and augmentations than an
    uninterrupted one; reseeded per epoch, both draw the same. Together with batches
    whose order is a function of the epoch (``cached_data``, and ``make_dataset`` with
    ``first_epoch``) a resumed run ends with the uninterrupted run's weights.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        layers = self.model._flatten_layers(include_self=True, recursive=True)
        generators = [g for layer in layers for g in getattr(layer, "_seed_generators", [])]
        for i, generator in enumerate(generators):
            generator.state.assign(np.array([self.seed + i, epoch], dtype="int64"))


def resumed_epoch(backup: Path, first_epoch: int) -> int:
    """The epoch a fit backed up in ``backup`` resumes at (``first_epoch`` if none).

    Read from the metadata Keras' BackupAndRestore writes after each epoch, which
    holds the next epoch to run.
    """
    metadata = backup / "training_metadata.json"
    if not metadata.is_file():
        return first_epoch
    return int(json.loads(metadata.read_text(encoding="utf-8"))["epoch"])


@dataclass(frozen=True)
class Fitter:
    """Keras' fit of one phase, resumable.

    A killed run resumes from its last completed epoch: BackupAndRestore saves one each
    epoch in ``backups / phase`` and restores it on the next start; the head phase, once
    done, is kept as the whole model's weights (``head_weights``) so a kill during
    fine-tuning does not redo it.
    """

    model: keras.Model  # the whole model, the one saved
    train: TrainParams
    strategy: tf.distribute.Strategy
    feed: Feed  # the whole model on the images, unless a phase is given another
    class_weight: dict[int, float] | None  # Keras' class_weight; None: all equal
    callbacks: list[keras.callbacks.Callback]  # the chief's: DVCLive's and the tracker's
    backups: Path  # train.backup_dir's

    @property
    def head_weights(self) -> Path:
        return self.backups / "head.weights.h5"

    def fit(self, learning_rate: float, first_epoch: int, epochs: int, phase: str,
            warmup_epochs: int = 0, feed: Feed | None = None) -> None:
        """Compile ``feed.model`` with a fresh optimizer and train ``epochs`` epochs from
        ``first_epoch``."""
        feed = feed or self.feed
        train, model = self.train, feed.model
        steps = epochs * feed.steps  # global batches: every worker takes each step
        warmup = warmup_epochs * feed.steps
        with self.strategy.scope():
            model.compile(optimizer=make_optimizer(train, learning_rate, steps, warmup),
                          loss=make_loss(train), metrics=[make_accuracy(train)],
                          jit_compile=train.jit_compile)
        stop = ([keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train.early_stopping_patience,
            restore_best_weights=True)] if train.early_stopping_patience else [])
        backup = AtomicBackup(str(self.backups / phase))
        if (self.backups / phase).exists():
            print(f"train: resuming the {phase} phase from {self.backups / phase}")
        # shuffle=False: the dataset shuffles itself (seeded); Keras can't shuffle tf.data.
        # verbose: a progress bar on a terminal, one line per epoch in logs (dvc, CI).
        # An endless feed's batches depend on the epoch alone; so, then, do the random
        # layers' draws (EpochSeeds): a resumed run repeats the uninterrupted one.
        seeds = [EpochSeeds(train.seed)] if feed.endless else []
        model.fit(feed.train(resumed_epoch(self.backups / phase, first_epoch)),
                  validation_data=feed.val, initial_epoch=first_epoch,
                  epochs=first_epoch + epochs, steps_per_epoch=feed.steps if feed.endless
                  else None, callbacks=[backup, *seeds, *self.callbacks, *stop],
                  class_weight=self.class_weight, shuffle=False,
                  verbose=1 if sys.stdout.isatty() else 2)

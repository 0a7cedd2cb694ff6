"""The train stage: data/prepared -> models/model.keras, with DVCLive learning curves."""

from __future__ import annotations

import os
import sys

import keras

from imgclf.data.shards import read_meta
from imgclf.models.architectures import augmentation, build_model, layer_specs
from imgclf.models.saving import ModelInfo, save_model
from imgclf.params import ModelParams, TrainParams
from imgclf.tracking.live import LiveCallback, open_live
from imgclf.training.dataset import make_dataset
from imgclf.training.optim import make_accuracy, make_loss, make_optimizer, uses_one_hot


def run(model_params: ModelParams, train: TrainParams, data: str | os.PathLike[str],
        model_path: str | os.PathLike[str], live_dir: str | os.PathLike[str]) -> None:
    meta = read_meta(data)
    keras.utils.set_random_seed(train.seed)  # Python, NumPy and TensorFlow generators
    one_hot = uses_one_hot(train)
    train_ds = make_dataset(data, meta, "train", train.batch_size, shuffle=True,
                            seed=train.seed, one_hot=one_hot)
    val_ds = make_dataset(data, meta, "val", train.batch_size, one_hot=one_hot)

    model = build_model(layer_specs(model_params), meta.image_size, len(meta.class_names),
                        augmentation(train.augment, train.seed))
    model.compile(optimizer=make_optimizer(train), loss=make_loss(train),
                  metrics=[make_accuracy(train)])

    live = open_live(str(live_dir))
    callbacks: list[keras.callbacks.Callback] = [LiveCallback(live)]
    if train.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train.early_stopping_patience,
            restore_best_weights=True))
    print(f"train: {model_params.arch} model, {model.count_params():,} parameters, "
          f"{meta.counts['train']} train / {meta.counts['val']} val images of "
          f"{len(meta.class_names)} classes")
    # A progress bar per epoch on a terminal; one line per epoch in logs (dvc, CI).
    verbose = 1 if sys.stdout.isatty() else 2
    # shuffle=False: the dataset shuffles itself (seeded); Keras cannot shuffle a tf.data input.
    model.fit(train_ds, validation_data=val_ds, epochs=train.epochs, callbacks=callbacks,
              shuffle=False,
              verbose=verbose)
    live.end()
    save_model(model, model_path, ModelInfo(meta.class_names, meta.image_size))
    print(f"train: saved {model_path}")

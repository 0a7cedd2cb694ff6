"""Optimizer, loss and accuracy metric from ``train.*`` params."""

from __future__ import annotations

import keras

from imgclf.params import TrainParams


def make_optimizer(train: TrainParams, learning_rate: float, decay_steps: int,
                   warmup_steps: int = 0) -> keras.optimizers.Optimizer:
    """The optimizer of ``train.optimizer`` at ``learning_rate``, over ``decay_steps`` batches.

    With ``warmup_steps`` the rate first rises linearly from 0, which keeps the first
    large steps of a freshly initialised network from blowing up batch norm's
    statistics. Then with ``train.lr_schedule: cosine`` it decays to 0 over the
    remaining batches, which lets a short run take large steps early and settle at
    the end; otherwise it stays at ``learning_rate``. With ``train.ema`` the optimizer
    keeps a moving average of the weights and writes it into the model when ``fit``
    ends.
    """
    lr: float | keras.optimizers.schedules.LearningRateSchedule = learning_rate
    if train.lr_schedule == "cosine" or warmup_steps:
        # alpha=1 keeps the rate flat after the warmup: a constant schedule with warmup.
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate, max(1, decay_steps - warmup_steps),
            alpha=0.0 if train.lr_schedule == "cosine" else 1.0,
            warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
    ema = {"use_ema": train.ema > 0, "ema_momentum": train.ema or 0.99}
    match train.optimizer:
        case "adam":
            return keras.optimizers.Adam(lr, **ema)
        case "adamw":
            return keras.optimizers.AdamW(lr, weight_decay=train.weight_decay, **ema)
        case "sgd":
            return keras.optimizers.SGD(lr, momentum=train.momentum, nesterov=True, **ema)
        case "rmsprop":
            return keras.optimizers.RMSprop(lr, momentum=train.momentum, **ema)
    raise ValueError(f"unknown optimizer {train.optimizer!r}")  # params validation prevents this


def uses_one_hot(train: TrainParams) -> bool:
    """Whether labels must be one-hot for ``train.loss`` (else integer class indices).

    Pairing a one-hot loss with integer labels once trained silently to chance level;
    the dataset is built from this answer so the two always match.
    """
    return train.loss == "categorical_crossentropy"


def make_loss(train: TrainParams) -> keras.losses.Loss:
    if uses_one_hot(train):
        return keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def make_accuracy(train: TrainParams) -> keras.metrics.Metric:
    if uses_one_hot(train):
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")

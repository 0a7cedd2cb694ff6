"""Optimizer, loss and accuracy metric from ``train.*`` params."""

from __future__ import annotations

import keras

from imgclf.params import TrainParams


def make_optimizer(train: TrainParams, learning_rate: float,
                   decay_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer of ``train.optimizer`` at ``learning_rate``.

    With ``train.lr_schedule: cosine`` the rate decays to 0 over ``decay_steps``
    (batches), which lets a short run take large steps early and settle at the end.
    """
    lr: float | keras.optimizers.schedules.LearningRateSchedule = learning_rate
    if train.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, decay_steps))
    match train.optimizer:
        case "adam":
            return keras.optimizers.Adam(lr)
        case "adamw":
            return keras.optimizers.AdamW(lr, weight_decay=train.weight_decay)
        case "sgd":
            return keras.optimizers.SGD(lr, momentum=train.momentum, nesterov=True)
        case "rmsprop":
            return keras.optimizers.RMSprop(lr, momentum=train.momentum)
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

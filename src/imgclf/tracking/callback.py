"""The Keras callback that logs each epoch to W&B (W&B's own has Keras 3 gaps:
wandb issues 7186 and 8842)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras


class EpochLogger(keras.callbacks.Callback):
    """One W&B history row per epoch: Keras' logs (loss, accuracy, val_loss, ...)."""

    def __init__(self, log: Callable[[Mapping[str, Any]], None]) -> None:
        super().__init__()
        self._log = log

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values: dict[str, float] = {"epoch": epoch + 1}
        for name, value in (logs or {}).items():
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                continue  # not a number (Keras 3 may pass other objects)
        self._log(values)

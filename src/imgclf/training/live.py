"""Per-epoch learning curves with DVCLive, under the names DVC plots group by split."""

from __future__ import annotations

import keras
from dvclive import Live

# Keras' log name -> the DVCLive metric name ("train/loss" and "val/loss" plot together).
KERAS_TO_LIVE = {
    "loss": "train/loss", "accuracy": "train/accuracy",
    "val_loss": "val/loss", "val_accuracy": "val/accuracy",
    "learning_rate": "learning_rate",
}


class LiveCallback(keras.callbacks.Callback):
    """Log each epoch's loss and accuracy to a DVCLive run (one step per epoch)."""

    def __init__(self, live: Live) -> None:
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        for name, value in (logs or {}).items():
            if name in KERAS_TO_LIVE:
                self.live.log_metric(KERAS_TO_LIVE[name], round(float(value), 6))
        self.live.next_step()


def open_live(folder: str) -> Live:
    """A DVCLive run writing into ``folder`` only.

    dvc.yaml declares the plots itself, so DVCLive must not edit it (``dvcyaml=False``)
    nor make its own experiment commits (``save_dvc_exp=False``): DVC runs this stage.
    """
    return Live(dir=folder, dvcyaml=False, save_dvc_exp=False, report=None)

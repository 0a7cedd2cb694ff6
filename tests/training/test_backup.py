"""Keras' backups of a training phase are written under a temporary name (training/fitting.py)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.training.fitting import AtomicBackup


def fitted(backup: AtomicBackup, epochs: int) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.eye(2, dtype=np.float32), np.array([0, 1])
    model.fit(x, y, epochs=epochs, callbacks=[backup], verbose=0)
    return model


def test_a_write_cut_off_leaves_the_last_complete_backup(tmp_path: Path) -> None:
    backup = AtomicBackup(str(tmp_path / "head"))
    backup.delete_checkpoint = False  # keep what a finished run would remove
    fitted(backup, 2)
    weights, meta = tmp_path / "head" / "latest.weights.h5", tmp_path / "head" / \
        "training_metadata.json"
    before = weights.read_bytes()
    assert json.loads(meta.read_text())["epoch"] == 2

    def cut_off(filepath: str, overwrite: bool = True) -> None:
        Path(filepath).write_bytes(before[:96])  # what a kill mid-write leaves
        raise KeyboardInterrupt  # and the process goes no further

    backup.model.save_weights = cut_off  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    assert weights.read_bytes() == before and json.loads(meta.read_text())["epoch"] == 2
    fresh = AtomicBackup(str(tmp_path / "head"))  # the next run opens it and goes on
    fresh.delete_checkpoint = False
    epochs: list[int] = []
    seen = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: epochs.append(e))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(np.eye(2, dtype=np.float32), np.array([0, 1]), epochs=3,
              callbacks=[fresh, seen], verbose=0)
    assert epochs == [2] and json.loads(meta.read_text())["epoch"] == 3

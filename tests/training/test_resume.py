"""A training killed mid-run resumes from its last completed epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_killed_training_resumes_from_the_last_epoch(tiny_prepared: Path, tmp_path: Path) -> None:
    params = {"model": {"arch": "small"}, "wandb": {"enabled": False},
              "train": {"epochs": 8, "batch_size": 4, "early_stopping_patience": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "imgclf", "train", "--data", str(tiny_prepared),
           "--model", "models/model.keras", "--live", "live"]
    backups = tmp_path / "models" / ".train-backup"
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    curve = tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv"
    deadline = time.monotonic() + 120
    # Wait until three epochs are done (and backed up), then kill it without warning.
    while not (curve.exists() and len(curve.read_text().splitlines()) > 3):
        assert time.monotonic() < deadline and first.poll() is None, "training never got going"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "models" / "model.keras").exists()  # nothing looks complete
    assert backups.exists()

    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout + second.stderr
    assert "resuming the head phase" in out
    assert "Epoch 1/8" not in out  # it did not start from zero
    assert "Epoch 8/8" in out
    assert (tmp_path / "models" / "model.keras").is_file()
    assert not backups.exists() or not any(backups.iterdir())  # cleaned up when done

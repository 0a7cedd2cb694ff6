"""Issue 24 point 11: a resumed run (the whole model on the images) reads, from the
resumed epoch on, the batches an uninterrupted run reads, and ends with its weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _digest(output: str) -> str:
    found = re.findall(r"final weights sha256 ([0-9a-f]{64})", output)
    assert len(found) == 1, output
    return found[0]


def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(tiny_prepared: Path,
                                                                 tmp_path: Path) -> None:
    # Flip and dropout on: their random draws must resume as the order does.
    params = {"model": {"arch": "small"}, "wandb": {"enabled": False},
              "train": {"epochs": 30, "batch_size": 4, "early_stopping_patience": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def cmd(name: str) -> list[str]:
        return [sys.executable, "-m", "imgclf", "train", "--data", str(tiny_prepared),
                "--model", f"{name}/model.keras", "--live", f"{name}/live"]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = subprocess.run(cmd("straight"), cwd=tmp_path, capture_output=True, text=True,
                              env=env)
    assert straight.returncode == 0, straight.stdout + straight.stderr
    first = subprocess.Popen(cmd("resumed"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    curve = tmp_path / "resumed/live/plots/metrics/train/loss.tsv"
    deadline = time.monotonic() + 120
    while not (curve.exists() and len(curve.read_text().splitlines()) > 3):
        assert time.monotonic() < deadline and first.poll() is None, "training never got going"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.run(cmd("resumed"), cwd=tmp_path, capture_output=True, text=True,
                            env=env)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert "resuming the head phase" in out and "Epoch 1/30" not in out
    assert _digest(out) == _digest(straight.stdout + straight.stderr)

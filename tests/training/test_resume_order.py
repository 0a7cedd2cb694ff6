"""Issue 24 point 11: a resumed run (the whole model on the images) reads, from the
resumed epoch on, the batches an uninterrupted run reads, and ends with its weights."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow



def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(
        tiny_prepared: Path, tmp_path: Path, kill_and_resume: Callable[..., tuple[str, str]],
        weights_digest: Callable[[str], str]) -> None:
    # Flip and dropout on: their random draws must resume as the order does.
    params = {"model": {"arch": "small"}, "wandb": {"enabled": False},
              "train": {"epochs": 30, "batch_size": 4, "early_stopping_patience": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def cmd(name: str) -> list[str]:
        return [sys.executable, "-m", "imgclf", "train", "--data", str(tiny_prepared),
                "--model", f"{name}/model.keras", "--live", f"{name}/live"]

    straight, out = kill_and_resume(cmd, tmp_path)
    assert "resuming the head phase" in out and "Epoch 1/30" not in out
    assert weights_digest(out) == weights_digest(straight)

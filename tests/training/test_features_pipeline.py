"""Real `dvc repro` in a throw-away repo: a head or fine-tuning param reruns train, never
the features stage; a param that changes the cached activations reruns both."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.realweights]

PARAMS = {
    "data": {"image_size": 32},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "model": {"arch": "mobilenet_v2", "alpha": 0.35},
    "train": {"epochs": 1, "batch_size": 8, "early_stopping_patience": 0,
              "fine_tune": {"epochs": 1, "layers": 30}},
    "wandb": {"enabled": False},
}


def _dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _set(repo: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    target = params
    for part in section.split("."):
        target = target[part]
    target[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_head_param_reruns_train_but_not_features(
        tmp_path: Path, image_folder: Callable[..., Path],
        pipeline_repo: Callable[[Path, Path, dict], Path], git_environ: dict[str, str]) -> None:
    images = image_folder(tmp_path / "images", ["a", "b", "c"], per_class=10, size=32)
    repo = pipeline_repo(tmp_path / "repo", images, PARAMS)
    first = _dvc(repo, git_environ, "repro", "train")
    assert re.findall(r"Running stage '([^']+)'", first)[-2:] == ["features", "train"]
    assert "fine-tuning above block_13_project_BN" in first  # train read the cache

    for section, key, value in (("train", "learning_rate", 0.0008),
                                ("train.fine_tune", "epochs", 2),
                                ("train.fine_tune", "learning_rate", 0.0001),
                                ("model", "dropout", 0.3)):
        _set(repo, section, key, value)
        status = json.loads(_dvc(repo, git_environ, "status", "--json"))
        assert "features" not in status and "train" in status, (key, status)
    again = _dvc(repo, git_environ, "repro", "train")
    assert "Stage 'features' didn't change, skipping" in again
    assert re.findall(r"Running stage '([^']+)'", again) == ["source", "train"]

    _set(repo, "train.fine_tune", "layers", 20)  # another cut: new activations
    status = json.loads(_dvc(repo, git_environ, "status", "--json"))
    assert "features" in status and "train" in status

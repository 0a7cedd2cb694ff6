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


@pytest.mark.slow
@pytest.mark.realweights
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


# A stand-in for the features stage (no TensorFlow): its cut file follows a param, its
# embed file does not, as the real stage's (test_features checks those bytes).
FAKE_FEATURES = """stages:
  features:
    cmd: python -c "import os, yaml; os.makedirs('f', exist_ok=True);
      open('f/train-cut.npy', 'w').write(str(yaml.safe_load(open('params.yaml'))['layers']));
      open('f/train-embed.npy', 'w').write('embed')"
    params: [layers]
    outs: [f]
  audit:
    cmd: python -c "open('audit.txt', 'w').write(open('f/train-embed.npy').read())"
    deps: [f/train-embed.npy]
    outs: [audit.txt]
"""


@pytest.mark.slow
def test_a_stage_on_one_file_of_the_feature_set_skips_when_only_the_cut_changes(
        tmp_path: Path, git_environ: dict[str, str]) -> None:
    """What i25's and i26's stages rely on: DVC tracks a dep inside another stage's
    output folder by that file's own hash (and orders the stages by it)."""
    (tmp_path / "dvc.yaml").write_text(FAKE_FEATURES)
    (tmp_path / "params.yaml").write_text("layers: 30\n")
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=git_environ, check=True)
    first = _dvc(tmp_path, git_environ, "repro")
    assert re.findall(r"Running stage '([^']+)'", first) == ["features", "audit"]
    (tmp_path / "params.yaml").write_text("layers: 20\n")
    again = _dvc(tmp_path, git_environ, "repro")
    assert re.findall(r"Running stage '([^']+)'", again) == ["features"]
    assert "Stage 'audit' didn't change, skipping" in again

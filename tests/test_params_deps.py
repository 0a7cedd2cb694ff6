"""Rewording what a param means reruns no stage; changing one of its rules reruns them all.

The descriptions of the params live in ``imgclf.params_help``, which no stage imports
and no stage lists in its deps, while every stage depends on ``imgclf.params`` (the
defaults and rules). Checked statically, with the import walk of tests/test_imports.py,
and for real: ``dvc repro`` in a throw-away git + DVC repo of this project, then
``dvc status`` after editing that repo's own copy of each file.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HELP = "src/imgclf/params_help.py"
PARAMS = "src/imgclf/params.py"
# The cheapest pipeline that runs every stage: few tiny images, one epoch, one format.
TINY = {
    "data": {"image_size": 16},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "audit": {"enabled": False},
    "model": {"arch": "small"},
    "train": {"epochs": 1, "batch_size": 8, "early_stopping_patience": 0},
    "evaluate": {"splits": ["test"], "tta": "none"},
    "export": {"formats": ["tflite_float16"], "latency_runs": 2, "min_agreement": 0.9},
    "ood": {"generated": 2},
}
# The fingerprint stage runs on every repro (always_changed, see dvc.yaml).
ALWAYS = {"source": ["always changed"]}


def _test_imports() -> ModuleType:
    spec = importlib.util.spec_from_file_location("test_imports", REPO / "tests" /
                                                  "test_imports.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_stage_runs_or_lists_the_descriptions() -> None:
    walk = _test_imports()
    assert "imgclf.params_help" in walk.CANNOT_CHANGE_OUTPUTS
    reached = {name: walk.stage_closure(stage) for name, stage in walk.stages().items()}
    assert any("imgclf.params" in found for found in reached.values())  # the walk sees them
    assert [name for name, found in reached.items() if "imgclf.params_help" in found] == []
    assert [name for name, stage in walk.stages().items()
            if HELP in stage.get("deps", [])] == []


def _status(repo: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.slow
def test_dvc_reruns_nothing_for_a_reworded_description(
        tmp_path: Path, image_folder: Callable[..., Path], pipeline_repo: Callable[..., Path],
        git_environ: dict[str, str]) -> None:
    images = image_folder(tmp_path / "images", ["cat", "dog", "eel"], per_class=10)
    repo = pipeline_repo(tmp_path / "repo", images, TINY)
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=git_environ,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _status(repo, git_environ) == ALWAYS

    # The stages' deps are the repo's own files: reword one description there.
    _edit(repo / HELP, '"seed of the split"', '"the seed of the random split"')
    assert _status(repo, git_environ) == ALWAYS

    # The control: a rule of params.py (a range) is a dep of every stage.
    _edit(repo / PARAMS, "Field(224, ge=16, le=1024)", "Field(224, ge=16, le=2048)")
    status = _status(repo, git_environ)
    stages = [name for name, stage in yaml.safe_load(
        (repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items()
        if PARAMS in stage.get("deps", [])]
    assert "train" in stages and sorted(status) == sorted(stages)
    for name in stages:
        changed = [entry["changed deps"] for entry in status[name] if "changed deps" in entry]
        assert changed == [{PARAMS: "modified"}], (name, status[name])

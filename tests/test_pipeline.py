"""End to end: real `dvc repro`, `dvc exp run`, `dvc metrics diff` in a throw-away git repo.

The repo's dvc.yaml, params.yaml and code are copied into a temporary git repository
and run on a tiny generated image set, exactly as a user would run them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imgclf.params import merge

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
STAGES = ("source", "download", "pretrained", "split", "features", "train", "evaluate",
          "export")
# `source` fingerprints data.source on every repro (always_changed, see dvc.yaml): DVC
# runs it each time and lists it in `dvc status`, and the others rerun only on a change.
ALWAYS = {"source": ["always changed"]}

TINY_PARAMS = {
    "data": {"image_size": 16},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "model": {"arch": "small"},
    "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.003},
    "export": {"int8_samples": 20, "latency_runs": 5},
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
               DVC_NO_ANALYTICS="1")
    return env


def sh(cwd: Path, *args: str) -> str:
    """Run a command in ``cwd``; fail the test with its output if it fails."""
    cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ran(dvc_output: str) -> list[str]:
    """The stages ``dvc repro`` ran, in order."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def assert_nothing_else_ran(dvc_output: str) -> None:
    """A no-op repro: only the fingerprint stage ran and every other stage was skipped."""
    assert ran(dvc_output) == ["source"], dvc_output
    for stage in STAGES[1:]:
        assert f"Stage '{stage}' didn't change, skipping" in dvc_output, (stage, dvc_output)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, image_folder: Callable[..., Path],
            pipeline_repo: Callable[..., Path]) -> Path:
    """A git + DVC repo with this project's pipeline, pointed at generated images."""
    root = tmp_path_factory.mktemp("e2e")
    images = image_folder(root / "images", ["cat", "dog", "eel"], per_class=20)
    repo = pipeline_repo(root / "repo", images, TINY_PARAMS)
    return repo


def test_repro_runs_every_stage_and_writes_metrics(project: Path) -> None:
    out = sh(project, "dvc", "repro")
    assert sorted(ran(out)) == sorted(STAGES)
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "auroc", "loss"} <= metrics["test"].keys()
    assert set(metrics["test"]["per_class"]) == {"cat", "dog", "eel"}
    assert (project / "models/model.keras").is_file()
    assert (project / "metrics/gallery/misclassified.png").is_file()
    exported = json.loads((project / "metrics/export.json").read_text())
    formats = ("savedmodel", "tflite_float16", "tflite_int8", "onnx")
    assert all(exported[f]["agreement"] >= 0.995 for f in formats), exported
    assert (project / "models/export/model_int8.tflite").is_file()
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "first run")
    # Pictures made of dataset photos stay in the DVC cache, out of git.
    tracked = sh(project, "git", "ls-files", "metrics", "data", "models").split()
    photos = [f for f in tracked if f.endswith(".png") and ("gallery/" in f or "report/" in f)]
    assert not photos, photos
    assert "metrics/eval.json" in tracked
    assert "metrics/export.json" in tracked
    assert not [f for f in tracked if f.startswith("models/export/")]  # DVC-cached


def test_second_repro_reruns_nothing(project: Path) -> None:
    source_json = (project / "data/source.json").read_bytes()
    assert_nothing_else_ran(sh(project, "dvc", "repro"))
    assert (project / "data/source.json").read_bytes() == source_json
    assert json.loads(sh(project, "dvc", "status", "--json")) == ALWAYS
    assert sh(project, "git", "status", "--porcelain") == ""  # dvc.lock did not change


def test_a_new_image_in_the_source_folder_reruns_download(project: Path) -> None:
    images = Path(yaml.safe_load((project / "params.yaml").read_text())["data"]["source"])
    rng = np.random.default_rng(12345)  # unlike every generated image: no duplicate
    pixels = np.clip(np.array([200, 40, 40]) + rng.integers(-40, 40, (24, 24, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(images / "cat" / "new_photo.png")
    out = sh(project, "dvc", "repro")
    # evaluate and export both follow train, in either order.
    assert ran(out)[:5] == ["source", "download", "split", "features", "train"], out
    assert sorted(ran(out)[5:]) == ["evaluate", "export"], out
    assert "Stage 'pretrained' didn't change, skipping" in out
    assert ((project / "data/raw/cat/new_photo.png").read_bytes()
            == (images / "cat/new_photo.png").read_bytes())
    manifest = (project / "data/prepared/manifest.csv").read_text(encoding="utf-8")
    assert "cat/new_photo.png," in manifest
    # Nothing changed since: back to a no-op.
    assert_nothing_else_ran(sh(project, "dvc", "repro"))
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "a new cat photo")


def test_evaluate_param_reruns_only_evaluate(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["batch_size"] = 7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(project, "dvc", "repro")
    assert ran(out) == ["source", "evaluate"]
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "evaluate batch size")


def stale(project: Path) -> set[str]:
    """The stages ``dvc status`` says would rerun, besides the always-changed ``source``."""
    return set(json.loads(sh(project, "dvc", "status", "--json"))) - set(ALWAYS)


@pytest.mark.parametrize(("path", "expected"), [
    ("src/imgclf/inference/batch.py", {"evaluate"}),  # the flip averaging behind every metric
    ("src/imgclf/data/shards.py", {"split", "features", "train", "evaluate",
                                   "export"}),
    ("src/imgclf/tracking/wandb_run.py", set()),  # the W&B side channel: no output changes
    ("src/imgclf/cli.py", set()),  # the CLI's wiring and help
    # libraries that compute
    ("requirements.lock", {"split", "features", "train", "evaluate", "export"}),
    ("requirements-dev.lock", set()),  # a dev tool's pin
])
def test_one_changed_byte_reruns_exactly_the_stages_that_run_it(
        project: Path, path: str, expected: set[str]) -> None:
    file = project / path
    original = file.read_bytes()
    assert stale(project) == set()
    try:
        file.write_bytes(original + b"\n")
        assert stale(project) == expected
    finally:
        file.write_bytes(original)
    assert stale(project) == set()


def test_export_param_reruns_only_export(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["export"]["latency_runs"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(project, "dvc", "repro")
    assert ran(out) == ["source", "export"]
    assert "export.json" in sh(project, "dvc", "metrics", "show")
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "export latency runs")


def test_push_then_pull_on_a_fresh_clone_reproduces_nothing(project: Path,
                                                             tmp_path: Path) -> None:
    # Shared storage: a folder remote stands in for S3/GCS/SSH; the commands are the same.
    sh(project, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    sh(project, "git", "commit", "-qam", "add a DVC remote")
    sh(project, "dvc", "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    sh(clone, "dvc", "pull")
    assert json.loads(sh(clone, "dvc", "status", "--json")) == ALWAYS
    assert_nothing_else_ran(sh(clone, "dvc", "repro"))
    for out in ("models/model.keras", "data/prepared/meta.json",
                "data/prepared/train-00000.tfrecord"):
        assert (clone / out).read_bytes() == (project / out).read_bytes(), out
    # The split is a few large shards, not thousands of small files (slow to push/pull).
    assert len(list((clone / "data/prepared").iterdir())) < 10


def test_plots_show_renders_every_plot(project: Path) -> None:
    sh(project, "dvc", "plots", "show", "-o", "plots_out")
    page = (project / "plots_out" / "index.html").read_text(encoding="utf-8")
    for name in ("Loss", "Accuracy", "Confusion matrix (test)", "Reliability diagram (test)"):
        assert name in page, name
    pictures = {p.name for p in (project / "plots_out" / "static").iterdir()}
    assert any(n.endswith("confusion.png") for n in pictures), pictures
    shown = json.loads(sh(project, "dvc", "plots", "show", "--json"))
    ids = " ".join(shown["data"].keys()) if "data" in shown else json.dumps(shown)
    for name in ("Loss", "Accuracy", "Confusion", "roc", "precision_recall"):
        assert name in ids, f"{name} not among the plots: {ids[:500]}"


def test_exp_run_with_set_param_and_metrics_diff(project: Path) -> None:
    sh(project, "dvc", "exp", "run", "--set-param", "train.optimizer=sgd", "-n", "sgd-run")
    exps = json.loads(sh(project, "dvc", "exp", "show", "--json"))
    found = {}
    for entry in exps:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == "sgd-run":
                    found = rev["data"]
    assert found, "experiment sgd-run missing from dvc exp show"
    assert found["params"]["params.yaml"]["data"]["train"]["optimizer"] == "sgd"
    assert "accuracy" in found["metrics"]["metrics/eval.json"]["data"]["test"]
    # The experiment's results are in the workspace: diff them against the last commit.
    diff = json.loads(sh(project, "dvc", "metrics", "diff", "--json"))
    assert any(key.startswith("test.") for key in diff.get("metrics/eval.json", {}))


def test_queued_experiments_run_and_show_side_by_side(project: Path) -> None:
    # The documented comparison: a sweep queued as DVC experiments, run by queue workers.
    sh(project, "git", "checkout", "--", "params.yaml")
    sh(project, "dvc", "exp", "run", "--queue", "-S", "train.learning_rate=0.002,0.004")
    # Two workers at once: each experiment runs in its own copy, so they cannot clobber
    # each other's outputs (or W&B runs: each is named after its experiment).
    sh(project, "dvc", "queue", "start", "--jobs", "2")
    deadline = time.monotonic() + 300
    while re.search(r"Queued|Running", sh(project, "dvc", "queue", "status")):
        assert time.monotonic() < deadline, sh(project, "dvc", "queue", "status")
        time.sleep(2)
    rates = {}
    for entry in json.loads(sh(project, "dvc", "exp", "show", "--json")):
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                lr = data.get("params", {}).get("params.yaml", {}).get("data", {})
                lr = lr.get("train", {}).get("learning_rate")
                test = data.get("metrics", {}).get("metrics/eval.json", {}).get("data", {})
                if "test" in test:
                    rates[lr] = test["test"]["accuracy"]
    assert {0.002, 0.004} <= rates.keys(), rates


def test_a_recipe_runs_as_an_experiment_with_its_params(project: Path) -> None:
    # The README's from-scratch commands (make scratch: imgclf recipe, then dvc exp
    # run), with the shipped recipe shrunk to tiny data (compact takes 32 px at least).
    sh(project, "git", "checkout", "--", "params.yaml")
    recipe = yaml.safe_load((REPO / "recipes" / "from-scratch.yaml").read_text())
    recipe = merge(recipe, {"data": {"image_size": 32},
                             "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8}})
    (project.parent / "tiny-recipe.yaml").write_text(yaml.safe_dump(recipe))
    flags = sh(project, "imgclf", "recipe", str(project.parent / "tiny-recipe.yaml")).split()
    assert flags[0] == "-S" and "model.arch=compact" in flags
    sh(project, "dvc", "exp", "run", *flags, "-n", "scratch-run")
    found = {}
    for entry in json.loads(sh(project, "dvc", "exp", "show", "--json")):
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == "scratch-run":
                    found = rev["data"]
    assert found, "experiment scratch-run missing from dvc exp show"
    params = found["params"]["params.yaml"]["data"]
    assert params["model"]["arch"] == "compact"
    assert params["train"]["augment"]["crop"] == recipe["train"]["augment"]["crop"]
    assert params["train"]["ema"] == recipe["train"]["ema"]
    assert params["data"]["image_size"] == 32
    assert "accuracy" in found["metrics"]["metrics/eval.json"]["data"]["test"]
    sh(project, "git", "checkout", "--", "params.yaml")


def test_a_typo_in_set_param_stops_the_stage(project: Path) -> None:
    def exp_run(assignment: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-S", assignment],
                              cwd=project, env=_env(), capture_output=True, text=True)
        assert proc.returncode != 0, f"{assignment} was accepted"
        return proc.stdout + proc.stderr

    # DVC refuses an unknown key by itself; forcing it in with "+" reaches our check.
    assert "Could not override 'train.optimiser'" in exp_run("train.optimiser=sgd")
    assert "train.optimiser: unknown key" in exp_run("+train.optimiser=sgd")

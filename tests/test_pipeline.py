"""End to end: real `dvc repro`, `dvc exp run`, `dvc metrics diff` in a throw-away git repo.

The repo's dvc.yaml, params.yaml and code are copied into a temporary git repository
and run on a tiny generated image set, exactly as a user would run them. That repo is
built and reproduced once (``template``); each test changes its own copy of it, so
the tests run alone or in any order.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import yaml
from PIL import Image

from imgclf.params import merge

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
STAGES = ("source", "download", "pretrained", "split", "features", "audit", "train",
          "evaluate", "export", "ood")
# `source` fingerprints data.source on every repro (always_changed, see dvc.yaml): DVC
# runs it each time and lists it in `dvc status`, and the others rerun only on a change.
ALWAYS = {"source": ["always changed"]}

TINY_PARAMS = {
    "data": {"image_size": 16},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "audit": {"enabled": False},  # tests/audit runs it; here it only has to be in the chain
    "model": {"arch": "small"},
    "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.003},
    "export": {"int8_samples": 20, "latency_runs": 5},
    "ood": {"generated": 4},
}

Sh = Callable[..., str]


@pytest.fixture(scope="session")
def sh(git_environ: dict[str, str]) -> Sh:
    """``sh(cwd, *args)``: run a command (``dvc ...`` through this venv's DVC) in ``cwd``,
    return its output; fail the test with the output if it fails."""
    def run(cwd: Path, *args: str) -> str:
        cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
        proc = subprocess.run(cmd, cwd=cwd, env=git_environ, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    return run


def ran(dvc_output: str) -> list[str]:
    """The stages ``dvc repro`` ran, in order."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def assert_nothing_else_ran(dvc_output: str) -> None:
    """A no-op repro: only the fingerprint stage ran and every other stage was skipped."""
    assert ran(dvc_output) == ["source"], dvc_output
    for stage in STAGES[1:]:
        assert f"Stage '{stage}' didn't change, skipping" in dvc_output, (stage, dvc_output)


def experiments(sh: Sh, project: Path) -> list[dict[str, Any]]:
    """Each experiment's entry in ``dvc exp show --json``: ``{"name", "data", ...}``."""
    shown = json.loads(sh(project, "dvc", "exp", "show", "--json"))
    return [rev for entry in shown for exp in entry.get("experiments") or []
            for rev in exp.get("revs", [])]


def experiment(sh: Sh, project: Path, name: str) -> dict[str, Any]:
    """The data (params, metrics) of the experiment called ``name``."""
    found = [rev["data"] for rev in experiments(sh, project) if rev.get("name") == name]
    assert found, f"experiment {name} missing from dvc exp show"
    return found[0]


def set_params(project: Path, changes: dict) -> None:
    """Lay ``changes`` over the repo's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(merge(params, changes), sort_keys=False))


class Template(NamedTuple):
    repo: Path  # committed after its first `dvc repro`; never changed by a test
    first_repro: str  # what that repro printed


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, image_folder: Callable[..., Path],
             pipeline_repo: Callable[..., Path], sh: Sh) -> Template:
    """A git + DVC repo with this project's pipeline, pointed at generated images,
    reproduced once and committed."""
    root = tmp_path_factory.mktemp("e2e")
    images = image_folder(root / "images", ["cat", "dog", "eel"], per_class=20)
    repo = pipeline_repo(root / "repo", images, TINY_PARAMS)
    # Real copies in the workspace, no links into the cache: copies of the repo stand alone.
    sh(repo, "dvc", "config", "cache.type", "copy")
    out = sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "first run")
    return Template(repo, out)


@pytest.fixture
def project(template: Template, tmp_path: Path,
            repo_copier: Callable[[Path, Path], Path]) -> Path:
    """This test's own copy of the reproduced ``template`` repo."""
    return repo_copier(template.repo, tmp_path / "repo")


def test_repro_runs_every_stage_and_writes_metrics(template: Template, project: Path,
                                                   sh: Sh) -> None:
    assert sorted(ran(template.first_repro)) == sorted(STAGES)
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "auroc", "loss"} <= metrics["test"].keys()
    assert set(metrics["test"]["per_class"]) == {"cat", "dog", "eel"}
    assert (project / "models/model.keras").is_file()
    assert (project / "metrics/gallery/misclassified.png").is_file()
    exported = json.loads((project / "metrics/export.json").read_text())
    formats = ("savedmodel", "tflite_float16", "tflite_int8", "onnx")
    assert all(exported[f]["agreement"] >= 0.995 for f in formats), exported
    assert (project / "models/export/model_int8.tflite").is_file()
    # Pictures made of dataset photos stay in the DVC cache, out of git.
    tracked = sh(project, "git", "ls-files", "metrics", "data", "models").split()
    photos = [f for f in tracked if f.endswith(".png") and ("gallery/" in f or "report/" in f)]
    assert not photos, photos
    assert "metrics/eval.json" in tracked
    assert "metrics/export.json" in tracked
    assert not [f for f in tracked if f.startswith("models/export/")]  # DVC-cached


def test_second_repro_reruns_nothing(project: Path, sh: Sh) -> None:
    source_json = (project / "data/source.json").read_bytes()
    assert_nothing_else_ran(sh(project, "dvc", "repro"))
    assert (project / "data/source.json").read_bytes() == source_json
    assert json.loads(sh(project, "dvc", "status", "--json")) == ALWAYS
    assert sh(project, "git", "status", "--porcelain") == ""  # dvc.lock did not change


def test_a_new_image_in_the_source_folder_reruns_download(project: Path, sh: Sh,
                                                          tmp_path: Path) -> None:
    # This test's own copy of the photos (file times kept), committed as the baseline:
    # the template's stay as they are.
    shared = Path(yaml.safe_load((project / "params.yaml").read_text())["data"]["source"])
    images = shutil.copytree(shared, tmp_path / "images")
    set_params(project, {"data": {"source": str(images)}})
    sh(project, "dvc", "repro", "download")  # source and download: the photos are the same
    sh(project, "git", "commit", "-qam", "own copy of the photos")
    rng = np.random.default_rng(12345)  # unlike every generated image: no duplicate
    pixels = np.clip(np.array([200, 40, 40]) + rng.integers(-40, 40, (24, 24, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(images / "cat" / "new_photo.png")
    out = sh(project, "dvc", "repro")
    # evaluate, export and ood follow train, in any order;
    # audit follows features, before or after train.
    chain = [s for s in ran(out) if s != "audit"]
    assert "audit" in ran(out), out
    assert chain[:5] == ["source", "download", "split", "features", "train"], out
    assert sorted(chain[5:]) == ["evaluate", "export", "ood"], out
    assert "Stage 'pretrained' didn't change, skipping" in out
    assert ((project / "data/raw/cat/new_photo.png").read_bytes()
            == (images / "cat/new_photo.png").read_bytes())
    manifest = (project / "data/prepared/manifest.csv").read_text(encoding="utf-8")
    assert "cat/new_photo.png," in manifest
    # Nothing changed since: back to a no-op.
    assert_nothing_else_ran(sh(project, "dvc", "repro"))


def test_evaluate_param_reruns_only_evaluate(project: Path, sh: Sh) -> None:
    set_params(project, {"evaluate": {"batch_size": 7}})
    assert ran(sh(project, "dvc", "repro")) == ["source", "evaluate"]


def stale(sh: Sh, project: Path) -> set[str]:
    """The stages ``dvc status`` says would rerun, besides the always-changed ``source``."""
    return set(json.loads(sh(project, "dvc", "status", "--json"))) - set(ALWAYS)


@pytest.mark.parametrize(("path", "expected"), [
    ("src/imgclf/inference/batch.py", {"evaluate"}),  # the flip averaging behind every metric
    ("src/imgclf/data/shards.py", {"split", "features", "audit", "train", "evaluate",
                                   "export", "ood"}),
    ("src/imgclf/tracking/wandb_run.py", set()),  # the W&B side channel: no output changes
    ("src/imgclf/cli.py", set()),  # the CLI's wiring and help
    # libraries that compute
    ("requirements.lock", {"split", "features", "audit", "train", "evaluate", "export", "ood"}),
    ("requirements-dev.lock", set()),  # a dev tool's pin
])
def test_one_changed_byte_reruns_exactly_the_stages_that_run_it(
        project: Path, sh: Sh, path: str, expected: set[str]) -> None:
    file = project / path
    original = file.read_bytes()
    assert stale(sh, project) == set()
    file.write_bytes(original + b"\n")
    assert stale(sh, project) == expected
    file.write_bytes(original)
    assert stale(sh, project) == set()


def test_export_param_reruns_only_export(project: Path, sh: Sh) -> None:
    set_params(project, {"export": {"latency_runs": 3}})
    assert ran(sh(project, "dvc", "repro")) == ["source", "export"]
    assert "export.json" in sh(project, "dvc", "metrics", "show")


def test_push_then_pull_on_a_fresh_clone_reproduces_nothing(project: Path, sh: Sh,
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


def test_plots_show_renders_every_plot(project: Path, sh: Sh) -> None:
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


def test_exp_run_with_set_param_and_metrics_diff(project: Path, sh: Sh) -> None:
    sh(project, "dvc", "exp", "run", "--set-param", "train.optimizer=sgd", "-n", "sgd-run")
    found = experiment(sh, project, "sgd-run")
    assert found["params"]["params.yaml"]["data"]["train"]["optimizer"] == "sgd"
    assert "accuracy" in found["metrics"]["metrics/eval.json"]["data"]["test"]
    # The experiment's results are in the workspace: diff them against the last commit.
    diff = json.loads(sh(project, "dvc", "metrics", "diff", "--json"))
    assert any(key.startswith("test.") for key in diff.get("metrics/eval.json", {}))


def test_queued_experiments_run_and_show_side_by_side(project: Path, sh: Sh) -> None:
    # The documented comparison: a sweep queued as DVC experiments, run by queue workers.
    # Up to evaluate: the test scores are what is compared (export and ood add minutes).
    sh(project, "dvc", "exp", "run", "--queue", "evaluate", "-S",
       "train.learning_rate=0.002,0.004")
    # Two workers at once: each experiment runs in its own copy, so they cannot clobber
    # each other's outputs (or W&B runs: each is named after its experiment).
    sh(project, "dvc", "queue", "start", "--jobs", "2")
    deadline = time.monotonic() + 300
    while re.search(r"Queued|Running", sh(project, "dvc", "queue", "status")):
        assert time.monotonic() < deadline, sh(project, "dvc", "queue", "status")
        time.sleep(2)
    rates = {}
    for rev in experiments(sh, project):
        data = rev.get("data") or {}
        train = data.get("params", {}).get("params.yaml", {}).get("data", {}).get("train", {})
        test = data.get("metrics", {}).get("metrics/eval.json", {}).get("data", {})
        if "test" in test:
            rates[train.get("learning_rate")] = test["test"]["accuracy"]
    assert {0.002, 0.004} <= rates.keys(), rates


def test_a_recipe_runs_as_an_experiment_with_its_params(project: Path, sh: Sh) -> None:
    # The README's from-scratch commands (make scratch: imgclf recipe, then dvc exp
    # run), with the shipped recipe shrunk to tiny data (compact takes 32 px at least),
    # run up to evaluate: its test score is what is checked.
    recipe = yaml.safe_load((REPO / "recipes" / "from-scratch.yaml").read_text())
    recipe = merge(recipe, {"data": {"image_size": 32},
                             "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8}})
    (project.parent / "tiny-recipe.yaml").write_text(yaml.safe_dump(recipe))
    flags = sh(project, "imgclf", "recipe", str(project.parent / "tiny-recipe.yaml")).split()
    assert flags[0] == "-S" and "model.arch=compact" in flags
    sh(project, "dvc", "exp", "run", "evaluate", *flags, "-n", "scratch-run")
    found = experiment(sh, project, "scratch-run")
    params = found["params"]["params.yaml"]["data"]
    assert params["model"]["arch"] == "compact"
    assert params["train"]["augment"]["crop"] == recipe["train"]["augment"]["crop"]
    assert params["train"]["ema"] == recipe["train"]["ema"]
    assert params["data"]["image_size"] == 32
    assert "accuracy" in found["metrics"]["metrics/eval.json"]["data"]["test"]


def test_a_typo_in_set_param_stops_the_stage(project: Path,
                                             git_environ: dict[str, str]) -> None:
    def exp_run(assignment: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-S", assignment],
                              cwd=project, env=git_environ, capture_output=True, text=True)
        assert proc.returncode != 0, f"{assignment} was accepted"
        return proc.stdout + proc.stderr

    # DVC refuses an unknown key by itself; forcing it in with "+" reaches our check.
    assert "Could not override 'train.optimiser'" in exp_run("train.optimiser=sgd")
    assert "train.optimiser: unknown key" in exp_run("+train.optimiser=sgd")


TUNE_SPACE = """\
fixed: {wandb.enabled: false}
search:
  train.learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
  train.epochs: {low: 1, high: 2}
  model.dropout: {low: 0.0, high: 0.3}
"""


def test_tune_runs_a_study_of_experiments_that_resumes_and_applies(project: Path,
                                                                   sh: Sh) -> None:
    # imgclf tune (docs/tuning.md): each trial a `dvc exp run` up to train; a second run
    # continues the study within its time budget; --apply writes the best trial's params.
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    (project / "space.yaml").write_text(TUNE_SPACE)
    before = (project / "params.yaml").read_text()
    tune = ("imgclf", "tune", "--space", "space.yaml", "--study", "s")
    out = sh(project, *tune, "--trials", "1")
    assert "study s (new)" in out and "1 trial (1 complete, 0 pruned, 0 failed)" in out, out
    assert (project / "params.yaml").read_text() == before  # the tune leaves it as it was

    def seconds() -> list[float]:
        storage = JournalStorage(JournalFileBackend(str(project / "tune/s/study.journal")))
        return [t.user_attrs["seconds"] for t in optuna.load_study(
            study_name="s", storage=storage).trials]

    # A budget that holds about one more trial like the one so far.
    budget = 1.5 * seconds()[0]
    out = sh(project, *tune, "--trials", "4", "--time", f"{budget:.0f}s")
    assert "continued, 1 trial so far" in out and "s-1 complete" in out, out
    assert "stopped before another trial: the time budget" in out, out
    assert sum(seconds()[1:]) <= budget + max(seconds()), (budget, seconds())  # <= 1 over
    shown = {rev.get("name"): rev["data"] for rev in experiments(sh, project)}
    assert {"s-0", "s-1"} <= shown.keys(), shown.keys()
    # W&B groups the trials under the study
    assert shown["s-1"]["params"]["params.yaml"]["data"]["wandb"]["group"] == "s"
    # A finished trial's whole val curve, read back from its experiment's commit: what
    # the pruner compares later trials with when a queued (--jobs) trial ended unseen.
    from imgclf.tuning import trial as trials

    value, curve = trials.queue_result(project, "s-1", trials.Layout.of(project))
    assert value is not None and [step for step, _ in curve] == list(range(len(curve)))
    assert curve and all(0 <= accuracy <= 1 for _, accuracy in curve), curve
    assert "-S train.learning_rate=" in out, out  # the best trial's flags
    assert all((project / "tune/s" / f"{n}.png").stat().st_size > 1000
               for n in ("history", "importances"))

    out = sh(project, *tune, "--apply")
    best = json.loads((project / "tune/s/best.json").read_text())
    applied = yaml.safe_load((project / "params.yaml").read_text())
    assert applied["train"]["learning_rate"] == best["values"]["train.learning_rate"]
    assert "dvc repro" in out and "test split" in out, out

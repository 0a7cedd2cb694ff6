"""Sections 4 and 6: dvc repro in a throw-away project: reruns, and time to accuracy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from bench.context import Bench, write_params
from bench.fitting import baseline_run
from bench.framework import Figure, Target
from bench.photos import copy_subset
from bench.runner import REPO, dvc_cmd, log, mirror_dir, run_child
from imgclf.params import BACKBONES, merge

NOOP_REPRO_TARGET_S = 3.0  # section 4: a `dvc repro` with nothing to do
# Section 6: (test accuracy at least, wall seconds at most) for each kind of recipe.
TTA_TARGETS = {"pretrained": (0.985, 300.0), "from scratch": (0.90, 600.0)}
# Stages that only fetch inputs (the photos, pretrained weights): run before timing section 6.
SETUP_STAGES = ("download", "pretrained", "weights")
TTA_BASELINE_SIZE = 128  # section 6: the baseline at its own default size, whatever ours uses


def stages_ran(dvc_output: str) -> list[str]:
    """Names of the stages ``dvc repro`` printed as running, in order."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def baseline_epochs(target_s: float, one_epoch_wall_s: float, epoch_s: float) -> int:
    """Epochs for the baseline to run about ``target_s`` in all.

    ``one_epoch_wall_s`` is the whole 1-epoch run (start-up, warm-up, epoch) and
    ``epoch_s`` the epoch alone, so start-up costs ``one_epoch_wall_s - epoch_s``.
    """
    startup = max(0.0, one_epoch_wall_s - epoch_s)
    return max(1, round((target_s - startup) / epoch_s))


def recipe_kind(params: dict[str, Any]) -> str:
    """``pretrained`` when the model starts from ImageNet weights, else ``from scratch``."""
    model = params.get("model") or {}
    pretrained = model.get("arch") in BACKBONES and model.get("pretrained", True)
    return "pretrained" if pretrained else "from scratch"



def make_project(root: Path, params: dict[str, Any]) -> Path:
    """A git + DVC repository with this project's pipeline and ``params`` as params.yaml."""
    root.mkdir(parents=True)
    # The pipeline, its ignores, and the pins its computing stages depend on.
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "requirements.lock",
                 "requirements-dev.lock"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    write_params(root / "params.yaml", params)
    run_child(["git", "init", "-q", "-b", "main"], root, what="git init")
    run_child(dvc_cmd("init", "-q"), root, what="dvc init")
    run_child(["git", "add", "-A"], root, what="git add")
    run_child(["git", "commit", "-qm", "pipeline"], root, what="git commit")
    return root



def always_changed(project: Path) -> set[str]:
    """The stages ``dvc.yaml`` marks ``always_changed``: they run on every repro by design
    (``source`` fingerprints data.source in a fraction of a second), not as a rerun."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name for name, stage in stages.items() if stage.get("always_changed")}


def repro(project: Path, *targets: str) -> tuple[float, list[str]]:
    """(wall seconds, stages that ran) of ``dvc repro [targets]`` in ``project``."""
    run = run_child(dvc_cmd("repro", *targets), project, what="dvc repro")
    return run.seconds, stages_ran(run.output)


def section_incremental(bench: Bench) -> list[Figure]:
    """Section 4: a no-op ``dvc repro`` and one after an evaluate-only change."""
    per_class = 20 if bench.quick else 60
    photos = copy_subset(mirror_dir(), bench.work / "incremental-photos", per_class)
    params = merge(bench.repo_params(), {"data": {"source": str(photos), "image_size": 64},
                                         "model": {"arch": "small"}, "train": {"epochs": 1}})
    project = make_project(bench.work / "incremental", params)
    log(f"incremental: first dvc repro ({per_class} photos a class)")
    full_s, _ = repro(project)
    log("incremental: no-op dvc repro, then evaluate.batch_size changed")
    noop_s, noop_ran = repro(project)
    old = params["evaluate"]["batch_size"]
    params["evaluate"]["batch_size"] = 32 if old != 32 else 64
    write_params(project / "params.yaml", params)
    changed_s, changed_ran = repro(project)
    return [
        Figure("4 incremental", "no-op dvc repro", noop_s, full_s, "s",
               Target("<=", NOOP_REPRO_TARGET_S, on="value"),
               f"reference: the first full repro; stages run: {', '.join(noop_ran) or 'none'}"),
        Figure("4 incremental", "evaluate.batch_size changed", changed_s, full_s, "s", None,
               f"stages run: {', '.join(changed_ran) or 'none'}"),
        Figure("4 incremental", "only evaluate reran (1 = yes)",
               float([s for s in changed_ran if s not in always_changed(project)] == ["evaluate"]),
               None, "",
               Target(">=", 1, on="value")),
    ]


def timed_pipeline(bench: Bench, params_file: Path) -> tuple[float, float, list[str], dict]:
    """(seconds, test accuracy, stages run, params) of a full repro from downloaded data."""
    # A recipe file (recipes/*.yaml) holds only the keys it changes: it goes over params.yaml.
    params = merge(bench.repo_params(), yaml.safe_load(params_file.read_text(encoding="utf-8"))
                   or {})
    if bench.quick:
        subset = copy_subset(mirror_dir(), bench.work / f"tta-photos-{params_file.stem}", 20)
        params = merge(params, {"data": {"source": str(subset), "image_size": 64},
                                "train": {"epochs": 1, "warmup_epochs": 0}})
    project = make_project(bench.work / f"tta-{params_file.stem}", params)
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    setup = [s for s in SETUP_STAGES if s in stages]
    log(f"tta {params_file.name}: fetching inputs untimed ({', '.join(setup)})")
    for stage in setup:
        repro(project, stage)
    log(f"tta {params_file.name}: timed dvc repro")
    seconds, ran = repro(project)
    metrics = json.loads((project / "metrics" / "eval.json").read_text(encoding="utf-8"))
    return seconds, float(metrics["test"]["accuracy"]), ran, params


def section_tta(bench: Bench) -> list[Figure]:
    """Section 6: wall time and test accuracy of a full repro vs the baseline, same time."""
    figures = []
    for params_file in bench.params_files:
        seconds, accuracy, ran, params = timed_pipeline(bench, params_file)
        data = Path(params["data"]["source"]) if bench.quick else mirror_dir()
        size = 64 if bench.quick else TTA_BASELINE_SIZE
        log(f"tta {params_file.name}: baseline medium, 1 epoch to size its run")
        one = baseline_run(bench, data, "medium", size)
        epochs = baseline_epochs(seconds, one["wall_s"], one["seconds"])
        log(f"tta {params_file.name}: baseline medium, {epochs} epochs")
        base = baseline_run(bench, data, "medium", size, epochs)
        kind = recipe_kind(params)
        min_acc, max_s = TTA_TARGETS[kind]
        label = f"{params_file.name} ({kind})"
        figures += [
            Figure("6 tta", f"{label}: test accuracy", accuracy, base["val_accuracy"], "acc",
                   Target(">=", min_acc, on="value"),
                   f"reference: baseline medium {size}px, {epochs} epochs, val accuracy of "
                   "its last epoch"),
            Figure("6 tta", f"{label}: repro wall time", seconds, base["wall_s"], "s",
                   Target("<=", max_s, on="value"),
                   f"stages timed: {', '.join(ran)}; reference: the baseline's whole run"),
        ]
    return figures

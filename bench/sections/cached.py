"""Section 12: the cached path (features stage + train) against its limit and today's
whole-model training, in one throw-away project on the real photos."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.context import Bench
from bench.framework import Figure, Target
from bench.photos import copy_subset
from bench.runner import REPO, imgclf_cmd, last_json, log, mirror_dir, run_child
from bench.sections.pipeline import make_project, repro
from imgclf.params import merge

LIMIT_TARGET = 1.2  # train stage (features included) / the limit, at most
TODAY_TARGET = 0.6  # train stage (features included) / today's train stage, at most


def _project(bench: Bench) -> Path:
    params = merge(bench.repo_params(), {"wandb": {"enabled": False}})
    if bench.quick:
        subset = copy_subset(mirror_dir(), bench.work / "cached-photos", 20)
        params = merge(params, {"data": {"source": str(subset), "image_size": 64},
                                "train": {"epochs": 1, "fine_tune": {"epochs": 1}}})
    else:
        params["data"]["source"] = str(mirror_dir())
    return make_project(bench.work / "cached", params)


def _accuracy(project: Path, model: str, metrics: str) -> float:
    run_child(imgclf_cmd("evaluate", "--data", "data/prepared", "--model", model,
                         "--metrics", metrics, "--plots", f"{metrics}.plots",
                         "--gallery", f"{metrics}.png"), project, what="evaluate")
    return float(json.loads((project / metrics).read_text(encoding="utf-8"))["test"]["accuracy"])


def _measure(project: Path) -> dict[str, Any]:
    for stage in ("download", "pretrained", "split"):  # inputs, untimed
        repro(project, stage)
    log("cached: dvc repro features, then train (timed)")
    features_s, _ = repro(project, "features")
    train_s, ran = repro(project, "train")
    cached_acc = _accuracy(project, "models/model.keras", "metrics/cached.json")
    log("cached: the limit, piece by piece")
    limit = last_json(run_child([sys.executable, str(REPO / "bench" / "limit_probe.py"),
                                 str(project)], project, what="limit probe").output)
    log("cached: today's train stage (the whole model on the images, every epoch)")
    today = run_child(imgclf_cmd("train", "--data", "data/prepared", "--pretrained",
                                 "data/pretrained", "--features", "", "--model",
                                 "models/today.keras", "--live", "metrics/today"),
                      project, what="today's train")
    today_acc = _accuracy(project, "models/today.keras", "metrics/today.json")
    return {"features_s": features_s, "train_s": train_s, "ran": ran, "limit": limit,
            "today_s": today.seconds, "cached_acc": cached_acc, "today_acc": today_acc}


def section_cached(bench: Bench) -> list[Figure]:
    """Section 12: the features stage + cached train vs the limit and vs today."""
    m = _measure(_project(bench))
    limit = m["limit"]
    limit_s = limit["frozen_s"] + limit["head_s"] + limit["top_s"]
    ours = m["features_s"] + m["train_s"]
    parts = (f"features {m['features_s']:.0f} s + train {m['train_s']:.0f} s")
    return [
        Figure("12 cached", "train stage (features included) vs the limit", ours, limit_s, "s",
               Target("<=", LIMIT_TARGET),
               f"{parts}; limit: frozen forward over the views {limit['frozen_s']:.0f} s + "
               f"head {limit['head_s']:.1f} s + top {limit['top_s']:.1f} s"),
        Figure("12 cached", "train stage (features included) vs today's", ours,
               m["today_s"], "s", Target("<=", TODAY_TARGET),
               f"{parts}; reference: imgclf train --features '' (the whole model, every "
               "epoch)"),
        Figure("12 cached", "head-only rerun (train stage alone) vs today's", m["train_s"],
               m["today_s"], "s", None,
               "what an experiment changing only head or fine-tuning params costs"),
        Figure("12 cached", "test accuracy vs today's", m["cached_acc"], m["today_acc"],
               "acc", Target(">=", 1.0), "same params, same seed"),
    ]

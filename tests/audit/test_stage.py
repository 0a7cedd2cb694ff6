"""The audit stage's command on a prepared set, with embeddings as the features stage
writes them: every output, the W&B-free path, and the switch that turns it off."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from imgclf import cli
from imgclf.audit.records import read_records


def params_file(tmp: Path, **audit: object) -> Path:
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump({"wandb": {"enabled": False}, "audit": audit}))
    return path


def test_the_stage_writes_counts_tables_pictures_and_summary(
        tiny_prepared: Path, tmp_path: Path, features_writer: Callable[..., Path]) -> None:
    records = read_records(tiny_prepared)
    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, (3, 32))
    embed = np.abs(means[records.labels] + rng.normal(0, 1, (len(records), 32)))
    wrong = int(np.flatnonzero(records.split_of == 0)[0])
    first_test = int(np.flatnonzero(records.split_of == 2)[0])
    embed[first_test] = embed[wrong] * 1.001  # a mirrored copy of a train image in test
    features = features_writer(tmp_path / "features", embed, records.labels, records.split_of)
    out = tmp_path / "audit"
    assert cli.main(["audit", "--params", str(params_file(tmp_path)), "--data",
                     str(tiny_prepared), "--features", str(features), "--raw", "",
                     "--out", str(out)]) == 0
    counts = json.loads((out / "counts.json").read_text())
    assert counts["images"] == len(records) == 90
    assert counts["leaks"] >= 1 and set(counts["quality"]) >= {"dark", "blurry"}
    with open(out / "findings" / "leaks.csv", newline="") as f:
        leaks = list(csv.DictReader(f))
    assert {(r["path"], r["other_path"]) for r in leaks} >= {
        (records.paths[wrong], records.paths[first_test])}
    assert "# Data audit" in (out / "findings" / "summary.md").read_text()
    for kind in ("label_issues", "outliers", "near_duplicates", "leaks", "quality"):
        assert (out / "findings" / f"{kind}.csv").is_file()
        assert Image.open(out / "grids" / f"{kind}.png").size[0] > 100


def test_audit_enabled_false_writes_only_a_note(tiny_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    assert cli.main(["audit", "--params", str(params_file(tmp_path, enabled=False)),
                     "--data", str(tiny_prepared), "--features", str(tmp_path / "none"),
                     "--out", str(out)]) == 0
    counts = json.loads((out / "counts.json").read_text())
    assert "audit.enabled: false" in counts["note"] and counts["label_issues"] == 0
    assert (out / "grids" / "label_issues.png").is_file()


def test_the_pr_report_shows_each_count_and_its_change() -> None:
    from imgclf.pr_report.audit import counts_table

    base = {"images": 100, "label_issues": 5, "leaks": 2, "quality": {"dark": 1}}
    now = {"images": 98, "label_issues": 1, "leaks": 0, "quality": {"dark": 1},
           "note": "text is left out"}
    table = counts_table(base, now, "main").splitlines()
    assert table[0] == "| finding | main | workspace | change |"
    assert "| label_issues | 5 | 1 | -4 |" in table and "| quality.dark | 1 | 1 | +0 |" in table
    assert counts_table(None, now, "main").splitlines()[3] == "| label_issues | – | 1 | – |"

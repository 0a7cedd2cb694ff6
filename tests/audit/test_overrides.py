"""overrides.yaml: split applies it and reports it; ``imgclf audit --accept`` writes it."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from imgclf.audit.accept import accept
from imgclf.data import split
from imgclf.data.overrides import EXCLUDED, apply_overrides, read_overrides
from imgclf.errors import UserError
from imgclf.params import DataParams, SplitParams

REPO = Path(__file__).resolve().parents[2]
FILES = [("cats/a.jpg", 0), ("cats/b.jpg", 0), ("dogs/c.jpg", 1)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_repos_file_changes_nothing() -> None:
    assert read_overrides(REPO / "overrides.yaml") == read_overrides(None)


def test_exclude_and_relabel_are_applied_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "o.yaml", "exclude: [cats/b.jpg]\nrelabel: {cats/a.jpg: dogs}\n")
    applied = apply_overrides(FILES, ["cats", "dogs"], path)
    assert applied.files == [("cats/a.jpg", 1), ("dogs/c.jpg", 1)]
    assert applied.keep.tolist() == [True, False, True]
    assert applied.skipped == [{"path": "cats/b.jpg", "reason": EXCLUDED}]
    assert applied.report["relabelled"] == [{"path": "cats/a.jpg", "from": "cats", "to": "dogs"}]


@pytest.mark.parametrize(("text", "named"), [
    ("exclude: [cats/typo.jpg]\n", "cats/typo.jpg"),
    ("relabel: {dogs/nope.jpg: cats}\n", "dogs/nope.jpg"),
    ("relabel: {cats/a.jpg: birds}\n", "birds"),
    ("exclude: [cats/a.jpg]\nrelabel: {cats/a.jpg: dogs}\n", "cats/a.jpg"),
    ("remove: []\n", "exclude"),
])
def test_a_line_that_matches_nothing_stops_split_naming_it(tmp_path: Path, text: str,
                                                           named: str) -> None:
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        apply_overrides(FILES, ["cats", "dogs"], write(tmp_path / "o.yaml", text))


def test_split_reports_what_the_overrides_changed(tmp_path: Path,
                                                  image_folder: Callable[..., Path]) -> None:
    raw = image_folder(tmp_path / "raw", ["red", "green"], per_class=6, size=16)
    path = write(tmp_path / "o.yaml",
                 "exclude: [red/red_000.png]\nrelabel: {green/green_001.png: red}\n")
    split.run(DataParams(image_size=16), SplitParams(train=0.5, val=0.25, test=0.25), raw,
              tmp_path / "prepared", overrides=path)
    report = json.loads((tmp_path / "prepared" / "report.json").read_text())
    assert report["overrides"]["excluded"] == ["red/red_000.png"]
    assert report["overrides"]["relabelled"] == [
        {"path": "green/green_001.png", "from": "green", "to": "red"}]
    with open(tmp_path / "prepared" / "manifest.csv", newline="") as f:
        rows = {r["path"]: r["label"] for r in csv.DictReader(f)}
    assert "red/red_000.png" not in rows and rows["green/green_001.png"] == "red"
    assert len(rows) == 11


def test_accept_writes_reviewable_lines_and_keeps_the_comments(tmp_path: Path) -> None:
    findings = tmp_path / "findings"
    findings.mkdir()
    with open(findings / "label_issues.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["rank", "path", "split", "given", "suggested", "score"])
        writer.writeheader()
        writer.writerows([{"rank": i + 1, "path": f"dogs/d{i}.jpg", "split": "train",
                           "given": "dogs", "suggested": "cats", "score": 0.01} for i in range(5)])
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text((REPO / "overrides.yaml").read_text())
    assert accept("label_issues", 3, findings, overrides) == 3
    text = overrides.read_text()
    assert (REPO / "overrides.yaml").read_text().splitlines()[0] in text  # comments kept
    assert "  dogs/d0.jpg: cats  # audit: given dogs, p 0.01 (rank 1)" in text
    assert yaml.safe_load(text) == {"exclude": [], "relabel": {
        "dogs/d0.jpg": "cats", "dogs/d1.jpg": "cats", "dogs/d2.jpg": "cats"}}
    assert accept("label_issues", 4, findings, overrides) == 1  # the first 3 already there
    assert list(read_overrides(overrides).relabel) == [f"dogs/d{i}.jpg" for i in range(4)]

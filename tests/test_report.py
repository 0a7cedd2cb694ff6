"""``imgclf report`` in a throw-away git + DVC repo whose params, metrics and plots changed."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml

from imgclf import report
from imgclf.errors import UserError

SVG = "{http://www.w3.org/2000/svg}"

DVC_YAML = {
    "params": ["params.yaml"],
    "metrics": ["metrics/eval.json"],
    "plots": [
        {"Loss": {"template": "linear", "x": "step",
                  "y": {"metrics/train/loss.tsv": "loss", "metrics/val/loss.tsv": "loss"}}},
        {"Confusion": {"template": "confusion", "x": "predicted",
                       "y": {"metrics/confusion.json": "actual"}}},
        {"metrics/roc": {"template": "simple", "x": "fpr", "y": "tpr"}},
        "metrics/confusion.png",  # pictures: DVC shows them, the report leaves them out
        "metrics/samples",
    ],
}


def _env() -> dict[str, str]:
    return dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
                DVC_NO_ANALYTICS="1")


def sh(cwd: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def write_state(repo: Path, lr: float, accuracy: float, losses: list[float],
                confusion: list[tuple[str, str]]) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": lr, "epochs": 3}}))
    (repo / "metrics/train").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/val").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/roc").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/eval.json").write_text(json.dumps({"test": {"accuracy": accuracy,
                                                                 "n": 40}}))
    for split, shift in (("train", 0.0), ("val", 0.1)):
        rows = "".join(f"{i}\t{v + shift}\n" for i, v in enumerate(losses))
        (repo / f"metrics/{split}/loss.tsv").write_text("step\tloss\n" + rows)
    (repo / "metrics/confusion.json").write_text(json.dumps(
        [{"actual": a, "predicted": p} for a, p in confusion]))
    (repo / "metrics/samples").mkdir(parents=True, exist_ok=True)
    for picture in ("metrics/confusion.png", "metrics/samples/cat.png"):
        (repo / picture).write_bytes(b"\x89PNG fake " + str(accuracy).encode())
    (repo / "metrics/roc/cat.json").write_text(json.dumps(
        [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.2, "tpr": 0.8}, {"fpr": 1.0, "tpr": 1.0}]))


BASE_CONFUSION = [("cat", "cat")] * 3 + [("cat", "dog")] * 2 + [("dog", "dog")] * 4
NEW_CONFUSION = [("cat", "cat")] * 5 + [("dog", "dog")] * 3 + [("dog", "cat")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main: accuracy 0.5, lr 0.1; the workspace: accuracy 0.75, lr 0.2, new curves."""
    root = tmp_path_factory.mktemp("report") / "repo"
    root.mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    write_state(root, 0.1, 0.5, [1.0, 0.8, 0.7], BASE_CONFUSION)
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "base")
    write_state(root, 0.2, 0.75, [0.9, 0.5, 0.3, 0.2], NEW_CONFUSION)
    return root


@pytest.fixture(scope="module")
def built(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    plots = tmp_path_factory.mktemp("plots")
    return report.build_report("main", repo, plots_dir=plots, link_prefix="img/"), plots


def section(text: str, title: str) -> str:
    return text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def test_report_starts_with_the_marker_and_names_the_base(built: tuple[str, Path]) -> None:
    text, _ = built
    assert text.splitlines()[0] == report.MARKER
    assert "`main`" in text


def test_metrics_show_both_values_and_the_change(built: tuple[str, Path]) -> None:
    metrics = section(built[0], "Metrics")
    row = next(line for line in metrics.splitlines() if "test.accuracy" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:2] == ["metrics/eval.json", "test.accuracy"]
    assert [float(c) for c in cells[2:5]] == [0.5, 0.75, 0.25]
    assert "test.n" not in metrics  # unchanged metrics are left out


def test_params_show_both_values(built: tuple[str, Path]) -> None:
    params = section(built[0], "Params")
    row = next(line for line in params.splitlines() if "train.lr" in line)
    assert "0.1" in row and "0.2" in row
    assert "train.epochs" not in params


def test_changed_plots_are_svg_images_with_base_and_workspace(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "![Loss](img/loss.svg)" in text
    tree = ET.parse(plots / "loss.svg")
    lines = tree.getroot().findall(f"{SVG}polyline")
    assert len(lines) == 4  # train and val, each in main (dashed) and the workspace
    dashed = [pl for pl in lines if pl.get("stroke-dasharray")]
    assert len(dashed) == 2
    assert [len(pl.get("points", "").split()) for pl in lines] == [3, 4, 3, 4]
    labels = {t.text for t in tree.getroot().iter(f"{SVG}text")}
    assert {"train (main)", "train (workspace)", "val (main)", "val (workspace)"} <= labels


def test_confusion_matrix_is_drawn_for_both_revisions(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "![Confusion](img/confusion.svg)" in text
    root = ET.parse(plots / "confusion.svg").getroot()
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "main" in texts and "workspace" in texts
    assert len(root.findall(f"{SVG}rect")) == 1 + 2 * 4  # background + 2 panels of 2x2
    assert "| cat | 3 → 5 | 2 → 0 |" in text  # the folded data table
    assert "| dog | 0 → 1 | 4 → 3 |" in text


def test_unchanged_plots_are_left_out(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "roc" not in text
    assert sorted(p.name for p in plots.iterdir()) == ["confusion.svg", "loss.svg"]


def test_data_tables_follow_each_image(built: tuple[str, Path]) -> None:
    loss = built[0].split("#### Loss", 1)[1].split("####", 1)[0]
    assert "<details>" in loss
    assert "| train | 3 | 0.7 | 4 | 0.2 |" in loss


def test_run_writes_the_file_with_links_relative_to_it(repo: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    report.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out" / "report.md"
    args = parser.parse_args(["report", "--base", "main", "--output", str(out),
                              "--plots-dir", str(tmp_path / "pics"), "--repo", str(repo)])
    args.func(args)
    text = out.read_text()
    assert "![Loss](../pics/loss.svg)" in text
    assert (out.parent / "../pics/loss.svg").is_file()


def test_image_url_links_the_hosted_images(repo: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    report.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--repo", str(repo), "--plots-dir", str(tmp_path),
                              "--image-url", "https://example.com/pr-1/"])
    args.func(args)
    assert "![Loss](https://example.com/pr-1/loss.svg)" in capsys.readouterr().out


def test_no_changes_say_so(repo: Path, tmp_path: Path) -> None:
    sh(repo, "git", "stash", "-q")  # the workspace back to main, for this test only
    try:
        text = report.build_report("main", repo, plots_dir=tmp_path)
    finally:
        sh(repo, "git", "stash", "pop", "-q")
    assert "No params changed." in text and "No metrics changed." in text
    assert "No plot data changed." in text
    assert list(tmp_path.iterdir()) == []


def test_unknown_base_is_a_user_error(repo: Path) -> None:
    with pytest.raises(UserError, match="--base nope: not a git revision"):
        report.build_report("nope", repo)


def test_line_svg_copes_with_flat_and_single_point_series() -> None:
    svg = report.line_svg("t", [report.Line("a", [(1.0, 0.5)], "#000"),
                                report.Line("b", [], "#111", dashed=True)], "x", "y")
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}polyline")) == 2


def test_ticks_are_round_and_cover_the_range() -> None:
    assert report._ticks(0.13, 0.92) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report._ticks(3, 3) == [2.4, 2.6, 2.8, 3.0, 3.2, 3.4, 3.6]


def test_short_labels_keep_what_differs() -> None:
    paths = ["m/train/plots/metrics/train/loss.tsv", "m/train/plots/metrics/val/loss.tsv"]
    assert report._short_labels(paths) == ["train", "val"]
    assert report._short_labels(["metrics/roc/cat.json"]) == ["cat"]


def test_confusion_counts_pairs() -> None:
    matrices = [("main", Counter({("a", "b"): 2}))]
    assert "| a | 0 | 2 |" in report._confusion_table(matrices)


def test_pictures_are_not_drawn_as_empty_charts(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "confusion.png" not in text and "samples" not in text
    assert not [p for p in plots.iterdir() if "png" in p.name or "samples" in p.name]

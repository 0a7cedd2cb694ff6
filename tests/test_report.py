"""``imgclf report`` in a throw-away git + DVC repo whose params, metrics and plots changed.

The plots are DVC's own (``dvc plots diff``) drawn by vl-convert, so the tests read the
rendered SVG: Vega labels each mark with its data (``aria-label``), which says which
revision and file each line or cell shows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imgclf import pr_report
from imgclf.errors import UserError
from imgclf.pr_report import plots as report_plots

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
        # two fields of one file, and a file the base revision lacks
        {"Accuracy": {"template": "linear", "x": "step",
                      "y": {"metrics/train/acc.tsv": ["acc", "top2"]}}},
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
                confusion: list[tuple[str, str]], acc: bool = False) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": lr, "epochs": 3}}))
    (repo / "metrics/train").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/val").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/roc").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/eval.json").write_text(json.dumps({"test": {"accuracy": accuracy,
                                                                 "n": 40}}))
    for split, shift in (("train", 0.0), ("val", 0.1)):
        rows = "".join(f"{i}\t{v + shift}\n" for i, v in enumerate(losses))
        (repo / f"metrics/{split}/loss.tsv").write_text("step\tloss\n" + rows)
    if acc:
        (repo / "metrics/train/acc.tsv").write_text("step\tacc\ttop2\n0\t0.5\t0.8\n1\t0.6\t0.9\n")
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
    write_state(root, 0.2, 0.75, [0.9, 0.5, 0.3, 0.2], NEW_CONFUSION, acc=True)
    return root




@pytest.fixture(scope="module")
def built(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    plots = tmp_path_factory.mktemp("plots")
    return pr_report.build_report("main", repo, plots_dir=plots, link_prefix="img/"), plots


def section(text: str, title: str) -> str:
    return text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def marks(svg: Path, kind: str) -> list[tuple[int, dict[str, str], ET.Element]]:
    """The ``kind`` marks ("line", "rect") Vega drew: (group number, data fields, element).

    Vega writes each mark's data as ``aria-label="field: value; ..."``; a group holds one
    layer's marks of one facet.
    """
    out = []
    for number, group in enumerate(ET.parse(svg).getroot().iter(f"{SVG}g")):
        cls = group.get("class", "")
        if f"mark-{kind}" not in cls.split() or "role-mark" not in cls.split():
            continue
        for el in group:
            label = el.get("aria-label")
            if label:
                fields = dict(part.split(": ", 1) for part in label.split("; "))
                out.append((number, fields, el))
    return out


def vertices(path: ET.Element) -> int:
    """The points of an SVG line path ``M x,y L x,y ...``."""
    return len(re.findall(r"[ML]", path.get("d", "")))


def test_report_starts_with_the_marker_and_names_the_base(built: tuple[str, Path]) -> None:
    text, _ = built
    assert text.splitlines()[0] == pr_report.MARKER
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


def test_line_plot_svg_draws_each_file_in_both_revisions(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "![Loss](img/loss.svg)" in text
    lines = marks(plots / "loss.svg", "line")
    # DVC's linear template draws each line twice (smoothed, and faint raw data); each
    # (revision, file) line has the points of that revision's file: 3 in main, 4 now.
    drawn = {(f["rev"], f["filename"], vertices(el)) for _, f, el in lines}
    assert drawn == {("main", "train/loss.tsv", 3), ("main", "val/loss.tsv", 3),
                     ("workspace", "train/loss.tsv", 4), ("workspace", "val/loss.tsv", 4)}
    colours = {f["rev"]: el.get("stroke") for _, f, el in lines}
    assert colours["main"] != colours["workspace"]  # one colour per revision
    legend = {t.text for t in ET.parse(plots / "loss.svg").getroot().iter(f"{SVG}text")}
    assert {"main", "workspace", "train/loss.tsv", "val/loss.tsv", "Loss"} <= legend


def test_confusion_svg_has_one_matrix_per_revision(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "![Confusion](img/confusion.svg)" in text
    cells: dict[int, set[tuple[str, str, int]]] = {}
    for group, f, _ in marks(plots / "confusion.svg", "rect"):
        if "xy_count" in f:  # a facet (revision) per group; DVC's layers repeat the cells
            cells.setdefault(group, set()).add((f["actual"], f["predicted"], int(f["xy_count"])))
    classes = ("cat", "dog")
    expected = {frozenset((a, p, Counter(pairs)[(a, p)]) for a in classes for p in classes)
                for pairs in (BASE_CONFUSION, NEW_CONFUSION)}  # zero cells drawn too
    assert {frozenset(c) for c in cells.values()} == expected
    assert "| cat | 3 → 5 | 2 → 0 |" in text  # the folded data table: main → workspace
    assert "| dog | 0 → 1 | 4 → 3 |" in text


def test_png_format_draws_both_revisions_colours(repo: Path, tmp_path: Path,
                                                 built: tuple[str, Path]) -> None:
    text = pr_report.build_report("main", repo, plots_dir=tmp_path, fmt="png")
    assert "![Loss](" in text and "loss.png)" in text
    image = Image.open(tmp_path / "loss.png")
    assert image.format == "PNG" and image.width >= 600  # drawn at twice Vega's size
    colours = {el.get("stroke") for _, _, el in marks(built[1] / "loss.svg", "line")}
    assert len(colours) == 2
    pixels = np.asarray(image.convert("RGB"), dtype=int).reshape(-1, 3)
    for colour in colours:  # each revision's line colour is in the picture
        rgb = np.array([int(colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 40).sum() > 100, colour


def test_unchanged_plots_are_left_out(built: tuple[str, Path], repo: Path) -> None:
    text, plots = built
    assert "roc" not in text
    assert sorted(p.name for p in plots.iterdir()) == ["accuracy.svg", "confusion.svg",
                                                       "loss.svg"]
    assert not (repo / "dvc_plots").exists()  # DVC's copies of pictures went elsewhere


def test_data_tables_follow_each_image(built: tuple[str, Path]) -> None:
    loss = built[0].split("#### Loss", 1)[1].split("####", 1)[0]
    assert loss.index("![Loss]") < loss.index("<details>")
    assert "| train/loss.tsv | 3 | 0.7 | 4 | 0.2 |" in loss
    assert "| val/loss.tsv | 3 | 0.8 | 4 | 0.3 |" in loss


def test_new_plot_with_two_fields_shows_only_in_the_workspace(built: tuple[str, Path]) -> None:
    text, plots = built
    accuracy = text.split("#### Accuracy", 1)[1].split("####", 1)[0]
    assert "| acc | – | – | 2 | 0.6 |" in accuracy
    assert "| top2 | – | – | 2 | 0.9 |" in accuracy
    drawn = {(f["rev"], f["field"]) for _, f, _ in marks(plots / "accuracy.svg", "line")}
    assert drawn == {("workspace", "acc"), ("workspace", "top2")}


def test_run_writes_the_file_with_links_relative_to_it(repo: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    pr_report.add_parser(parser.add_subparsers(dest="command"))
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
    pr_report.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--repo", str(repo), "--plots-dir", str(tmp_path),
                              "--format", "png", "--image-url", "https://example.com/pr-1/"])
    args.func(args)
    assert "![Loss](https://example.com/pr-1/loss.png)" in capsys.readouterr().out


def test_no_changes_say_so(repo: Path, tmp_path: Path) -> None:
    sh(repo, "git", "stash", "-q", "-u")  # the workspace back to main, for this test only
    try:
        text = pr_report.build_report("main", repo, plots_dir=tmp_path)
    finally:
        sh(repo, "git", "stash", "pop", "-q")
    assert "No params changed." in text and "No metrics changed." in text
    assert "No plot data changed." in text
    assert list(tmp_path.iterdir()) == []


def test_unknown_base_is_a_user_error(repo: Path) -> None:
    with pytest.raises(UserError, match="--base nope: not a git revision"):
        pr_report.build_report("nope", repo)


def test_pictures_are_not_drawn_as_empty_charts(built: tuple[str, Path]) -> None:
    text, plots = built
    assert "confusion.png" not in text and "samples" not in text
    assert not [p for p in plots.iterdir() if "png" in p.name or "samples" in p.name]


def test_vega_lite_version_follows_the_spec_schema() -> None:
    available = ["5.8", "5.21", "5.14", "6.4"]
    v5 = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json"}
    assert report_plots.vl_version(v5, available) == "5.21"  # numeric, not text, order
    assert report_plots.vl_version({}, available) == "6.4"


def test_a_template_vl_convert_cannot_draw_is_a_user_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "dvc", "init", "-q")
    (repo / ".dvc/plots").mkdir()
    # A custom template DVC fills happily, with a mark Vega-Lite does not know.
    (repo / ".dvc/plots/broken.json").write_text(json.dumps(
        {"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
         "data": {"values": "<DVC_METRIC_DATA>"}, "mark": "no-such-mark",
         "encoding": {"x": {"field": "<DVC_METRIC_X>"}, "y": {"field": "<DVC_METRIC_Y>"}}}))
    (repo / "dvc.yaml").write_text(yaml.safe_dump(
        {"plots": [{"acc.json": {"template": "broken", "x": "step", "y": "acc"}}]}))
    (repo / "acc.json").write_text(json.dumps([{"step": 0, "acc": 0.5}]))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "base")
    (repo / "acc.json").write_text(json.dumps([{"step": 0, "acc": 0.6}]))
    with pytest.raises(UserError, match=r"plot 'acc\.json' of dvc\.yaml: vl-convert cannot draw"):
        pr_report.build_report("main", repo, plots_dir=tmp_path / "plots")

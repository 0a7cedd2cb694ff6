"""imgclf summary: the closing lines of `make repro`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imgclf import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project's dvc.yaml and metrics/eval.json, and an export folder of two files."""
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "metrics").mkdir()
    shutil.copyfile(REPO / "metrics" / "eval.json", tmp_path / "metrics" / "eval.json")
    (tmp_path / "models" / "export" / "savedmodel").mkdir(parents=True)
    (tmp_path / "models" / "export" / "model.onnx").write_bytes(b"")
    return tmp_path


def test_summary_gives_accuracy_places_and_next_commands(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["summary", "--repo", str(project)]) == 0
    out = capsys.readouterr().out
    test = json.loads((project / "metrics" / "eval.json").read_text())["test"]
    first = out.splitlines()[0]
    assert first.startswith(f"Test accuracy {test['accuracy']:.4f} ")
    assert f"on {test['n']} held-out images (metrics/eval.json)" in first
    places = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines()
              if line.startswith("  ") and not line.lstrip().startswith(("imgclf", "dvc"))}
    assert places == {
        "model": "models/model.keras",
        "metrics": "metrics/eval.json, metrics/export.json",
        "plots": "metrics/plots, metrics/gallery/misclassified.png",
        "predictions": "metrics/predictions.csv",
        "exports": "models/export/model.onnx, models/export/savedmodel/",
    }
    for command in ("imgclf predict", "imgclf serve", "dvc exp run -S"):
        assert f"\n  {command}" in out


def test_summary_before_any_run_says_what_to_do(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "metrics" / "eval.json").unlink()
    assert cli.main(["summary", "--repo", str(project)]) == 2
    err = capsys.readouterr().err
    assert err == (f"imgclf summary: error: {project / 'metrics' / 'eval.json'}: not found; "
                   "run dvc repro (or make repro) first\n")

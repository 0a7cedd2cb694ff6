import subprocess
import sys
from pathlib import Path

import pytest

STAGES = ["source", "download", "pretrained", "split", "features", "audit", "train",
          "evaluate", "export", "ood"]


def imgclf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgclf", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_help_lists_every_stage() -> None:
    proc = imgclf("--help")
    assert proc.returncode == 0
    for stage in STAGES:
        assert stage in proc.stdout


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_help(stage: str) -> None:
    proc = imgclf(stage, "--help")
    assert proc.returncode == 0
    assert "--params" in proc.stdout and f"usage: imgclf {stage}" in proc.stdout


def test_user_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  optimiser: sgd\n")
    proc = imgclf("train", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "train.optimiser: unknown key" in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    args = ("split", "--raw", str(tmp_path / "nowhere"))
    plain = imgclf(*args, cwd=tmp_path)
    assert plain.returncode == 2
    prefix = "imgclf split: error: "
    assert plain.stderr.startswith(prefix) and plain.stderr.count("\n") == 1
    message = plain.stderr[len(prefix):].strip()
    assert message.startswith("params.yaml: not found")
    # --debug lets the error escape: Python's status for an uncaught exception, and its
    # traceback, which ends with the same message.
    debug = imgclf("--debug", *args, cwd=tmp_path)
    assert debug.returncode == 1
    lines = debug.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1].endswith(f"Error: {message}")


def test_missing_raw_folder_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    proc = imgclf("split", "--raw", "nowhere", cwd=tmp_path)
    assert proc.returncode == 2
    assert "dvc repro download" in proc.stderr

"""The Makefile as a user meets it: `make help`, and the venv's tools without activating it."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(*args: str, environ: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=120,
                          env=environ or os.environ, check=True)
    return proc.stdout


def test_the_venv_finds_its_own_tools_without_being_activated(tmp_path: Path) -> None:
    """`.venv/bin/dvc repro` starts stage commands (`imgclf ...`) with the PATH it had."""
    env_dir = tmp_path / ".venv"
    venv.create(env_dir, with_pip=False)
    (env_dir / ".installed").touch()  # stands for `make setup`'s install, not tested here
    make(f"VENV={env_dir}", f"{env_dir}/.bin-on-path")
    tool = env_dir / "bin" / "imgclf-probe"
    tool.write_text("#!/bin/sh\necho probe ran\n")
    tool.chmod(0o755)
    bare = {**os.environ, "PATH": "/usr/bin:/bin"}
    bare.pop("VIRTUAL_ENV", None)
    code = "import subprocess; subprocess.run('imgclf-probe', shell=True, check=True)"
    proc = subprocess.run([env_dir / "bin" / "python", "-c", code], env=bare,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "probe ran\n"
    code = "import os; print(os.environ['PATH'])"
    path = subprocess.run([env_dir / "bin" / "python", "-c", code], env=bare,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert path.strip() == f"{env_dir / 'bin'}:/usr/bin:/bin"
    again = {**bare, "PATH": path.strip()}  # a child Python of the venv: no second copy
    path = subprocess.run([env_dir / "bin" / "python", "-c", code], env=again,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert path.strip() == f"{env_dir / 'bin'}:/usr/bin:/bin"


def test_make_repro_ends_with_the_summary() -> None:
    lines = make("-n", "repro", "VENV=/nonexistent/.venv").splitlines()
    assert lines[-1].startswith("/nonexistent/.venv/bin/imgclf summary")


def test_make_help_shows_the_values_of_the_variables_it_names() -> None:
    out = make("help", "SWEEP=train.epochs=1,2")
    assert "$(" not in out
    assert "recipes/from-scratch.yaml" in out  # RECIPE's default
    assert "queue train.epochs=1,2 as DVC experiments" in out
    repro = next(line for line in out.splitlines() if line.split()[:2] == ["make", "repro"])
    for stage in ("pretrained", "export"):
        assert stage in repro


def test_the_outputs_of_plots_and_reports_are_ignored() -> None:
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "dvc_plots/index.html",
                              "report_plots/a.svg"], capture_output=True, text=True).stdout
    assert ignored.split() == ["dvc_plots/index.html", "report_plots/a.svg"]

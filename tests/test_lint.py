"""`make lint` passes on the code, and still after `make repro` has left its wandb/ folder."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUFF = str(Path(sys.executable).parent / "ruff")


def ruff(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUFF, "check", "--no-cache", "."], cwd=cwd, capture_output=True,
                          text=True)


def test_ruff_is_clean() -> None:
    proc = ruff(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_offline_wandb_folder_does_not_make_wandb_first_party(tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(REPO / "src" / "imgclf" / "tracking", tmp_path / "src" / "imgclf" / "tracking")
    # What an offline run leaves behind, code files included (W&B saves the run's code).
    run = tmp_path / "wandb" / "offline-run-20260101_000000-abc" / "files"
    run.mkdir(parents=True)
    (run / "code.py").write_text("import os\nimport sys\n")
    (tmp_path / "wandb" / "__init__.py").write_text("")
    (tmp_path / "src" / "use.py").write_text(
        "import numpy as np\nimport wandb\n\nfrom imgclf import env\n\n"
        "print(np, wandb, env)\n")
    proc = ruff(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


MAX_FUNCTION_LINES = 80


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (N lines)`` of every function under ``root`` longer than ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} "
                                 f"({lines} lines)")
    return found


def test_no_function_in_src_is_over_80_lines() -> None:
    assert long_functions(REPO / "src") == []


def test_the_length_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    assert long_functions(tmp_path) == [f"m.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]

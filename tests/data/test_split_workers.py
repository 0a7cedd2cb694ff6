"""The split's worker processes: pixels go through scratch files, and a broken pool stops
the stage with a message instead of hanging."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import imgclf.data.split as split_stage
from imgclf.data.shards import read_split
from imgclf.params import DataParams, SplitParams

N = 40  # per class: two classes reach split_stage.PARALLEL_MIN_FILES


def test_scratch_files_are_gone_and_shards_are_complete(
        tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    raw = image_folder(tmp_path / "raw", ["a", "b"], N, size=16, seed=11)
    assert 2 * N >= split_stage.PARALLEL_MIN_FILES
    out = tmp_path / "out"
    split_stage.run(DataParams(image_size=16), SplitParams(), raw, out)
    assert not list(out.glob("decoded.*")), "scratch files left in the output"
    n = sum(len(read_split(out, s)[1]) for s in ("train", "val", "test"))
    assert n == 2 * N


def test_script_without_main_guard_fails_with_a_message(
        tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    """Spawned workers re-import the calling script; without an ``if __name__ ==
    "__main__":`` guard each one calls run() again and dies. A multiprocessing Pool
    replaces dead workers forever (a hang); the stage must stop and say why."""
    raw = image_folder(tmp_path / "raw", ["a", "b"], N, size=16, seed=12)
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from imgclf.data.split import run
        from imgclf.params import DataParams, SplitParams
        run(DataParams(image_size=16), SplitParams(), {str(raw)!r}, {str(tmp_path / 'out')!r})
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "__main__" in proc.stderr and "worker processes" in proc.stderr
    assert not (tmp_path / "out").exists()

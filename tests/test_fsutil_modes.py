"""Outputs get the modes the user's umask gives, not mkstemp's private 0600 / 0700;
and ``check_writable`` says in one line, before any work, that an output cannot be written.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgclf import fsutil
from imgclf.errors import UserError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture(params=[0o022, 0o002, 0o077])
def mask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_umask_is_read_without_changing_it(mask: int) -> None:
    assert fsutil.umask() == mask
    assert fsutil.umask() == mask


def test_files_get_the_umask_mode(tmp_path: Path, mask: int) -> None:
    fsutil.write_json(tmp_path / "metrics/eval.json", {"accuracy": 1.0})
    with fsutil.atomic_path(tmp_path / "model.keras") as tmp:
        tmp.write_bytes(b"model")  # written into the temporary file as it is
    assert _mode(tmp_path / "metrics/eval.json") == 0o666 & ~mask
    assert _mode(tmp_path / "model.keras") == 0o666 & ~mask


def test_folders_get_the_umask_mode(tmp_path: Path, mask: int) -> None:
    with fsutil.atomic_dir(tmp_path / "prepared") as tmp:
        (tmp / "meta.json").write_text("{}")
    assert _mode(tmp_path / "prepared") == 0o777 & ~mask


def test_split_output_is_readable_by_others(tmp_path: Path, image_folder) -> None:
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    image_folder(tmp_path / "raw", ["red", "blue"], per_class=10)
    old = os.umask(0o022)
    try:
        split.run(DataParams(image_size=16), SplitParams(train=0.6, val=0.2, test=0.2, seed=1),
                  tmp_path / "raw", tmp_path / "prepared")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "prepared") == 0o755
    assert _mode(tmp_path / "prepared/report.json") == 0o644


def test_check_writable_accepts_a_new_file_and_a_missing_folder(tmp_path: Path) -> None:
    fsutil.check_writable(tmp_path / "out.csv")
    fsutil.check_writable(tmp_path / "new/deeper/out.csv")  # write_text creates them
    assert sorted(tmp_path.iterdir()) == []  # nothing left behind


def test_check_writable_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"--output {tmp_path}: is a folder; name a file"):
        fsutil.check_writable(tmp_path)


def test_check_writable_refuses_a_file_as_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"notes\.txt is not a folder; choose another place"):
        fsutil.check_writable(tmp_path / "notes.txt/out.csv")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_check_writable_refuses_a_folder_it_cannot_write() -> None:
    # /proc refuses new files even to root, for whom a chmod'ed folder is still writable.
    with pytest.raises(UserError, match=r"--out /proc/x/out.csv: cannot write in /proc \("):
        fsutil.check_writable("/proc/x/out.csv", "--out")


def test_write_text_keeps_a_non_utf8_file_name(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: '\udce9' in Python
    fsutil.write_text(tmp_path / "out.csv", f"path\n{name}\n")
    assert (tmp_path / "out.csv").read_bytes() == b"path\ncaf\xe9.jpg\n"


def test_atomic_dir_removes_what_a_killed_run_left_and_keeps_a_live_writers(
        tmp_path: Path) -> None:
    import subprocess

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / "raw"
    stale = tmp_path / f".raw.{dead}.abc.tmp"
    (stale / "cats").mkdir(parents=True)
    (stale / "cats" / "1.jpg").write_bytes(b"half a copy")
    live = tmp_path / f".raw.{os.getpid()}.def.tmp"
    live.mkdir()
    other = tmp_path / f".rawer.{dead}.ghi.tmp"  # another output's: not this one's to clean
    other.mkdir()
    with fsutil.atomic_dir(out) as tmp:
        (tmp / "ok").write_text("done")
    assert not stale.exists() and live.is_dir() and other.is_dir()
    assert (out / "ok").read_text() == "done"

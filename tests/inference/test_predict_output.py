"""``imgclf predict``'s output: checked before the work, and file names that are not UTF-8.

Real files throughout: images whose names hold bytes that are not UTF-8 (made with
``os.fsencode``), read-only and misnamed output places, and one run of the command in a
subprocess whose stdout encodes strictly, as a UTF-8 terminal's does. The model is the
session's ``tiny_model`` (16 px, classes blue, green, red).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf import cli

RED, GREEN = (200, 40, 40), (40, 200, 40)
CAFE = b"caf\xe9.png"  # Latin-1, not UTF-8
BAD = b"bad\xff.jpg"


def save(path: bytes, colour: tuple[int, int, int]) -> None:
    pixels = np.clip(np.array(colour, np.int16) + np.random.default_rng(0).integers(
        -40, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
    with open(path, "wb") as f:
        Image.fromarray(pixels).save(f, format="PNG")


@pytest.fixture
def odd_names(tmp_path: Path) -> Path:
    """photos/{caf\\xe9.png (red), ok.png (green), bad\\xff.jpg (not an image)}."""
    root = tmp_path / "photos"
    root.mkdir()
    folder = os.fsencode(root) + b"/"
    try:
        save(folder + CAFE, RED)
    except OSError as exc:  # e.g. macOS's APFS refuses names that are not UTF-8
        pytest.skip(f"this filesystem refuses names that are not UTF-8: {exc}")
    save(folder + b"ok.png", GREEN)
    with open(folder + BAD, "wb") as f:
        f.write(b"not an image")
    return root


def strict_stdout(monkeypatch: pytest.MonkeyPatch) -> io.TextIOWrapper:
    """sys.stdout as a UTF-8 terminal's: a strict encoder over bytes."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", out)
    return out


def bytes_of(out: io.TextIOWrapper) -> bytes:
    out.flush()
    return out.buffer.getvalue()  # type: ignore[attr-defined]


def test_table_and_error_lines_show_the_bytes_of_names_that_are_not_utf8(
        odd_names: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = strict_stdout(monkeypatch)
    assert cli.main(["predict", str(odd_names), "--model", str(tiny_model)]) == 1
    lines = bytes_of(out).decode("ascii").splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [
        [f"{odd_names}/caf\\xe9.png", "red"], [f"{odd_names}/ok.png", "green"]]
    assert capsys.readouterr().err.splitlines() == [
        f"imgclf predict: {odd_names}/bad\\xff.jpg: not an image Pillow can read"]


def test_csv_keeps_each_names_own_bytes_on_stdout_and_in_a_file(
        odd_names: Path, tiny_model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = strict_stdout(monkeypatch)
    args = ["predict", str(odd_names), "--model", str(tiny_model), "--format", "csv"]
    assert cli.main(args) == 1
    to_file = tmp_path / "out.csv"
    assert cli.main([*args, "--output", str(to_file)]) == 1
    for data in bytes_of(out), to_file.read_bytes():
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8", "surrogateescape"))))
        folder = os.fsencode(odd_names) + b"/"
        assert [os.fsencode(r["path"]) for r in rows] == [folder + BAD, folder + CAFE,
                                                           folder + b"ok.png"]
        assert [r["predicted"] for r in rows] == ["", "red", "green"]
        assert rows[0]["error"] == "not an image Pillow can read"


def test_json_escapes_the_bytes_so_the_path_reads_back(
        odd_names: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = strict_stdout(monkeypatch)
    assert cli.main(["predict", str(odd_names / os.fsdecode(CAFE)), "--model",
                     str(tiny_model), "--format", "json"]) == 0
    text = bytes_of(out).decode("ascii")
    [item] = json.loads(text)
    assert os.fsencode(item["path"]) == os.fsencode(odd_names) + b"/" + CAFE
    assert item["predicted"] == "red"


def test_a_utf8_terminal_gets_every_format_without_a_traceback(
        odd_names: Path, tiny_model: Path) -> None:
    """The command itself, its stdout a pipe encoded strictly (PYTHONIOENCODING=utf-8)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = ("import sys; from imgclf import cli\n"
              "for fmt in ('table', 'csv', 'json'):\n"
              "    print(f'== {fmt}', flush=True)\n"
              f"    cli.main(['predict', {str(odd_names)!r}, '--model', {str(tiny_model)!r},"
              " '--format', fmt])\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in done.stderr
    table, csv_text, json_text = done.stdout.split(b"== ")[1:]
    assert b"caf\\xe9.png  red" in table
    assert b"/" + CAFE + b",red," in csv_text
    assert b"caf\\udce9.png" in json_text
    assert done.stderr.count(b"bad\\xff.jpg: not an image Pillow can read") == 1  # table's


# --- the output place, checked before the model is loaded ------------------------------------


def output_places(tmp_path: Path) -> dict[str, Path]:
    """Places ``--output`` cannot write, as far as this machine allows each."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("a file, not a folder")
    places = {"a folder": tmp_path / "folder",
              "beneath a file": tmp_path / "file.txt" / "out.csv"}
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if refuses(read_only):  # root may write in it anyway
        places["in a read-only folder"] = read_only / "out.csv"
    if refuses(Path("/sys")):  # Linux's, even to root
        places["in a folder even root cannot write"] = Path("/sys/out.csv")
    return places


def refuses(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


def test_an_output_that_cannot_be_written_fails_at_once_with_one_line(
        odd_names: Path, tiny_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    places = output_places(tmp_path)
    assert len(places) >= 3  # where root runs it, /sys still refuses
    for why, place in places.items():
        code = cli.main(["predict", str(odd_names / "ok.png"), "--model", str(tiny_model),
                         "--output", str(place)])
        out, err = capsys.readouterr()
        assert (code, out) == (2, ""), why
        assert err.count("\n") == 1 and err.startswith(f"imgclf predict: error: --output "
                                                       f"{place}: "), (why, err)
        assert "predicted" not in err, why
    # Before the model: a missing model file is not even looked at.
    assert cli.main(["predict", str(odd_names / "ok.png"), "--model",
                     str(tmp_path / "none.keras"), "--output", str(tmp_path / "folder")]) == 2
    assert "--output" in capsys.readouterr().err
    read_only = tmp_path / "read-only"
    assert sorted(p.name for p in read_only.iterdir()) == []  # the check left nothing
    read_only.chmod(0o755)


def test_missing_output_folders_are_made(odd_names: Path, tiny_model: Path,
                                         tmp_path: Path) -> None:
    place = tmp_path / "new" / "deeper" / "out.json"
    assert cli.main(["predict", str(odd_names / "ok.png"), "--model", str(tiny_model),
                     "--format", "json", "--output", str(place)]) == 0
    assert [item["predicted"] for item in json.loads(place.read_text())] == ["green"]
    mode = place.stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # the user's umask, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

"""``imgclf predict`` on entries that only look like image files: a FIFO, a link to a
device, a huge sparse file. Each is its own one-line error; the other files are predicted.

Before ``load_image`` checked what it opens, the FIFO hung predict forever, the link to
``/dev/zero`` raised ``MemoryError`` and the sparse file was read whole (2 GB of RSS).
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf import cli
from imgclf.data.images import (
    MAX_IMAGE_MB_ENV,
    ImageError,
    load_image,
    max_image_bytes,
    read_image_file,
)

SIZE = 16
unix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero")


def _red(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(-40, 40, (24, 24, 3))
    Image.fromarray(np.clip(noise + np.array((200, 40, 40)), 0, 255).astype(np.uint8)).save(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # no blocks written: instant, and takes no disk
    return path


@unix_only
@pytest.mark.timeout(20)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"cannot read \(a FIFO \(named pipe\), not a regular"):
        load_image(fifo, SIZE)


@unix_only
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_link_to_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="a character device, not a regular file"):
        load_image(link, SIZE)


def test_huge_sparse_file_is_refused_from_its_size(tmp_path: Path) -> None:
    big = _sparse(tmp_path / "big.jpg", 2 * 1024**3)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="larger than the 256 MB allowed; set "
                           f"{MAX_IMAGE_MB_ENV}"):
            load_image(big, SIZE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024**2  # nothing of it was read


def test_the_cap_can_be_raised_and_lowered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    red = _red(tmp_path / "red.png")
    monkeypatch.setenv(MAX_IMAGE_MB_ENV, "0.0001")  # ~100 bytes; the noisy PNG has ~1.7 KB
    with pytest.raises(ImageError, match="larger than the 104 bytes allowed"):
        load_image(red, SIZE)
    monkeypatch.setenv(MAX_IMAGE_MB_ENV, "1")
    assert load_image(red, SIZE).shape == (SIZE, SIZE, 3)
    assert max_image_bytes({MAX_IMAGE_MB_ENV: " "}) == 256 * 1024**2  # blank is unset
    assert max_image_bytes({MAX_IMAGE_MB_ENV: "512"}) == 512 * 1024**2


@pytest.mark.parametrize("value", ["lots", "0", "-3", "nan"])
def test_a_bad_cap_names_the_variable(value: str) -> None:
    with pytest.raises(ImageError, match=f"{MAX_IMAGE_MB_ENV}={value}: give a positive"):
        max_image_bytes({MAX_IMAGE_MB_ENV: value})


def test_a_file_that_grows_past_the_cap_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(b"x" * 101)
    with pytest.raises(ImageError, match="larger than"):
        read_image_file(path, limit=100)
    assert read_image_file(path, limit=101) == b"x" * 101


@unix_only
@pytest.mark.timeout(120)
def test_predict_reports_each_as_its_own_error(tmp_path: Path, tiny_model: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _red(photos / "a_red.png")
    os.mkfifo(photos / "fifo.jpg")
    (photos / "zero.jpg").symlink_to("/dev/zero")
    _sparse(photos / "sparse.jpg", 2 * 1024**3)
    code = cli.main(["predict", str(photos), "--model", str(tiny_model)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "a_red.png" in out and "red" in out.split("a_red.png", 1)[1]
    lines = [line for line in err.splitlines() if line.startswith("imgclf predict: ")]
    assert lines == [
        f"imgclf predict: {photos / 'fifo.jpg'}: cannot read (a FIFO (named pipe), not a "
        "regular file)",
        f"imgclf predict: {photos / 'sparse.jpg'}: larger than the 256 MB allowed; set "
        f"{MAX_IMAGE_MB_ENV} to read bigger files",
        f"imgclf predict: {photos / 'zero.jpg'}: cannot read (a character device, not a "
        "regular file)",
    ]
    assert "Traceback" not in err and "MemoryError" not in err

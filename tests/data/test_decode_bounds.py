"""Small files that decode into gigabytes: 16-bit, 32-bit and float images are converted
without float64 copies, and every other image decodes to the very same pixels as before.

``PREVIOUS`` is the commit before the change; its ``imgclf/data/images.py`` is read from
git and run side by side with today's on a set of awkward files.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from imgclf.data import images
from imgclf.data.images import decode_image, decode_image_details

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = "078d15a"  # the last commit with the float64 conversion
SIZE = 64


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The ``imgclf.data.images`` module as of ``PREVIOUS``."""
    if shutil.which("git") is None:
        pytest.skip("needs git to read the previous implementation")
    proc = subprocess.run(["git", "show", f"{PREVIOUS}:src/imgclf/data/images.py"], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"commit {PREVIOUS} is not in this checkout: {proc.stderr.strip()}")
    path = tmp_path_factory.mktemp("previous") / "previous_images.py"
    path.write_text(proc.stdout, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("previous_images", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _exif_rotated_jpeg() -> bytes:
    im = Image.fromarray(_noise((50, 90, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90
    return _encode(im, "JPEG", exif=exif, quality=90)


def _palette_with_transparency() -> bytes:
    im = Image.fromarray(_noise((40, 70, 3), 1)).convert("P", palette=Image.Palette.ADAPTIVE)
    return _encode(im, "PNG", transparency=3)


def _ramp16(width: int, height: int, top: int = 65535) -> np.ndarray:
    """A 16-bit ramp with noise: every value from 0 to ``top`` occurs in bands."""
    ramp = np.linspace(0, top, width)[None, :] * np.linspace(0.2, 1, height)[:, None]
    return ramp.astype(np.uint16)


EIGHT_BIT = {
    "rgb jpeg": lambda: _encode(Image.fromarray(_noise((60, 80, 3))), "JPEG", quality=92),
    "exif-rotated jpeg": _exif_rotated_jpeg,
    "large jpeg (draft)": lambda: _encode(Image.fromarray(_noise((900, 700, 3), 2)), "JPEG"),
    "cmyk jpeg": lambda: _encode(Image.fromarray(_noise((50, 60, 3), 3)).convert("CMYK"),
                                 "JPEG"),
    "rgb png": lambda: _encode(Image.fromarray(_noise((33, 77, 3), 4)), "PNG"),
    "L png": lambda: _encode(Image.fromarray(_noise((45, 30), 5)), "PNG"),
    "L png with transparency": lambda: _encode(Image.fromarray(_noise((45, 30), 6)), "PNG",
                                               transparency=7),
    "LA png": lambda: _encode(Image.fromarray(_noise((40, 40, 2), 7), "LA"), "PNG"),
    "RGBA png": lambda: _encode(Image.fromarray(_noise((40, 50, 4), 8), "RGBA"), "PNG"),
    "P png with transparency": _palette_with_transparency,
    "1-bit png": lambda: _encode(Image.fromarray(_noise((30, 30), 9) > 127), "PNG"),
    "gif": lambda: _encode(Image.fromarray(_noise((30, 40, 3), 10)), "GIF"),
}
WIDE = {
    "I;16 png": lambda: _encode(Image.fromarray(_ramp16(300, 200)), "PNG"),
    "I;16 png below 256": lambda: _encode(Image.fromarray(_ramp16(50, 40, top=200)), "PNG"),
    "I;16 tiff": lambda: _encode(Image.fromarray(_ramp16(120, 90, top=4000)), "TIFF"),
    "I tiff (32-bit, negatives)": lambda: _encode(Image.fromarray(
        _ramp16(80, 60).astype(np.int32) * 3 - 20000), "TIFF"),
    "F tiff": lambda: _encode(Image.fromarray(
        np.linspace(-3.5, 11.25, 70 * 50, dtype=np.float32).reshape(50, 70)), "TIFF"),
    "F tiff, NaN in the last rows": lambda: _encode(Image.fromarray(np.where(
        np.arange(60 * 40).reshape(60, 40) == 60 * 40 - 5, np.nan,
        np.linspace(0, 1, 60 * 40).reshape(60, 40)).astype(np.float32)), "TIFF"),
    "F tiff, flat": lambda: _encode(Image.fromarray(np.full((20, 30), 2.5, np.float32)),
                                    "TIFF"),
}


@pytest.mark.parametrize("name", sorted(EIGHT_BIT))
def test_8_bit_images_decode_byte_identical(name: str, previous: ModuleType) -> None:
    data = EIGHT_BIT[name]()
    old_pixels, old_hash, old_shown = previous.decode_image_details(data, SIZE)
    pixels, near_hash, shown = decode_image_details(data, SIZE)
    assert pixels.tobytes() == old_pixels.tobytes()
    assert (near_hash, shown) == (old_hash, old_shown)


@pytest.mark.parametrize("name", sorted(WIDE))
def test_wide_images_decode_as_before(name: str, previous: ModuleType) -> None:
    """Float images are identical; integer ones differ by at most 1 where the old float
    product ``v * (255 / max)`` fell just below a whole number (now ``v * 255 // max``)."""
    data = WIDE[name]()
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode in images.WIDE_MODES
        mode = im.mode
    old = previous.decode_image(data, SIZE).astype(int)
    new = decode_image(data, SIZE).astype(int)
    if mode == "F":
        assert np.array_equal(new, old)
    else:
        assert np.abs(new - old).max() <= 1
        assert (new == old).mean() > 0.95
    assert np.array_equal(new[..., 0], new[..., 2])  # still gray


@pytest.mark.timeout(300)
def test_16_bit_8000x7999_png_is_decoded_without_a_float64_copy() -> None:
    """The reported file: 8000x7999 16-bit gray, ~124 KB of PNG, under MAX_PIXELS.
    The old conversion allocated several float64 copies (8 bytes a pixel each)."""
    width, height = 8000, 7999
    a = np.zeros((height, width), np.uint16)
    a[:, width // 2:] = 40000  # two halves: compresses to almost nothing
    data = _encode(Image.fromarray(a), "PNG", compress_level=9)
    del a
    assert len(data) < 1024 * 1024
    assert width * height <= images.MAX_PIXELS
    tracemalloc.start()
    start = time.perf_counter()
    try:
        pixels = decode_image(data, SIZE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    # Its samples (2 bytes a pixel) and the 8-bit result (1): no 8-byte copy.
    assert peak < width * height * 4, f"peak {peak / 2**20:.0f} MB"
    assert pixels.shape == (SIZE, SIZE, 3)
    left, right = pixels[:, :SIZE // 2 - 2, 0], pixels[:, SIZE // 2 + 2:, 0]
    assert (left == 0).all() and (right == 255).all()  # predicted, not refused
    print(f"16-bit 8000x7999: tracemalloc peak {peak / 2**20:.0f} MB, {seconds:.2f} s",
          file=sys.stderr)


def test_wide_conversion_works_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few rows give the same pixels as one block for the whole image."""
    data = WIDE["I;16 png"]()
    whole = decode_image(data, SIZE)
    monkeypatch.setattr(images, "BLOCK_PIXELS", 300 * 7)  # 7 rows at a time, last one short
    assert np.array_equal(decode_image(data, SIZE), whole)


def test_a_nan_in_a_later_block_still_makes_the_float_image_black(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = WIDE["F tiff, NaN in the last rows"]()
    monkeypatch.setattr(images, "BLOCK_PIXELS", 40 * 4)
    assert not decode_image(data, SIZE).any()

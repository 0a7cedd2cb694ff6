"""The split stage's worker: decode one file, write its encoded pixels to a scratch file.

Kept apart from :mod:`imgclf.data.split` so that the worker processes, which import
this module, start with only NumPy, Pillow and :mod:`imgclf.data.images` to load.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.data.images import ImageError, decode_image_details

# Side of the grayscale thumbnail that confirms a near-duplicate pair (see
# imgclf.data.duplicates.duplicate_groups): 4x the detail of the 8x9 dHash, and only
# 256 bytes an image to keep until the split is done.
THUMB_SIDE = 16

# Each worker process appends the images it decodes and re-encodes (``split.encoding``)
# to a scratch file of its own and sends back only hashes and offsets: piping ~150 KB
# of pixels per image back to the parent cost more than the decoding itself.
# Unbuffered writes, so nothing is lost when the pool shuts its workers down.
_scratch_fds: dict[str, int] = {}


def _scratch_fd(folder: str) -> tuple[int, str]:
    """This process's scratch file in ``folder``: its descriptor and name."""
    name = f"decoded.{os.getpid()}.tmp"
    if folder not in _scratch_fds:
        _scratch_fds[folder] = os.open(Path(folder) / name,
                                       os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return _scratch_fds[folder], name


def close_scratch(folder: str) -> None:
    """Close this process's scratch file in ``folder`` (the serial path's, in the parent)."""
    fd = _scratch_fds.pop(folder, None)
    if fd is not None:
        os.close(fd)


@dataclass(frozen=True, slots=True)  # slots: one per image, kept until the split is done
class Decoded:
    """One usable image: its hashes, original size, and where its encoded pixels were
    written."""

    sha256: str
    dhash: int
    size: tuple[int, int]  # original (width, height), EXIF rotation applied
    scratch: str  # scratch file name, in the output folder
    offset: int
    length: int  # bytes of the encoded image at offset
    thumb: bytes  # THUMB_SIDE x THUMB_SIDE grayscale pixels, row by row
    warnings: tuple[str, ...]  # what the image library warned about while decoding


def gray_thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """The ``(side, side)`` uint8 grayscale thumbnail of ``(H, W, 3)`` uint8 ``pixels``:
    each thumbnail pixel is the mean of its block."""
    height, width = pixels.shape[:2]
    im = Image.frombuffer("RGB", (width, height), np.ascontiguousarray(pixels), "raw", "RGB", 0, 1)
    # reduce (whole blocks, in C) is the cheap part; a box resize takes what is left.
    im = im.reduce(max(1, min(im.size) // side))
    if im.size != (side, side):
        im = im.resize((side, side), Image.Resampling.BOX)
    return np.frombuffer(im.convert("L").tobytes(), np.uint8).reshape(side, side)


def encode_pixels(pixels: np.ndarray, encoding: str, quality: int) -> bytes:
    """The ``(S, S, 3)`` uint8 ``pixels`` as ``encoding`` (jpeg at ``quality``, png, or
    raw: the array's bytes). Same pixels, same bytes: Pillow writes no timestamps."""
    if encoding == "raw":
        return np.ascontiguousarray(pixels, np.uint8).tobytes()
    out = io.BytesIO()
    if encoding == "jpeg":
        Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    else:
        Image.fromarray(pixels).save(out, "PNG", compress_level=6)
    return out.getvalue()


def decode_file(job: tuple[str, int, str, str, int]) -> Decoded | str:
    """Worker: decode one file, encode its resized pixels as ``job[3]`` (quality
    ``job[4]``) and append them to this process's scratch file in the folder ``job[2]``;
    return a ``Decoded``, or the reason the file is unusable.

    Warnings of the image library (e.g. Pillow's "Corrupt EXIF data") are returned in
    ``Decoded.warnings`` for the report, or appended to the reason, not printed.
    """
    path, size, folder, encoding, quality = job
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = Path(path).read_bytes()
            # The bytes just read are hashed and decoded: each file is read once.
            pixels, near_hash, shown = decode_image_details(data, size)
        except (ImageError, OSError) as exc:
            said = sorted({str(w.message) for w in caught})
            return str(exc) + "".join(f"; warning: {m}" for m in said)
    said = tuple(sorted({str(w.message) for w in caught}))
    fd, name = _scratch_fd(folder)
    offset = os.lseek(fd, 0, os.SEEK_END)
    encoded = encode_pixels(pixels, encoding, quality)
    view = memoryview(encoded)
    while view:
        view = view[os.write(fd, view):]
    return Decoded(hashlib.sha256(data).hexdigest(), near_hash, shown, name, offset,
                   len(encoded), gray_thumbnail(pixels).tobytes(), said)

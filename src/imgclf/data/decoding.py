"""The split stage's worker: decode one file, write what the shards keep of it to a
scratch file.

With ``split.encoding: source`` (the default) the shards keep the file's own bytes,
metadata stripped (:mod:`imgclf.data.stripping`), when it is a JPEG or PNG whose sides
are at most ``KEEP_MAX_SCALE`` times the image size; any other file is stored as the
lossless PNG of ``load_image``'s pixels. Either way a record decodes, with
``decode_image``, to exactly the pixels ``load_image`` gives for the file, through at
most one lossy step (the source's own). ``jpeg``, ``png`` and ``raw`` store the
resized pixels encoded so (``jpeg`` adds a second lossy step).

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

from imgclf.data.images import ImageError, ImageInfo, decode_image, decode_image_info
from imgclf.data.stripping import strip_metadata

# Side of the grayscale thumbnail that confirms a near-duplicate pair (see
# imgclf.data.duplicates.duplicate_groups): 4x the detail of the 8x9 dHash, and only
# 256 bytes an image to keep until the split is done.
THUMB_SIDE = 16
# split.encoding source keeps a JPEG's or PNG's own bytes up to this many times the
# image size a side (so at most 4x its pixels): up to there its bytes are below those
# of the lossless PNG of the resized pixels (a photo's JPEG takes ~1.6 bits a pixel, a
# lossless PNG of the resized photo ~14), and decoding it at read time costs at most a
# few times the resized image's (JPEG from 2x decodes at half scale, Pillow's draft).
# Beyond it, the PNG of the resized pixels is the smaller and the faster to read.
KEEP_MAX_SCALE = 2
KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}  # Pillow's format name -> image/format

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
    stored: str  # its image/format: jpeg, png or raw
    dims: tuple[int, int]  # its (width, height) as stored (the source's, when kept)
    kept: bool  # the source's own bytes (metadata stripped), not pixels encoded here
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


def stored_bytes(data: bytes, info: ImageInfo, size: int, encoding: str,
                 quality: int) -> tuple[bytes, str, tuple[int, int], bool]:
    """What the shards keep of the file ``data`` decoded as ``info``: ``(bytes,
    image/format, (width, height) as stored, the source's own bytes)``.

    ``source``: the stripped source bytes when the file is a JPEG or PNG of at most
    ``KEEP_MAX_SCALE`` x ``size`` a side and they decode to ``info.pixels`` exactly
    (checked when stripping changed anything), else the pixels as PNG.
    """
    if encoding == "source":
        kind = KEPT_FORMATS.get(info.format)
        if kind and max(info.stored) <= KEEP_MAX_SCALE * size:
            kept = strip_metadata(data, info.format, info.orientation)
            if kept is not None and (kept == data or _same_pixels(kept, info.pixels, size)):
                return kept, kind, info.stored, True
        encoding = "png"
    return encode_pixels(info.pixels, encoding, quality), encoding, (size, size), False


def _same_pixels(data: bytes, pixels: np.ndarray, size: int) -> bool:
    try:
        return np.array_equal(decode_image(data, size), pixels)
    except ImageError:
        return False


def decode_file(job: tuple[str, int, str, str, int]) -> Decoded | str:
    """Worker: decode one file, append what the shards keep of it (``stored_bytes`` by
    encoding ``job[3]``, quality ``job[4]``) to this process's scratch file in the folder
    ``job[2]``; return a ``Decoded``, or the reason the file is unusable.

    Warnings of the image library (e.g. Pillow's "Corrupt EXIF data") are returned in
    ``Decoded.warnings`` for the report, or appended to the reason, not printed.
    """
    path, size, folder, encoding, quality = job
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = Path(path).read_bytes()
            # The bytes just read are hashed and decoded: each file is read once.
            info = decode_image_info(data, size)
        except (ImageError, OSError) as exc:
            said = sorted({str(w.message) for w in caught})
            return str(exc) + "".join(f"; warning: {m}" for m in said)
        # (the check of stripped bytes decodes them again: its warnings are the file's)
        encoded, stored, dims, kept = stored_bytes(data, info, size, encoding, quality)
    said = tuple(sorted({str(w.message) for w in caught}))
    fd, name = _scratch_fd(folder)
    offset = os.lseek(fd, 0, os.SEEK_END)
    view = memoryview(encoded)
    while view:
        view = view[os.write(fd, view):]
    return Decoded(hashlib.sha256(data).hexdigest(), info.dhash, info.shown, name, offset,
                   len(encoded), stored, dims, kept, gray_thumbnail(info.pixels).tobytes(),
                   said)

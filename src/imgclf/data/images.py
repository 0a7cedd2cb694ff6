"""Decode one image file into the RGB pixel array every stage uses.

Split, evaluate and predict all go through ``load_image`` so the model always sees
pixels prepared the same way: EXIF orientation applied, any colour mode converted
to 8-bit RGB (transparency composited on white), then resized to a square.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# A header claiming more pixels than this is refused before decoding: a 3-byte-per-
# pixel decode of it would take gigabytes (a "decompression bomb").
MAX_PIXELS = 64_000_000
# load_image reads at most this many MB of a file, unless $IMGCLF_MAX_IMAGE_MB says
# otherwise: generous, since split accepts large TIFFs, but a sparse 2 GB ``.jpg`` is
# refused from its size instead of read into memory.
MAX_IMAGE_MB = 256
MAX_IMAGE_MB_ENV = "IMGCLF_MAX_IMAGE_MB"
# What fstat calls the files load_image refuses to read, for the one-line reason.
_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


class ImageError(ValueError):
    """The file is not a usable image; the message is the reason, for reports."""


# Modes of more than 8 bits a sample, turned into 8-bit gray by scaling (see _wide_to_l).
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
# _wide_to_l converts this many pixels at a time: the int64 / float64 arithmetic of one
# block takes 8 MB, whatever the image's size.
BLOCK_PIXELS = 1 << 20


def _row_blocks(im: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, samples)`` of ``im`` in blocks of about ``BLOCK_PIXELS``.

    Cropped one block at a time: ``np.asarray`` of the whole image would hold its bytes
    twice over (Pillow's ``tobytes`` joins chunks) beside the decoded image itself.
    """
    width, height = im.size
    rows = max(1, BLOCK_PIXELS // max(1, width))
    for r in range(0, height, rows):
        yield r, np.asarray(im.crop((0, r, width, min(height, r + rows))))


def _wide_to_l(im: Image.Image) -> Image.Image:
    """A 16/32-bit or float image to 8-bit gray ("L"), a block of rows at a time.

    Integers (16-bit, and 32-bit "I"): the actual range is scaled to 0..255 when the
    maximum is above 255 (``v * 255 // max``, negatives to 0), else clipped; floats
    ("F"): ``min..max`` is stretched to 0..255 (NaN or flat: black). No copy of the
    image wider than its 8-bit result is made: an 8000x8000 16-bit PNG of 124 KB used
    to take 1.3 GB here (float64 copies), now its decoded 128 MB plus the 64 MB result.
    """
    out = np.zeros((im.size[1], im.size[0]), np.uint8)
    if not out.size:
        return Image.fromarray(out, "L")
    # np.min / np.max, not Python's: a NaN in any block must come through.
    ends = np.array([(block.min(), block.max()) for _, block in _row_blocks(im)], np.float64)
    lo, hi = float(ends[:, 0].min()), float(ends[:, 1].max())
    if im.mode == "F":
        if hi > lo:  # (with a NaN among them, neither is greater)
            for r, block in _row_blocks(im):
                # float64 arithmetic as before, on a block: the very same pixels.
                scaled = (block.astype(np.float64) - lo) * (255.0 / (hi - lo))
                out[r:r + len(block)] = scaled.astype(np.uint8)
        return Image.fromarray(out, "L")
    top = int(hi)
    for r, block in _row_blocks(im):
        values = np.clip(block, 0, None).astype(np.int64)
        out[r:r + len(block)] = values * 255 // top if top > 255 else np.minimum(values, 255)
    return Image.fromarray(out, "L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any 8-bit Pillow mode to 8-bit RGB, compositing transparency onto white."""
    if im.mode == "P" or (im.mode in ("RGB", "L") and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def _resized_rgb(im: Image.Image, size: int) -> Image.Image:
    """``im`` as the ``size`` x ``size`` 8-bit RGB picture the model sees.

    Wide modes are resized as gray and only then made RGB: the three channels are copies,
    so the result is the same as converting first, without an RGB copy at full size.
    """
    if im.mode in WIDE_MODES:
        return _wide_to_l(im).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
    return _to_rgb(im).resize((size, size), Image.Resampling.BILINEAR)


def max_image_bytes(environ: dict[str, str] | None = None) -> int:
    """The most bytes ``load_image`` reads: ``$IMGCLF_MAX_IMAGE_MB`` MB, else ``MAX_IMAGE_MB``.

    Read with ``os.environ`` (empty is unset, as ``imgclf.env.get`` does), so the split
    workers importing this module load nothing more.
    """
    value = (os.environ if environ is None else environ).get(MAX_IMAGE_MB_ENV, "").strip()
    if not value:
        return MAX_IMAGE_MB * 1024 * 1024
    try:
        mb = float(value)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise ImageError(f"{MAX_IMAGE_MB_ENV}={value}: give a positive number of MB "
                         f"(default {MAX_IMAGE_MB}) or unset it")
    return int(mb * 1024 * 1024)


def read_image_file(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` (``max_image_bytes()``).

    Opened without blocking and checked with fstat before any read, so a FIFO never
    hangs the caller, and a device (a link to ``/dev/zero``) or an oversized file is an
    ``ImageError`` naming what it is instead of filling the memory.
    """
    limit = max_image_bytes() if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ImageError(f"cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = next((name for test, name in _NOT_REGULAR if test(info.st_mode)),
                        "not a file")
            raise ImageError(f"cannot read ({what}, not a regular file)")
        if info.st_size > limit:
            raise ImageError(_too_large(limit))
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)  # +1: a file that grew past the limit is still caught
    except OSError as exc:
        raise ImageError(f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(_too_large(limit))
    return data


def _too_large(limit: int) -> str:
    shown = f"{limit / 1024 / 1024:g} MB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
    return f"larger than the {shown} allowed; set {MAX_IMAGE_MB_ENV} to read bigger files"


def load_image(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Return the image file at ``path`` as a ``(size, size, 3)`` uint8 array (see decode_image).

    Only regular files are read, and at most ``max_image_bytes()`` of them
    (``$IMGCLF_MAX_IMAGE_MB``); anything else is an ``ImageError`` with the reason.
    """
    return decode_image(read_image_file(path), size)


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Return the encoded image ``data`` as a ``(size, size, 3)`` uint8 array.

    Raises ``ImageError`` with a short reason (for the split report or predict's
    output) when the bytes are empty, truncated, not an image, or too large.
    """
    return np.asarray(_decode(data, size).image, dtype=np.uint8)


def decode_image_details(data: bytes, size: int) -> tuple[np.ndarray, int, tuple[int, int]]:
    """``(pixels, dhash, (width, height))`` of ``data``: the pixels of ``decode_image``,
    their ``dhash``, and the original size as shown (EXIF rotation applied).

    One decode for all three: the split needs them for every file.
    """
    info = decode_image_info(data, size)
    return info.pixels, info.dhash, info.shown


class ImageInfo(NamedTuple):
    """What one decode of a file tells the split stage (``decode_image_info``)."""

    pixels: np.ndarray  # (size, size, 3) uint8: decode_image's result
    dhash: int  # of the pixels
    shown: tuple[int, int]  # original (width, height), EXIF rotation applied
    stored: tuple[int, int]  # original (width, height) as stored, before any rotation
    format: str  # Pillow's name of the file's format: "JPEG", "PNG", "WEBP", ...
    orientation: int  # the EXIF orientation decode_image applied, 2..8; 1: none


def decode_image_info(data: bytes, size: int) -> ImageInfo:
    """``decode_image`` of ``data``, with what the split needs to keep the file's own bytes
    instead of the pixels (see ``imgclf.data.stripping``)."""
    opened = _decode(data, size)
    return ImageInfo(np.asarray(opened.image, dtype=np.uint8), _dhash(opened.image),
                     opened.shown, opened.stored, opened.format, opened.orientation)


class _Opened(NamedTuple):
    image: Image.Image  # the size x size RGB picture
    shown: tuple[int, int]
    stored: tuple[int, int]
    format: str
    orientation: int


def _upright(im: Image.Image) -> tuple[Image.Image, int]:
    """``im`` turned as its EXIF orientation says, or ``im`` itself when it says nothing to
    do: ``ImageOps.exif_transpose`` returns a copy then, a second full-size image (128 MB
    of the 16-bit PNG in docs/performance.md's serve-limits row); with the orientation
    applied (2..8), or 1 for none."""
    im.load()  # as exif_transpose does: some formats carry EXIF after the pixels
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in range(2, 9):
        return ImageOps.exif_transpose(im), int(orientation)
    return im, 1


def _decode(data: bytes, size: int) -> _Opened:
    """The ``size`` x ``size`` RGB picture of ``data``, its original (width, height) as
    shown and as stored, its format and the orientation applied; see ``decode_image``."""
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{width}x{height} pixels is more than the {MAX_PIXELS:,} allowed")
                try:
                    orientation = im.getexif().get(ExifTags.Base.Orientation)
                except Exception:  # a broken EXIF block: exif_transpose ignores it too
                    orientation = None
                shown = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
                im.seek(0)  # the first frame of animations
                # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: much faster, and the
                # result is still at least ``size`` pixels a side.
                im.draft("RGB", (size, size))
                turned, applied = _upright(im)
                return _Opened(_resized_rgb(turned, size), shown, (width, height),
                               str(im.format), applied)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot decode ({exc})") from None


def dhash(pixels: np.ndarray) -> int:
    """A 64-bit difference hash of an ``(H, W, 3)`` uint8 image.

    Re-encoded or slightly edited copies of a photo share it, so the split can keep
    near-duplicates on one side (the animals set has such a pair).
    """
    return _dhash(Image.fromarray(pixels))


def _dhash(im: Image.Image) -> int:
    gray = im.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    a = np.asarray(gray, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")

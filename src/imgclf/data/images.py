"""Decode one image file into the RGB pixel array every stage uses.

Split, evaluate and predict all go through ``load_image`` so the model always sees
pixels prepared the same way: EXIF orientation applied, any colour mode converted
to 8-bit RGB (transparency composited on white), then resized to a square.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# A header claiming more pixels than this is refused before decoding: a 3-byte-per-
# pixel decode of it would take gigabytes (a "decompression bomb").
MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """The file is not a usable image; the message is the reason, for reports."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, compositing transparency onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grayscale: scale the actual range to 0..255 instead of clipping.
        a = np.asarray(im, dtype=np.float64)
        hi = a.max()
        a = a * (255.0 / hi) if hi > 255 else a
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode == "P" or (im.mode in ("RGB", "L") and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def load_image(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Return the image file at ``path`` as a ``(size, size, 3)`` uint8 array (see decode_image)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(f"cannot read ({exc.strerror or exc})") from None
    return decode_image(data, size)


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Return the encoded image ``data`` as a ``(size, size, 3)`` uint8 array.

    Raises ``ImageError`` with a short reason (for the split report or predict's
    output) when the bytes are empty, truncated, not an image, or too large.
    """
    return np.asarray(_decode(data, size)[0], dtype=np.uint8)


def decode_image_details(data: bytes, size: int) -> tuple[np.ndarray, int, tuple[int, int]]:
    """``(pixels, dhash, (width, height))`` of ``data``: the pixels of ``decode_image``,
    their ``dhash``, and the original size as shown (EXIF rotation applied).

    One decode for all three: the split needs them for every file.
    """
    im, shown = _decode(data, size)
    return np.asarray(im, dtype=np.uint8), _dhash(im), shown


def _decode(data: bytes, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """The ``size`` x ``size`` RGB picture of ``data``, and its original (width, height)
    as shown; see ``decode_image``."""
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
                im = ImageOps.exif_transpose(im)
                im = _to_rgb(im)
                return im.resize((size, size), Image.Resampling.BILINEAR), shown
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

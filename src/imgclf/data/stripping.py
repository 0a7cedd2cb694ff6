"""Drop the metadata of a JPEG or PNG file without touching its pixels.

The split stage keeps a source file's own bytes in the shards when it is a JPEG or PNG
near the image size (``imgclf.data.decoding``), so that training decodes exactly what
``load_image`` decodes, with no second lossy step. Those bytes must not carry the
photo's EXIF (GPS position, camera, time), XMP, IPTC, comments or embedded thumbnails
into the shards, so they are rewritten marker by marker (JPEG) or chunk by chunk (PNG),
keeping only what Pillow needs to decode the same pixels, with the entropy-coded data
copied byte for byte: nothing is re-encoded.

The one piece of metadata that changes the pixels, the EXIF orientation, is written
back as a minimal EXIF block holding that tag alone, so the kept bytes decode upright
by themselves (with ``load_image`` or any EXIF-aware reader). The orientation given is
the one ``load_image`` applied, wherever Pillow found it (EXIF, XMP, a PNG text chunk).

The split checks that the rewritten bytes decode to the same pixels as the file and
falls back to storing the pixels when they do not; these functions return None for
bytes they cannot parse, with the same fallback.
"""

from __future__ import annotations

import struct
import zlib

from PIL import ExifTags, Image

JPEG_SOI, JPEG_EOI, JPEG_SOS = 0xD8, 0xD9, 0xDA
# Markers without a length field: TEM, the restart markers, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), JPEG_SOI, JPEG_EOI})
_APP0, _APP14, _COM = 0xE0, 0xEE, 0xFE
# Kept application segments, by identifier: JFIF tells libjpeg the colour space is
# YCbCr; Adobe's says how CMYK/YCCK samples are stored (Pillow inverts Adobe CMYK).
# Neither holds anything about the photo; JFIF's optional thumbnail is cut off.
_JFIF, _ADOBE = b"JFIF\x00", b"Adobe"
_JFIF_FIXED = 14  # identifier, version, units, densities, thumbnail width and height

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks kept: the critical ones and the transparency (load_image composites it on
# white). Gamma, colour profiles, text, times, EXIF and APNG frames are dropped: Pillow
# does not apply them to the pixels (the split's check would catch it if it did).
_PNG_KEPT = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})


def orientation_exif(orientation: int) -> bytes:
    """A TIFF-format EXIF block holding only ``orientation`` (2..8), as Pillow writes it
    (after the ``Exif\\0\\0`` header a JPEG APP1 segment starts with)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()[len(b"Exif\x00\x00"):]


def strip_jpeg(data: bytes, orientation: int = 1) -> bytes | None:
    """``data`` (a JPEG file) without its APPn segments but JFIF's and Adobe's, its
    comments and any bytes after the image's end, plus an EXIF segment with
    ``orientation`` alone when it is 2..8; None when ``data`` cannot be parsed."""
    if data[:2] != b"\xff\xd8":
        return None
    out = [b"\xff\xd8"]
    if orientation in range(2, 9):
        out.append(_segment(0xE1, b"Exif\x00\x00" + orientation_exif(orientation)))
    pos = 2
    while True:
        found = _next_marker(data, pos)
        if found is None:
            return None
        marker, pos = found
        if marker in _STANDALONE:
            out.append(bytes((0xFF, marker)))
            if marker == JPEG_EOI:
                return b"".join(out)
            continue
        kept = _kept_segment(data, marker, pos)
        if kept is None:
            return None
        segment, pos = kept
        out.append(segment)


def _kept_segment(data: bytes, marker: int, pos: int) -> tuple[bytes, int] | None:
    """``(what is kept of the segment, where the next marker starts)`` of the segment of
    ``marker`` whose length field is at ``pos``; None if it runs past the end."""
    if pos + 2 > len(data):
        return None
    (length,) = struct.unpack(">H", data[pos:pos + 2])
    end = pos + length
    if length < 2 or end > len(data):
        return None
    payload = data[pos + 2:end]
    if marker == JPEG_SOS:  # the header, then the entropy-coded data up to a marker
        scan_end = _scan_end(data, end)
        return bytes((0xFF, marker)) + data[pos:scan_end], scan_end
    if marker == _APP0 and payload.startswith(_JFIF) and len(payload) >= _JFIF_FIXED:
        return _segment(marker, payload[:_JFIF_FIXED - 2] + b"\x00\x00"), end
    if marker == _APP14 and payload.startswith(_ADOBE):
        return _segment(marker, payload), end
    if 0xE0 <= marker <= 0xEF or marker == _COM:
        return b"", end  # dropped: EXIF, XMP, ICC, IPTC, comments, other APPn
    return bytes((0xFF, marker)) + data[pos:end], end  # tables, frame, restart interval


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _next_marker(data: bytes, pos: int) -> tuple[int, int] | None:
    """``(marker, position after it)`` of the marker at ``pos`` (fill bytes 0xFF skipped)."""
    if pos >= len(data) or data[pos] != 0xFF:
        return None
    while pos < len(data) and data[pos] == 0xFF:
        pos += 1
    if pos >= len(data):
        return None
    return data[pos], pos + 1


def _scan_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data starting at ``pos`` ends: at the first 0xFF that is
    neither a stuffed 0x00, a restart marker nor fill (or at the end of ``data``)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1
        else:
            return pos


def strip_png(data: bytes, orientation: int = 1) -> bytes | None:
    """``data`` (a PNG file) with only its IHDR, PLTE, tRNS, IDAT and IEND chunks, plus an
    ``eXIf`` chunk with ``orientation`` alone when it is 2..8; None when ``data`` cannot
    be parsed or has no IEND."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, end = data[pos + 4:pos + 8], pos + 12 + length
        if end > len(data):
            return None
        if kind in _PNG_KEPT:
            out.append(data[pos:end])
        if kind == b"IHDR" and orientation in range(2, 9):
            out.append(_png_chunk(b"eXIf", orientation_exif(orientation)))  # before IDAT
        if kind == b"IEND":
            return b"".join(out)
        pos = end
    return None


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def strip_metadata(data: bytes, image_format: str, orientation: int = 1) -> bytes | None:
    """``strip_jpeg`` or ``strip_png`` of ``data`` by Pillow's ``image_format`` name; None
    for any other format."""
    if image_format == "JPEG":
        return strip_jpeg(data, orientation)
    if image_format == "PNG":
        return strip_png(data, orientation)
    return None

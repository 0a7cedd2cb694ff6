"""What a folder-per-class image dataset looks like on disk: which entries are images.

One definition for every place that looks into such folders: ``download`` (finding the
class folders inside an archive), ``split`` (what it decodes and what it passes over),
``imgclf predict`` and ``imgclf evaluate --data`` (which files of a folder they score),
and the benchmark.
"""

from __future__ import annotations

from pathlib import PurePath

# The formats the decoder (Pillow, see imgclf.data.images) is asked to read; matched
# in any case, so IMG_001.JPG counts.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


def is_hidden(name: str) -> bool:
    """Hidden entries and macOS zip metadata are never classes or images."""
    return name.startswith(".") or name == "__MACOSX"


def has_image_suffix(name: str | PurePath) -> bool:
    """Whether the file name ends in one of ``IMAGE_SUFFIXES`` (any case)."""
    return PurePath(name).suffix.lower() in IMAGE_SUFFIXES

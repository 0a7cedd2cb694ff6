"""What a folder-per-class image dataset looks like on disk: which entries are images.

One definition for every place that looks into such folders: ``download`` (finding the
class folders inside an archive), ``split`` (what it decodes and what it passes over),
``imgclf predict`` and ``imgclf evaluate --data`` (which files of a folder they score),
and the benchmark. A dataset may also come split, as ``train/``, ``test/`` (maybe
``val/``) folders each holding class folders (``given_splits``).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath

from imgclf.errors import UserError

# The formats the decoder (Pillow, see imgclf.data.images) is asked to read; matched
# in any case, so IMG_001.JPG counts.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


def is_hidden(name: str) -> bool:
    """Hidden entries and macOS zip metadata are never classes or images."""
    return name.startswith(".") or name == "__MACOSX"


def has_image_suffix(name: str | PurePath) -> bool:
    """Whether the file name ends in one of ``IMAGE_SUFFIXES`` (any case)."""
    return PurePath(name).suffix.lower() in IMAGE_SUFFIXES


# split -> the folder names datasets use for it (compared in any case, as on Kaggle).
SPLIT_FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def class_dirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that could hold data (not hidden), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def visible_files(folder: Path) -> list[Path]:
    """The files directly in ``folder``, hidden ones left out, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not is_hidden(p.name))


def given_splits(folder: Path) -> dict[str, str] | None:
    """``{split: folder name}`` when ``folder`` holds split folders, else None.

    Split folders are recognised when every sub-folder is named for a split (any case)
    and train and test are among them; anything else is a plain folder of class folders.
    Two folders naming the same split (``val`` and ``Validation``) stop with an error.
    """
    lookup = {name: split for split, names in SPLIT_FOLDER_NAMES.items() for name in names}
    names = [p.name for p in class_dirs(folder)]
    if not names or any(name.lower() not in lookup for name in names):
        return None
    found: dict[str, str] = {}
    for name in names:
        split = lookup[name.lower()]
        if split in found:
            raise UserError(f"{folder}: folders {found[split]} and {name} are both the "
                            f"{split} split; merge them or remove one")
        found[split] = name
    return found if {"train", "test"} <= found.keys() else None


# The list of the dataset's entries that download did not copy, in its output folder
# (imgclf.data.copying); split merges it into its report.
SKIPPED_LIST = ".skipped.json"


def read_skipped(raw: Path) -> list[dict[str, str]]:
    """Download's ``{"path", "reason"}`` entries of ``raw/SKIPPED_LIST`` ([] without one),
    each reason marked as download's (the report's reason kinds stay split's)."""
    path = raw / SKIPPED_LIST
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["skipped"]
        return [{"path": str(r["path"]), "reason": f"{r['reason']} (left out by download)"}
                for r in rows]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not download's list of skipped entries ({exc}); rerun "
                        "the download stage (dvc repro download)") from None

"""Layout-preserving copies of a dataset's class folders into the download output,
and the copy-and-verify of a known dataset against its sha256 manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from imgclf.data.checksums import Manifest, verify_folder
from imgclf.data.layout import class_dirs, has_image_suffix, split_class_files, visible_files
from imgclf.errors import UserError
from imgclf.progress import progress


def find_class_root(folder: Path, origin: str) -> Path:
    """The folder that holds the class sub-folders, below ``folder``.

    Archives often wrap the classes in one top folder (Kaggle's zip has ``Animals/cats``),
    so descend while a folder has a single sub-folder that itself has sub-folders and
    no images sit beside it.
    """
    current = folder
    while True:
        subdirs = class_dirs(current)
        has_images = any(has_image_suffix(p.name) for p in visible_files(current))
        if len(subdirs) != 1 or has_images or not class_dirs(subdirs[0]):
            break
        current = subdirs[0]
    if not class_dirs(current):
        raise UserError(f"{origin}: no class sub-folders found; the dataset must be a folder "
                        "of class folders, like cats/*.jpg and dogs/*.jpg")
    return current


def _copy_all(root: Path, names: list[str], dest: Path) -> None:
    """Copy ``root/<name>`` to ``dest/<name>``: contents only, so read-only sources stay so."""
    for name in progress(names, desc="copying", unit="file"):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, target)


def _count(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        cls = name.split("/", 1)[0]
        counts[cls] = counts.get(cls, 0) + 1
    return counts


def copy_classes(root: Path, dest: Path) -> dict[str, int]:
    """Copy the files directly inside each class folder of ``root``; files per class."""
    names = [f"{d.name}/{f.name}" for d in class_dirs(root) for f in visible_files(d)]
    if not names:
        raise UserError(f"{root}: the class folders hold no files")
    _copy_all(root, names, dest)
    return _count(names)


def copy_split_classes(root: Path, layout: dict[str, str], dest: Path) -> dict[str, int]:
    """Copy ``<split>/<class>/<file>`` of a dataset that comes split; files per class."""
    names = split_class_files(root, layout)
    if not names:
        raise UserError(f"{root}: the class folders of {', '.join(layout.values())} hold no files")
    _copy_all(root, names, dest)
    return _count([name.split("/", 1)[1] for name in names])


def copy_verified(root: Path, manifest: Manifest, dest: Path, origin: str,
                  fix: str) -> dict[str, int]:
    """Copy the files ``manifest`` lists and check every copied byte against it.

    The copies are hashed, not the originals, so what lands in ``dest`` is what was checked.
    """
    names = sorted(n for n in manifest if (root / n).is_file())
    _copy_all(root, names, dest)
    result = verify_folder(dest, manifest)
    if not result.ok:
        raise UserError(f"{origin}: {result.describe()}. This is not the pinned dataset: "
                        f"{fix} (the previous output was kept)")
    return _count(names)

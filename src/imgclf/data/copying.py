"""Layout-preserving copies of a dataset's class folders into the download output,
and the copy-and-verify of a known dataset against its sha256 manifest.

A class folder is copied whole, sub-folders included (``cats/2019/a.jpg``), as split
reads it. Whatever is not copied (hidden entries, files beside the class folders, links
that leave the dataset, links to folders, FIFOs and devices, empty folders) is listed
with its reason in ``OUT/.skipped.json`` (``layout.SKIPPED_LIST``), which split merges
into its report: DVC drops empty folders and links on checkout anyway, so the list is
how they are kept in view. A link to a file inside the dataset is copied as that
file's content, and said so.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from imgclf import fsutil
from imgclf.data.checksums import Manifest, verify_folder
from imgclf.data.layout import SKIPPED_LIST, class_dirs, has_image_suffix, is_hidden, visible_files
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


@dataclass
class Listing:
    """What download copies of a dataset and what it leaves out, paths relative to its root."""

    names: list[str] = field(default_factory=list)  # files to copy
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    links: list[str] = field(default_factory=list)  # of names: links inside, copied as files

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})


def _outside(path: Path, root: Path) -> bool:
    """Whether the link ``path`` leads out of the (resolved) dataset ``root``."""
    return not path.resolve().is_relative_to(root)


def _is_regular(path: Path) -> bool:
    """Whether ``path`` (followed, if a link) is a regular file; False if it is gone."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _list_file(path: Path, rel: str, root: Path, found: Listing) -> None:
    """Add the file ``path`` to ``found``: to copy, or skipped with the reason split gives."""
    link = path.is_symlink()
    if is_hidden(path.name):
        found.skip(rel, "hidden")
    elif link and _outside(path, root):
        # Never copied: its content would land in data/raw, the DVC cache and any remote.
        found.skip(rel, "link to outside the dataset")
    elif not _is_regular(path):
        found.skip(rel, "not a regular file")  # FIFOs, devices, sockets, broken links
    else:
        found.names.append(rel)
        if link:
            found.links.append(rel)


def _list_class(folder: Path, rel: str, root: Path, found: Listing) -> None:
    """Every file below the class folder ``folder`` (``rel`` from the root), walked as
    split walks it: links to folders are not followed."""
    before = (len(found.names), len(found.skipped))
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        at = f"{rel}/{here.relative_to(folder).as_posix()}".removesuffix("/.")
        for d in sorted(dirnames):
            if is_hidden(d):
                found.skip(f"{at}/{d}", "hidden")
            elif (here / d).is_symlink():
                found.skip(f"{at}/{d}", "link to a folder")
        dirnames[:] = sorted(d for d in dirnames
                             if not is_hidden(d) and not (here / d).is_symlink())
        if here != folder and not dirnames and not filenames:
            found.skip(at, "empty folder")
        for name in sorted(filenames):
            _list_file(here / name, f"{at}/{name}", root, found)
    if len(found.names) == before[0]:  # split would say the same of the folder
        found.skip(rel, "empty class folder" if len(found.skipped) == before[1]
                   else "class folder has no usable image")


def list_classes(root: Path, prefix: str = "", found: Listing | None = None) -> Listing:
    """The files of every class folder of ``root`` and the entries left out beside them;
    paths start with ``prefix`` (a split folder's ``train/``)."""
    found = Listing() if found is None else found
    top = root.resolve()
    base = root / prefix if prefix else root
    for entry in sorted(base.iterdir()):
        rel = f"{prefix}{entry.name}"
        if is_hidden(entry.name):
            found.skip(rel, "hidden")
        elif entry.is_symlink() and _outside(entry, top):
            found.skip(rel, "link to outside the dataset")
        elif not entry.is_dir():
            found.skip(rel, "not inside a class folder")
        else:
            _list_class(entry, rel, top, found)
    return found


def _copy_listing(root: Path, found: Listing, dest: Path) -> dict[str, int]:
    """Copy ``found.names`` and write the list of the rest; files per class."""
    _copy_all(root, found.names, dest)
    if found.skipped or found.links:
        fsutil.write_json(dest / SKIPPED_LIST, {
            "about": "entries of the dataset that download did not copy, with the reason; "
                     "split adds them to its report.json",
            "skipped": sorted(found.skipped, key=lambda r: r["path"]),
            "links_copied_as_files": sorted(found.links)})
    return _count(found.names)


def describe_listing(found: Listing, out: Path) -> str:
    """The part of download's summary line about what was not copied as it is."""
    parts = []
    if found.skipped:
        parts.append(f"{len(found.skipped)} entries not copied, listed in {out / SKIPPED_LIST}")
    if found.links:
        parts.append(f"{len(found.links)} links inside the dataset copied as files")
    return "; " + "; ".join(parts) if parts else ""


def copy_classes(root: Path, dest: Path) -> tuple[dict[str, int], Listing]:
    """Copy every file below each class folder of ``root``; files per class, and the listing."""
    found = list_classes(root)
    if not found.names:
        raise UserError(f"{root}: the class folders hold no files")
    return _copy_listing(root, found, dest), found


def copy_split_classes(root: Path, layout: dict[str, str],
                       dest: Path) -> tuple[dict[str, int], Listing]:
    """Copy ``<split>/<class>/...`` of a dataset that comes split; files per class, and
    the listing."""
    found = Listing()
    for entry in sorted(root.iterdir()):  # beside the split folders: not part of any split
        if entry.name not in layout.values():
            found.skip(entry.name, "hidden" if is_hidden(entry.name)
                       else "not inside a split folder")
    for folder in layout.values():
        list_classes(root, f"{folder}/", found)
    if not found.names:
        raise UserError(f"{root}: the class folders of {', '.join(layout.values())} hold no files")
    _copy_listing(root, found, dest)
    return _count([name.split("/", 1)[1] for name in found.names]), found


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

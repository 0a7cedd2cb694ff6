"""Datasets that come already split: ``train/`` and ``test/`` (maybe ``val/``) folders.

Many public datasets ship as split folders, each with one sub-folder per class, and
published results use their official test set. Such a source keeps its split: its test
images are the test split, val is its val folder or is carved from its train folder by
``split.val``. Images that appear in two of the given splits are reported, never moved
(the leak is the dataset's, and hiding it would change the official split).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgclf.data.splitting import SPLITS, stratified_group_split
from imgclf.errors import UserError

# split -> the folder names datasets use for it (compared in any case, as on Kaggle).
SPLIT_FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def _subfolders(folder: Path) -> list[str]:
    """Names of the sub-folders that could hold data (not hidden, not macOS metadata)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def given_splits(folder: Path) -> dict[str, str] | None:
    """``{split: folder name}`` when ``folder`` holds split folders, else None.

    Split folders are recognised when every sub-folder is named for a split (any case)
    and train and test are among them; anything else is a plain folder of class folders.
    Two folders naming the same split (``val`` and ``Validation``) stop with an error.
    """
    lookup = {name: split for split, names in SPLIT_FOLDER_NAMES.items() for name in names}
    names = _subfolders(folder)
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


def split_class_files(root: Path, layout: dict[str, str]) -> list[str]:
    """``<split folder>/<class>/<file>`` of the files directly in each class folder."""
    names = []
    for folder in layout.values():
        for cls in _subfolders(root / folder):
            names += [f"{folder}/{cls}/{f.name}" for f in sorted((root / folder / cls).iterdir())
                      if f.is_file() and not f.name.startswith(".")]
    return names


def given_split_ids(paths: Sequence[str], layout: dict[str, str]) -> np.ndarray:
    """``(N,)`` index into ``SPLITS`` of the split folder each relative path lies in."""
    folder_split = {folder: SPLITS.index(split) for split, folder in layout.items()}
    return np.array([folder_split[p.split("/", 1)[0]] for p in paths], dtype=np.int64)


def keep_given_splits(given: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                      val_fraction: float, seed: int, class_names: Sequence[str]) -> np.ndarray:
    """``(N,)`` split ids: the given ones, with val carved from train when none is given.

    ``given``, ``labels`` and ``groups`` are ``(N,)`` ints (given split, class, duplicate
    group). Without a given val, a stratified ``val_fraction`` of the given train images
    (whole duplicate groups) becomes val; test is never touched.
    """
    split = given.copy()
    val = SPLITS.index("val")
    if (given == val).any():
        return split
    train = np.flatnonzero(given == SPLITS.index("train"))
    carved = stratified_group_split(labels[train], groups[train],
                                    (1 - val_fraction, val_fraction, 0.0), seed, class_names)
    split[train] = np.where(carved == val, val, SPLITS.index("train"))
    return split


def duplicates_across_splits(paths: Sequence[str], groups: np.ndarray,
                             given: np.ndarray) -> list[list[str]]:
    """The duplicate groups (their paths) whose members lie in more than one given split."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        members.setdefault(g, []).append(i)
    return [[paths[i] for i in idx] for idx in members.values()
            if len({int(given[i]) for i in idx}) > 1]


def describe(layout: dict[str, str], val_fraction: float) -> dict[str, str]:
    """Where each split came from, for the split report."""
    out = {split: f"folder {layout[split]}" for split in SPLITS if split in layout}
    if "val" not in layout:
        out["val"] = (f"carved from folder {layout['train']} (split.val {val_fraction:g} of "
                      "it, stratified)")
    return {split: out[split] for split in SPLITS}

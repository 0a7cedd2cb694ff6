"""Datasets that come already split: ``train/`` and ``test/`` (maybe ``val/``) folders
(recognised by ``imgclf.data.layout.given_splits``).

Many public datasets ship as split folders, each with one sub-folder per class, and
published results use their official test set. Such a source keeps its split: its test
images are the test split, val is its val folder or is carved from its train folder by
``split.val``. Images that appear in two of the given splits are reported, never moved
(the leak is the dataset's, and hiding it would change the official split).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgclf.data.stratify import SPLITS, stratified_group_split


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

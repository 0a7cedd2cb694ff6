"""Every prepared image with its file name, split and label, in the embeddings' order.

The features stage writes each split's arrays in the records' order of
``imgclf.data.records.make_dataset`` unshuffled, which is the shards' order, which is the
order of that split's rows in ``manifest.csv`` (the split stage writes both in one
pass). The audit lays the splits end to end, train then val then test: row ``i`` of
every array here is image ``i``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data.shards import read_meta
from imgclf.data.stratify import SPLITS
from imgclf.errors import UserError


@dataclass(frozen=True)
class Records:
    """The ``N`` prepared images, split after split."""

    paths: list[str]  # relative to the raw folder, as in manifest.csv
    split_of: np.ndarray  # (N,) int64 index into SPLITS
    labels: np.ndarray  # (N,) int64 index into class_names
    index: np.ndarray  # (N,) int64 record number within its split
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def split_name(self, i: int) -> str:
        return SPLITS[int(self.split_of[i])]

    def label_name(self, i: int) -> str:
        return self.class_names[int(self.labels[i])]


def read_records(prepared: str | os.PathLike[str]) -> Records:
    """The records of ``prepared`` (the split stage's output), from manifest.csv."""
    prepared = Path(prepared)
    meta = read_meta(prepared)
    by_split: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    manifest = prepared / "manifest.csv"
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_split[row["split"]].append(row)
    rows = [row for s in SPLITS for row in by_split[s]]
    for s in SPLITS:
        if len(by_split[s]) != meta.counts.get(s, 0):
            raise UserError(f"{manifest}: {len(by_split[s])} {s} rows, meta.json says "
                            f"{meta.counts.get(s, 0)}; rerun the split stage")
    number = {name: c for c, name in enumerate(meta.class_names)}
    return Records(
        paths=[r["path"] for r in rows],
        split_of=np.array([SPLITS.index(r["split"]) for r in rows], np.int64),
        labels=np.array([number[r["label"]] for r in rows], np.int64),
        index=np.concatenate([np.arange(len(by_split[s]), dtype=np.int64) for s in SPLITS]),
        class_names=list(meta.class_names))

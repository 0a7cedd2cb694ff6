"""The split stage's output format: fixed-length binary records in a few large shards.

Each record is a little-endian int32 label followed by ``size * size * 3`` uint8
pixels. Training streams them with ``tf.data.FixedLengthRecordDataset`` (no JPEG
decoding per epoch, nothing held in memory), and numpy can memory-map them for
inspection. ``meta.json`` beside the shards says how to read them. A few large files
rather than one per image keeps ``dvc push``/``pull`` fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

from imgclf.errors import UserError

FORMAT = "imgclf-shards/1"
LABEL_BYTES = 4
SHARD_BYTES = 256 * 1024 * 1024  # a shard holds as many whole records as fit in this


@dataclass(frozen=True)
class ShardsMeta:
    """What ``meta.json`` holds: image size, class names and each split's shard files."""

    image_size: int
    class_names: list[str]
    splits: dict[str, list[str]] = field(default_factory=dict)  # split -> shard file names
    counts: dict[str, int] = field(default_factory=dict)  # split -> number of records

    @property
    def record_bytes(self) -> int:
        return LABEL_BYTES + self.image_size * self.image_size * 3

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "image_size": self.image_size,
                           "record_bytes": self.record_bytes, "label_bytes": LABEL_BYTES,
                           "class_names": self.class_names, "splits": self.splits,
                           "counts": self.counts}, indent=2) + "\n"


def read_meta(folder: str | os.PathLike[str]) -> ShardsMeta:
    path = Path(folder) / "meta.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run the split stage first (dvc repro split)") from None
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON; rerun the split stage") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{path}: not a {FORMAT} folder; rerun the split stage")
    return ShardsMeta(image_size=raw["image_size"], class_names=raw["class_names"],
                      splits=raw["splits"], counts=raw["counts"])


def encode_record(label: int, pixels: np.ndarray) -> bytes:
    """One record: int32 label then the ``(size, size, 3)`` uint8 pixels."""
    pixel_bytes = np.ascontiguousarray(pixels, np.uint8).tobytes()
    return np.int32(label).astype("<i4").tobytes() + pixel_bytes


class ShardWriter:
    """Append records to ``<prefix>-000.bin``, ``<prefix>-001.bin``, ... in ``folder``."""

    def __init__(self, folder: Path, prefix: str, record_bytes: int) -> None:
        self.folder, self.prefix = folder, prefix
        self.per_shard = max(1, SHARD_BYTES // record_bytes)
        self.names: list[str] = []
        self.count = 0
        self._file: BinaryIO | None = None

    def write(self, record: bytes) -> None:
        if self.count % self.per_shard == 0:
            self.close()
            name = f"{self.prefix}-{len(self.names):03d}.bin"
            self.names.append(name)
            self._file = open(self.folder / name, "wb")  # noqa: SIM115 (closed in close())
        assert self._file is not None
        self._file.write(record)
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _record_dtype(size: int) -> np.dtype:
    return np.dtype([("label", "<i4"), ("pixels", np.uint8, (size, size, 3))])


def _split_parts(folder: str | os.PathLike[str], split: str) -> tuple[int, list[np.memmap]]:
    """The image size and one memory map of records per shard file of ``split``."""
    meta = read_meta(folder)
    dtype = _record_dtype(meta.image_size)
    return meta.image_size, [np.memmap(Path(folder) / name, dtype=dtype, mode="r")
                             for name in meta.splits.get(split, [])]


class SplitImages:
    """``images[i]``: the ``(S, S, 3)`` uint8 image of record ``i`` of a split, across its
    shards, read on demand; ``labels`` are the ``(N,)`` int32 labels.

    Records are read with ``pread``, not memory-mapped: reading every label through a
    map faults in (and reads ahead) pages all over the shards, and those pages count in
    the process's memory, which would then grow with the split. The gallery, the data
    report and the W&B table each look at a few images only.
    """

    def __init__(self, folder: str | os.PathLike[str], split: str) -> None:
        meta = read_meta(folder)
        self._size, self._record = meta.image_size, meta.record_bytes
        self._files = [Path(folder) / name for name in meta.splits.get(split, [])]
        counts = [f.stat().st_size // self._record for f in self._files]
        self._starts = np.cumsum([0, *counts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, i: int) -> tuple[Path, int]:
        part = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._files[part], (i - int(self._starts[part])) * self._record

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} of {len(self)}")
        path, offset = self._locate(i % len(self))
        with open(path, "rb") as f:
            raw = os.pread(f.fileno(), self._record - LABEL_BYTES, offset + LABEL_BYTES)
        return np.frombuffer(raw, np.uint8).reshape(self._size, self._size, 3).copy()

    @cached_property
    def labels(self) -> np.ndarray:  # read once, on first use
        out = np.empty(len(self), np.int32)
        for part, path in enumerate(self._files):
            start, stop = int(self._starts[part]), int(self._starts[part + 1])
            with open(path, "rb") as f:
                for i in range(start, stop):
                    raw = os.pread(f.fileno(), LABEL_BYTES, (i - start) * self._record)
                    out[i] = np.frombuffer(raw, "<i4")[0]
        return out


def read_split(folder: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as arrays: ``(images (N, S, S, 3) uint8, labels (N,) int32)``.

    Memory-mapped when the split is one shard; several shards are copied into memory,
    so this is for inspection and tests. Stages use ``SplitImages`` (a few images) or
    ``imgclf.training.dataset`` (streaming) instead.
    """
    size, parts = _split_parts(folder, split)
    if not parts:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32)
    records = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return records["pixels"], records["label"].astype(np.int32)

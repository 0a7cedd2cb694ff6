"""Tests of the shard format (imgclf.data.shards): records, rollover, reading back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import imgclf.data.shards as shards
from imgclf.data.shards import (
    FORMAT,
    LABEL_BYTES,
    ShardsMeta,
    ShardWriter,
    SplitImages,
    encode_record,
    read_meta,
    read_split,
)
from imgclf.errors import UserError

SIZE = 4


def images(n: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def write_split(folder: Path, name: str, pixels: np.ndarray, labels: list[int],
                meta: ShardsMeta) -> None:
    writer = ShardWriter(folder, name, meta.record_bytes)
    for label, p in zip(labels, pixels, strict=True):
        writer.write(encode_record(label, p))
    writer.close()
    meta.splits[name], meta.counts[name] = writer.names, writer.count


def test_record_layout() -> None:
    pixels = images(1)[0]
    record = encode_record(258, pixels)
    assert len(record) == LABEL_BYTES + SIZE * SIZE * 3
    assert record[:4] == bytes([2, 1, 0, 0])  # little-endian int32
    assert record[4:] == pixels.tobytes()
    assert len(record) == ShardsMeta(SIZE, ["a"]).record_bytes


def test_record_of_non_contiguous_pixels() -> None:
    pixels = images(1, size=8)[0]
    view = pixels[::2, ::2]
    assert not view.flags.c_contiguous
    assert encode_record(0, view)[4:] == np.ascontiguousarray(view).tobytes()


def test_meta_json_round_trip(tmp_path: Path) -> None:
    meta = ShardsMeta(32, ["cat", "dog"], {"train": ["train-000.bin"]}, {"train": 7})
    (tmp_path / "meta.json").write_text(meta.to_json(), encoding="utf-8")
    raw = json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))
    assert raw["format"] == FORMAT
    assert raw["record_bytes"] == 4 + 32 * 32 * 3
    assert raw["label_bytes"] == 4
    assert read_meta(tmp_path) == meta


def test_writer_round_trip(tmp_path: Path) -> None:
    meta = ShardsMeta(SIZE, ["a", "b", "c"])
    pixels = images(10)
    labels = [i % 3 for i in range(10)]
    write_split(tmp_path, "train", pixels, labels, meta)
    write_split(tmp_path, "val", pixels[:2], [2, 1], meta)
    (tmp_path / "meta.json").write_text(meta.to_json(), encoding="utf-8")

    assert meta.splits["train"] == ["train-000.bin"]
    assert meta.counts == {"train": 10, "val": 2}
    got, got_labels = read_split(tmp_path, "train")
    assert got.shape == (10, SIZE, SIZE, 3)
    assert got.dtype == np.uint8
    assert np.array_equal(got, pixels)
    assert got_labels.dtype == np.int32
    assert got_labels.tolist() == labels
    got_val, val_labels = read_split(tmp_path, "val")
    assert np.array_equal(got_val, pixels[:2])
    assert val_labels.tolist() == [2, 1]


def test_writer_rolls_over_to_new_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = ShardsMeta(SIZE, ["a", "b"])
    # Room for 3 whole records (and a bit) per shard.
    monkeypatch.setattr(shards, "SHARD_BYTES", 3 * meta.record_bytes + 5)
    pixels = images(8, seed=1)
    labels = [0, 1, 1, 0, 1, 0, 0, 1]
    write_split(tmp_path, "train", pixels, labels, meta)
    (tmp_path / "meta.json").write_text(meta.to_json(), encoding="utf-8")

    assert meta.splits["train"] == ["train-000.bin", "train-001.bin", "train-002.bin"]
    sizes = [(tmp_path / n).stat().st_size // meta.record_bytes for n in meta.splits["train"]]
    assert sizes == [3, 3, 2]
    for name in meta.splits["train"]:
        assert (tmp_path / name).stat().st_size % meta.record_bytes == 0
    got, got_labels = read_split(tmp_path, "train")
    assert np.array_equal(got, pixels)
    assert got_labels.tolist() == labels


def test_split_images_reads_across_shards_on_demand(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SplitImages gives record i of a split spread over shards, without copying them all."""
    meta = ShardsMeta(SIZE, ["a", "b"])
    monkeypatch.setattr(shards, "SHARD_BYTES", 3 * meta.record_bytes)
    pixels = images(8, seed=2)
    labels = [1, 0, 0, 1, 1, 0, 1, 0]
    write_split(tmp_path, "test", pixels, labels, meta)
    (tmp_path / "meta.json").write_text(meta.to_json(), encoding="utf-8")
    assert len(meta.splits["test"]) == 3

    split = SplitImages(tmp_path, "test")
    assert len(split) == 8
    assert split.labels.tolist() == labels and split.labels.dtype == np.int32
    for i in range(8):
        assert np.array_equal(split[i], pixels[i]), i
    assert np.array_equal(split[-1], pixels[7])
    assert isinstance(split[4], np.ndarray) and not isinstance(split[4], np.memmap)
    with pytest.raises(IndexError):
        split[8]
    empty = SplitImages(tmp_path, "val")
    assert len(empty) == 0 and empty.labels.shape == (0,)


def test_record_larger_than_a_shard_gets_a_shard_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "SHARD_BYTES", 10)
    meta = ShardsMeta(SIZE, ["a"])
    write_split(tmp_path, "test", images(3, seed=2), [0, 0, 0], meta)
    assert len(meta.splits["test"]) == 3


def test_exact_multiple_does_not_leave_an_empty_shard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = ShardsMeta(SIZE, ["a"])
    monkeypatch.setattr(shards, "SHARD_BYTES", 2 * meta.record_bytes)
    write_split(tmp_path, "train", images(4, seed=3), [0] * 4, meta)
    assert meta.splits["train"] == ["train-000.bin", "train-001.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-000.bin", "train-001.bin"]


def test_writer_with_no_records_writes_no_file(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "val", 100)
    writer.close()
    assert writer.names == []
    assert writer.count == 0
    assert list(tmp_path.iterdir()) == []


def test_read_split_of_a_split_without_shards(tmp_path: Path) -> None:
    meta = ShardsMeta(SIZE, ["a", "b"], {"train": [], "val": [], "test": []},
                      {"train": 0, "val": 0, "test": 0})
    (tmp_path / "meta.json").write_text(meta.to_json(), encoding="utf-8")
    got, labels = read_split(tmp_path, "val")
    assert got.shape == (0, SIZE, SIZE, 3)
    assert labels.shape == (0,)


def test_read_meta_missing_points_at_the_split_stage(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        read_meta(tmp_path)
    message = str(info.value)
    assert "meta.json" in message
    assert "split" in message


def test_read_split_missing_meta(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="split"):
        read_split(tmp_path / "nothing-here", "train")


@pytest.mark.parametrize("content", [
    {"format": "imgclf-shards/0", "image_size": 4, "class_names": [], "splits": {},
     "counts": {}},
    {"image_size": 4, "class_names": ["a"], "splits": {}, "counts": {}},
    ["not", "a", "mapping"],
])
def test_read_meta_wrong_format(tmp_path: Path, content: object) -> None:
    (tmp_path / "meta.json").write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_meta(tmp_path)
    assert "meta.json" in str(info.value)


@pytest.mark.parametrize("text", ["", "{not json", '{"format": "imgclf-shards/1", "image_'])
def test_read_meta_corrupt_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "meta.json").write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_meta(tmp_path)
    assert "meta.json" in str(info.value)

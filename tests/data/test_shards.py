"""Tests of the shard format (imgclf.data.shards): TFRecord files of tf.train.Example
records, rollover, reading back with plain TensorFlow and with imgclf's readers."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from imgclf.data.decoding import encode_pixels
from imgclf.data.shards import (
    FORMAT,
    RECORD_FRAMING,
    ShardsMeta,
    ShardWriter,
    SplitImages,
    encode_example,
    read_meta,
    read_split,
    record_spans,
)
from imgclf.errors import UserError

SIZE = 8


def images(n: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def write_split(folder: Path, name: str, pixels: np.ndarray, labels: list[int],
                meta: ShardsMeta, shard_bytes: int = 1 << 20) -> ShardWriter:
    writer = ShardWriter(folder, name, shard_bytes)
    for i, (label, p) in enumerate(zip(labels, pixels, strict=True)):
        encoded = encode_pixels(p, meta.encoding, meta.quality or 95)
        size = meta.image_size
        writer.write(encode_example(label, meta.class_names[label], encoded, meta.encoding,
                                    (size, size), f"{i:064x}", f"{name}/{i}.jpg"))
    writer.close()
    meta.splits[name], meta.counts[name] = writer.names, writer.count
    meta.sizes[name] = writer.bytes
    (folder / "meta.json").write_text(meta.to_json(), encoding="utf-8")
    return writer


def test_plain_tensorflow_reads_a_shard_without_imgclf(tmp_path: Path) -> None:
    """What the README promises: TFRecordDataset + parse_single_example, nothing else."""
    pixels = images(3, seed=4)
    meta = ShardsMeta(SIZE, ["cat", "dog"], "png", None)
    write_split(tmp_path, "train", pixels, [1, 0, 1], meta)

    files = sorted(str(p) for p in tmp_path.glob("train-*.tfrecord"))
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/format": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
            "image/class/text": tf.io.FixedLenFeature([], tf.string),
            "image/sha256": tf.io.FixedLenFeature([], tf.string),
            "image/filename": tf.io.FixedLenFeature([], tf.string),
            "image/height": tf.io.FixedLenFeature([], tf.int64),
            "image/width": tf.io.FixedLenFeature([], tf.int64)}
    got = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(files)]
    assert len(got) == 3
    for i, ex in enumerate(got):
        image = tf.io.decode_image(ex["image/encoded"], channels=3).numpy()
        np.testing.assert_array_equal(image, pixels[i])  # png: lossless
        assert ex["image/format"].numpy() == b"png"
        assert int(ex["image/class/label"]) == [1, 0, 1][i]
        assert ex["image/class/text"].numpy() == [b"dog", b"cat", b"dog"][i]
        assert ex["image/filename"].numpy() == f"train/{i}.jpg".encode()
        assert (int(ex["image/height"]), int(ex["image/width"])) == (SIZE, SIZE)


@pytest.mark.parametrize("encoding", ["jpeg", "png", "raw"])
def test_round_trip_of_each_encoding(tmp_path: Path, encoding: str) -> None:
    # Smooth pictures: JPEG keeps them close (noise would not be a fair test of it).
    across, down = np.meshgrid(np.linspace(0, 255, 32), np.linspace(255, 0, 32))
    pixels = np.stack([np.stack([across, down, np.full((32, 32), 9.0 * k)], -1)
                       for k in range(5)]).astype(np.uint8)
    meta = ShardsMeta(32, ["a", "b", "c"], encoding, 95 if encoding == "jpeg" else None)
    labels = [0, 2, 1, 1, 0]
    write_split(tmp_path, "val", pixels, labels, meta)
    got, got_labels = read_split(tmp_path, "val")
    assert got.shape == (5, 32, 32, 3) and got.dtype == np.uint8
    assert got_labels.tolist() == labels and got_labels.dtype == np.int32
    if encoding == "jpeg":
        error = np.abs(got.astype(int) - pixels).mean()
        assert 0 < error < 3, error  # lossy, but close at quality 95
    else:
        np.testing.assert_array_equal(got, pixels)


def test_jpeg_is_smaller_than_png_and_raw() -> None:
    photo = np.asarray(Image.new("RGB", (64, 64), (120, 80, 40)).resize((64, 64)))
    photo = np.clip(photo + np.random.default_rng(0).normal(0, 6, photo.shape), 0,
                    255).astype(np.uint8)
    sizes = {e: len(encode_pixels(photo, e, 95)) for e in ("jpeg", "png", "raw")}
    assert sizes["raw"] == 64 * 64 * 3
    assert sizes["jpeg"] < sizes["png"] < sizes["raw"], sizes
    assert len(encode_pixels(photo, "jpeg", 50)) < sizes["jpeg"]  # quality is used
    assert Image.open(io.BytesIO(encode_pixels(photo, "jpeg", 95))).format == "JPEG"


def test_same_data_same_bytes(tmp_path: Path) -> None:
    digests = []
    for run in ("one", "two"):
        (tmp_path / run).mkdir()
        write_split(tmp_path / run, "train", images(6, seed=7), [0, 1, 0, 1, 1, 0],
                    ShardsMeta(SIZE, ["a", "b"]))
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / run).iterdir())})
    assert digests[0] == digests[1]
    assert set(digests[0]) == {"meta.json", "train-00000.tfrecord"}


def test_meta_json_round_trip(tmp_path: Path) -> None:
    meta = ShardsMeta(32, ["cat", "dog"], "jpeg", 90, {"train": ["train-00000.tfrecord"]},
                      {"train": 7}, {"train": 1234})
    (tmp_path / "meta.json").write_text(meta.to_json(), encoding="utf-8")
    raw = json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))
    assert raw["format"] == FORMAT
    assert raw["encoding"] == "jpeg" and raw["quality"] == 90
    assert "image/encoded" in raw["features"] and "image/class/label" in raw["features"]
    assert read_meta(tmp_path) == meta


def test_writer_rolls_over_to_new_shards(tmp_path: Path) -> None:
    meta = ShardsMeta(SIZE, ["a", "b"], "raw", None)
    one = len(encode_example(0, "a", bytes(SIZE * SIZE * 3), "raw", (SIZE, SIZE), "0" * 64,
                             "train/0.jpg")) + RECORD_FRAMING
    pixels = images(8, seed=1)
    labels = [0, 1, 1, 0, 1, 0, 0, 1]
    write_split(tmp_path, "train", pixels, labels, meta, shard_bytes=3 * one + 5)

    names = [f"train-{i:05d}.tfrecord" for i in range(3)]
    assert meta.splits["train"] == names
    assert [len(record_spans(tmp_path / n)) for n in names] == [3, 3, 2]
    assert meta.sizes["train"] == sum((tmp_path / n).stat().st_size for n in names) == 8 * one
    got, got_labels = read_split(tmp_path, "train")
    np.testing.assert_array_equal(got, pixels)
    assert got_labels.tolist() == labels


def test_record_larger_than_a_shard_gets_a_shard_each(tmp_path: Path) -> None:
    meta = ShardsMeta(SIZE, ["a"])
    write_split(tmp_path, "test", images(3, seed=2), [0, 0, 0], meta, shard_bytes=10)
    assert len(meta.splits["test"]) == 3


def test_split_images_reads_across_shards_on_demand(tmp_path: Path) -> None:
    """SplitImages gives record i of a split spread over shards, decoded as training does."""
    meta = ShardsMeta(SIZE, ["a", "b"], "png", None)
    pixels = images(8, seed=2)
    labels = [1, 0, 0, 1, 1, 0, 1, 0]
    write_split(tmp_path, "test", pixels, labels, meta, shard_bytes=600)
    assert len(meta.splits["test"]) > 2

    split = SplitImages(tmp_path, "test")
    assert len(split) == 8
    assert split.labels.tolist() == labels and split.labels.dtype == np.int32
    for i in range(8):
        np.testing.assert_array_equal(split[i], pixels[i])
    np.testing.assert_array_equal(split[-1], pixels[7])
    with pytest.raises(IndexError):
        split[8]
    empty = SplitImages(tmp_path, "val")
    assert len(empty) == 0 and empty.labels.shape == (0,)


def test_truncated_shard_is_a_clear_error(tmp_path: Path) -> None:
    meta = ShardsMeta(SIZE, ["a"])
    write_split(tmp_path, "test", images(2), [0, 0], meta)
    path = tmp_path / meta.splits["test"][0]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(UserError, match=r"truncated.*split stage"):
        SplitImages(tmp_path, "test")


def test_writer_with_no_records_writes_no_file(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "val", 100)
    writer.close()
    assert writer.names == [] and writer.count == 0
    assert list(tmp_path.iterdir()) == []


def test_read_split_of_a_split_without_shards(tmp_path: Path) -> None:
    meta = ShardsMeta(SIZE, ["a", "b"], splits={"train": [], "val": [], "test": []},
                      counts={"train": 0, "val": 0, "test": 0})
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


@pytest.mark.parametrize("content", [
    {"format": "imgclf-shards/1", "image_size": 4, "record_bytes": 52, "class_names": [],
     "splits": {}, "counts": {}},  # the raw-pixel format before TFRecord
    {"image_size": 4, "class_names": ["a"], "splits": {}, "counts": {}},
    ["not", "a", "mapping"],
])
def test_read_meta_wrong_format(tmp_path: Path, content: object) -> None:
    (tmp_path / "meta.json").write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_meta(tmp_path)
    assert "meta.json" in str(info.value) and "rerun the split stage" in str(info.value)


@pytest.mark.parametrize("text", ["", "{not json", '{"format": "tfrecord-example/1", "image_'])
def test_read_meta_corrupt_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "meta.json").write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_meta(tmp_path)
    assert "meta.json" in str(info.value)

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from imgclf.data.records import make_dataset
from imgclf.data.shards import read_meta, read_split


def test_batches_match_the_shards(tiny_prepared: Path) -> None:
    meta = read_meta(tiny_prepared)
    images, labels = read_split(tiny_prepared, "val")
    ds = make_dataset(tiny_prepared, meta, "val", batch_size=4)
    got_x = np.concatenate([x.numpy() for x, _ in ds])
    got_y = np.concatenate([y.numpy() for _, y in ds])
    assert got_x.dtype == np.float32 and got_x.shape == (len(labels), 16, 16, 3)
    np.testing.assert_array_equal(got_x, images.astype(np.float32))
    np.testing.assert_array_equal(got_y, labels)


def test_shuffle_is_seeded_and_reshuffles_each_epoch(tiny_prepared: Path) -> None:
    meta = read_meta(tiny_prepared)

    def epochs(seed: int) -> list[np.ndarray]:
        ds = make_dataset(tiny_prepared, meta, "train", batch_size=64, shuffle=True, seed=seed)
        return [np.concatenate([y.numpy() for _, y in ds]) for _ in range(2)]

    first, again = epochs(3), epochs(3)
    np.testing.assert_array_equal(first[0], again[0])  # same seed, same order
    _, labels = read_split(tiny_prepared, "train")
    assert sorted(first[0]) == sorted(labels)  # every record exactly once per epoch
    # 54 records of 3 classes: the same label order twice by chance is negligible.
    assert not np.array_equal(first[0], first[1])  # a new order each epoch ...
    np.testing.assert_array_equal(first[1], again[1])  # ... itself seeded
    assert not np.array_equal(first[0], epochs(4)[0])  # another seed, another order


def test_one_hot_labels(tiny_prepared: Path) -> None:
    meta = read_meta(tiny_prepared)
    _, labels = read_split(tiny_prepared, "test")
    ds = make_dataset(tiny_prepared, meta, "test", batch_size=100, one_hot=True)
    (_, y), = list(ds)
    assert y.shape == (len(labels), 3)
    np.testing.assert_array_equal(y.numpy().argmax(1), labels)
    np.testing.assert_array_equal(y.numpy().sum(1), 1)


def test_mixup_blends_images_and_labels_alike(tiny_prepared: Path) -> None:
    meta = read_meta(tiny_prepared)

    def batch(mixup: float, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
        ds = make_dataset(tiny_prepared, meta, "train", batch_size=54, shuffle=True, seed=seed,
                          one_hot=True, mixup=mixup)
        x, y = next(iter(ds))
        return x.numpy(), y.numpy()

    plain_x, plain_y = batch(0.0)
    mixed_x, mixed_y = batch(0.4)
    # Same shuffle, so the same records in the same order before blending.
    assert set(np.unique(plain_y)) == {0.0, 1.0}
    np.testing.assert_allclose(mixed_y.sum(1), 1, rtol=1e-5)
    weight = mixed_y.max(1)
    assert (weight < 0.99).sum() > 10  # most labels are now blends
    own = (plain_y * mixed_y).sum(1)  # the share of the label it started from
    assert (own > 0).all()
    # Images are blended by the same weight as their labels: where the partner is of
    # another class, own = w, and (mixed - w * own image) / (1 - w) is the partner image.
    checked = 0
    for i in np.flatnonzero((own > 0.02) & (own < 0.9)):
        partner = (mixed_x[i] - own[i] * plain_x[i]) / (1 - own[i])
        assert np.abs(plain_x - partner).reshape(len(plain_x), -1).max(1).min() < 0.05
        checked += 1
    assert checked >= 5
    assert not np.array_equal(plain_x, mixed_x)
    assert mixed_x.min() >= plain_x.min() - 1e-3 and mixed_x.max() <= plain_x.max() + 1e-3
    # Seeded: the same draws again.
    again_x, again_y = batch(0.4)
    np.testing.assert_array_equal(mixed_y, again_y)
    np.testing.assert_array_equal(mixed_x, again_x)


def test_mixup_needs_one_hot_labels(tiny_prepared: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match="one-hot"):
        make_dataset(tiny_prepared, read_meta(tiny_prepared), "train", 8, mixup=0.2)


def _many_shards(root: Path, image_folder: Callable[..., Path], encoding: str = "jpeg") -> Path:
    """A split of 3 x 20 generated images whose train split spans several shard files."""
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    if not (root / "raw").exists():
        image_folder(root / "raw", ["a", "b", "c"], per_class=20)
    split.run(DataParams(image_size=16),
              SplitParams(train=0.6, val=0.2, test=0.2, encoding=encoding,  # type: ignore[arg-type]
                          shard_mb=0.004),  # ~5 images a shard
              root / "raw", root / f"prepared-{encoding}")
    return root / f"prepared-{encoding}"


def test_each_encoding_streams_what_the_split_wrote(tmp_path: Path,
                                                    image_folder: Callable[..., Path]) -> None:
    """jpeg, png and raw shards of the same photos give the same labels in the same order;
    png and raw the same pixels, jpeg pixels close to them."""
    got = {}
    for encoding in ("raw", "png", "jpeg"):
        prepared = _many_shards(tmp_path, image_folder, encoding)
        meta = read_meta(prepared)
        assert meta.encoding == encoding and len(meta.splits["train"]) > 2
        ds = make_dataset(prepared, meta, "train", batch_size=7)
        got[encoding] = (np.concatenate([x.numpy() for x, _ in ds]),
                         np.concatenate([y.numpy() for _, y in ds]))
    raw_x, raw_y = got["raw"]
    assert len(raw_y) == 36
    for encoding in ("png", "jpeg"):
        np.testing.assert_array_equal(got[encoding][1], raw_y)
    np.testing.assert_array_equal(got["png"][0], raw_x)
    error = np.abs(got["jpeg"][0] - raw_x).mean()
    assert 0 < error < 12, error  # generated noise is JPEG's worst case; photos lose far less


def test_multi_worker_training_reads_by_file(tmp_path: Path,
                                             image_folder: Callable[..., Path]) -> None:
    """With a shard file for every worker, each worker reads only its own files (so the
    workers' images never overlap), yet every worker has an epoch of global steps."""
    from tensorflow.python.distribute import input_ops  # how tf.distribute shards input

    prepared = _many_shards(tmp_path, image_folder)
    meta = read_meta(prepared)
    n, batch = meta.counts["train"], 8
    assert len(meta.splits["train"]) >= 2
    ds = make_dataset(prepared, meta, "train", batch, shuffle=True, seed=3, workers=2)
    policy = tf.data.experimental.AutoShardPolicy
    assert ds.options().experimental_distribute.auto_shard_policy == policy.FILE
    assert len(ds) == -(-n // batch)  # the steps of an epoch, as Keras counts them

    seen = []
    for worker in range(2):
        mine = input_ops.auto_shard_dataset(ds, 2, worker, 2)
        images = np.concatenate([x.numpy() for x, _ in mine]).astype(np.uint8)
        assert len(images) == len(ds) * batch  # every worker can take every step
        seen.append({im.tobytes() for im in images})
    assert not seen[0] & seen[1]  # disjoint files
    all_images = {im.tobytes() for im in read_split(prepared, "train")[0]}
    assert seen[0] | seen[1] <= all_images
    # Each worker's stream repeats its files through the shuffle buffer, so an epoch may
    # take a record twice and miss another; most are seen.
    assert len(seen[0] | seen[1]) >= 0.8 * len(all_images)

    # Validation must see each record once: by element, whatever the file count; so is a
    # split with fewer files than workers.
    val = make_dataset(prepared, meta, "val", batch, workers=2)
    assert val.options().experimental_distribute.auto_shard_policy == policy.DATA
    few = make_dataset(prepared, meta, "train", batch, shuffle=True, workers=99)
    assert few.options().experimental_distribute.auto_shard_policy == policy.DATA

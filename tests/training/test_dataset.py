from pathlib import Path

import numpy as np

from imgclf.data.shards import read_meta, read_split
from imgclf.training.dataset import make_dataset


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
    # 54 records: two epochs (or two seeds) giving the same order would be a broken shuffle.
    assert not np.array_equal(first[0], first[1]) or not np.array_equal(first[0], epochs(4)[0])


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

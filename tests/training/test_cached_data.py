"""The cached path's batches: each epoch's order and views depend on (seed, epoch)
alone, so a resumed run reads what an uninterrupted one would have."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.training.cached_data import steps, train_batches, val_batches
from imgclf.training.caching import META, FeatureSet, read_features

N, VIEWS, BATCH = 10, 2, 4


@pytest.fixture
def feature_set(tmp_path: Path) -> FeatureSet:
    """A feature set whose pooled value tells its record and view: 10 * record + view;
    its label is its record index (N classes)."""
    pooled = np.array([[[10 * i + v] for v in range(VIEWS)] for i in range(N)], np.float16)
    for split in ("train", "val"):
        np.save(tmp_path / f"{split}-pooled.npy", pooled)
        np.save(tmp_path / f"{split}-labels.npy", np.arange(N, dtype=np.int32))
    (tmp_path / META).write_text(json.dumps({"counts": {"train": N, "val": N},
                                             "views": {"train": VIEWS, "val": 1}}))
    found = read_features(tmp_path)
    assert found is not None
    return found


def _epochs(features: FeatureSet, start: int, count: int, seed: int = 7) -> list[np.ndarray]:
    """The values of epochs ``start .. start + count - 1``, one array each."""
    batches = iter(train_batches(features, "pooled", BATCH, seed, start, N, one_hot=False))
    per_epoch = steps(features, "train", BATCH)
    return [np.concatenate([next(batches)[0].numpy()[:, 0] for _ in range(per_epoch)])
            for _ in range(count)]


def test_every_epoch_holds_each_record_once_in_one_of_its_views(
        feature_set: FeatureSet) -> None:
    for values in _epochs(feature_set, 0, 3):
        records, views = np.divmod(values.astype(int), 10)
        assert sorted(records) == list(range(N))
        assert set(views) <= {0, 1}
    both = np.concatenate(_epochs(feature_set, 0, 6)).astype(int) % 10
    assert 0 < both.mean() < 1  # both views are drawn


def test_a_run_resumed_at_an_epoch_reads_that_epochs_batches(feature_set: FeatureSet) -> None:
    straight = _epochs(feature_set, 0, 4)
    resumed = _epochs(feature_set, 2, 2)
    np.testing.assert_array_equal(resumed[0], straight[2])
    np.testing.assert_array_equal(resumed[1], straight[3])
    assert not np.array_equal(straight[0], straight[1])  # reshuffled each epoch
    assert not np.array_equal(_epochs(feature_set, 0, 1, seed=8)[0], straight[0])


def test_val_is_read_once_in_order_first_view(feature_set: FeatureSet) -> None:
    ds = val_batches(feature_set, "pooled", BATCH, N, one_hot=True)
    values = np.concatenate([x.numpy()[:, 0] for x, _ in ds])
    labels = np.concatenate([y.numpy().argmax(1) for _, y in ds])
    np.testing.assert_array_equal(values, 10 * np.arange(N))
    np.testing.assert_array_equal(labels, np.arange(N))

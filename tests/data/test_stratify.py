"""Tests of the split stage's stratified group split (imgclf.data.stratify)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.stratify import SPLITS, stratified_group_split, target_counts
from imgclf.errors import UserError

FRACTIONS = (0.7, 0.15, 0.15)


# --- target_counts --------------------------------------------------------------------


@pytest.mark.parametrize("n", [*range(0, 40), 97, 1000, 12345])
@pytest.mark.parametrize("fractions", [FRACTIONS, (0.8, 0.1, 0.1), (1 / 3, 1 / 3, 1 / 3),
                                       (0.5, 0.5, 0.0), (0.9, 0.05, 0.05)])
def test_target_counts_properties(n: int, fractions: tuple[float, ...]) -> None:
    counts = target_counts(n, fractions)
    assert len(counts) == len(fractions)
    assert sum(counts) == n
    assert all(c >= 0 for c in counts)
    nonzero = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(nonzero):
        assert all(counts[i] >= 1 for i in nonzero)
    for i, f in enumerate(fractions):
        if f == 0:
            assert counts[i] == 0
    if n >= 50:  # large enough that the at-least-one rule does not move anything
        for c, f in zip(counts, fractions, strict=True):
            assert abs(c - f * n) < 1


def test_target_counts_examples() -> None:
    assert target_counts(100, FRACTIONS) == [70, 15, 15]
    assert target_counts(10, (0.5, 0.3, 0.2)) == [5, 3, 2]
    assert target_counts(3, FRACTIONS) == [1, 1, 1]
    assert target_counts(4, FRACTIONS) == [2, 1, 1]


def test_target_counts_too_few_items_to_give_each_split_one() -> None:
    counts = target_counts(2, FRACTIONS)
    assert sum(counts) == 2
    assert counts[0] >= 1


# --- stratified_group_split -----------------------------------------------------------


def random_dataset(seed: int, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and duplicate groups: mostly singletons, some pairs and a few larger groups."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    g = 0
    for c in range(n_classes):
        n_groups = int(rng.integers(10, 80))
        for _ in range(n_groups):
            size = int(rng.choice([1, 1, 1, 1, 1, 2, 2, 3, 4]))
            labels += [c] * size
            groups += [g] * size
            g += 1
    order = rng.permutation(len(labels))  # items of a group need not be adjacent
    return (np.array(labels)[order], np.array(groups)[order],
            [f"class{c}" for c in range(n_classes)])


@pytest.mark.parametrize("seed", range(40))
def test_split_properties_on_random_group_structures(seed: int) -> None:
    labels, groups, names = random_dataset(seed)
    split = stratified_group_split(labels, groups, FRACTIONS, seed, names)
    assert split.shape == labels.shape
    assert set(split.tolist()) <= {0, 1, 2}
    # A group never straddles splits.
    for g in np.unique(groups):
        assert len(set(split[groups == g].tolist())) == 1
    # Each class's split sizes are off their proportional target by less than its
    # largest group (whole groups cannot always hit it exactly).
    for c in range(len(names)):
        in_class = labels == c
        n = int(in_class.sum())
        targets = target_counts(n, FRACTIONS)
        biggest = max(int((groups == g).sum()) for g in np.unique(groups[in_class]))
        for s in range(len(SPLITS)):
            count = int((split[in_class] == s).sum())
            assert count >= 1, (names[c], SPLITS[s])
            assert abs(count - targets[s]) < biggest, (names[c], SPLITS[s], count, targets[s])


@pytest.mark.parametrize("seed", range(5))
def test_split_with_singletons_hits_the_targets_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 400)
    labels[:12] = np.repeat(np.arange(4), 3)  # every class has at least 3 items
    groups = np.arange(len(labels))
    split = stratified_group_split(labels, groups, FRACTIONS, seed, list("abcd"))
    for c in range(4):
        counts = np.bincount(split[labels == c], minlength=3).tolist()
        assert counts == target_counts(int((labels == c).sum()), FRACTIONS)


def test_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    labels, groups, names = random_dataset(100)
    first = stratified_group_split(labels, groups, FRACTIONS, 42, names)
    again = stratified_group_split(labels, groups, FRACTIONS, 42, names)
    other = stratified_group_split(labels, groups, FRACTIONS, 43, names)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_smallest_possible_class_gets_one_item_in_each_split() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    groups = np.arange(len(labels))
    split = stratified_group_split(labels, groups, FRACTIONS, 0, ["tiny", "big"])
    assert sorted(split[labels == 0].tolist()) == [0, 1, 2]


def test_too_small_class_names_the_class() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    groups = np.arange(6)
    with pytest.raises(UserError) as info:
        stratified_group_split(labels, groups, FRACTIONS, 0, ["cats", "dogs"])
    message = str(info.value)
    assert "'dogs'" in message
    assert "cats" not in message
    assert "2" in message


def test_empty_class_is_too_small() -> None:
    with pytest.raises(UserError, match="'birds'"):
        stratified_group_split(np.array([0, 0, 0]), np.arange(3), FRACTIONS, 0, ["cats", "birds"])


def test_a_large_duplicate_group_stays_together() -> None:
    labels = np.zeros(20, np.int64)
    groups = np.array([0] * 8 + list(range(1, 13)))
    for seed in range(10):
        split = stratified_group_split(labels, groups, FRACTIONS, seed, ["only"])
        assert len(set(split[:8].tolist())) == 1


def test_a_group_spanning_classes_goes_to_one_split() -> None:
    """split.cross_class_duplicates: keep; the group is dealt with its first member's class."""
    labels = np.array([0] * 10 + [1] * 10 + [0, 1, 1])
    groups = np.array([*range(20), 20, 20, 20])
    for seed in range(10):
        split = stratified_group_split(labels, groups, FRACTIONS, seed, ["a", "b"])
        assert len(set(split[20:].tolist())) == 1
        assert set(split.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("seed", range(5))
def test_single_class_groups_split_as_before_a_cross_class_group_was_possible(seed: int) -> None:
    """Dealing by the first member's class changes nothing when no group spans classes."""
    labels, groups, names = random_dataset(seed)
    split = stratified_group_split(labels, groups, FRACTIONS, seed, names)
    by_class = np.full(len(labels), -1)
    rng = np.random.default_rng(seed)  # the per-class dealing, written out again
    for c in range(len(names)):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(groups[members], kind="stable")]
        _, starts, sizes = np.unique(groups[members], return_index=True, return_counts=True)
        targets, filled = target_counts(len(members), FRACTIONS), [0, 0, 0]
        for g in rng.permutation(len(starts)):
            size = int(sizes[g])
            s = next((s for s in (2, 1, 0) if filled[s] + size <= targets[s]), None)
            if s is None:
                s = max((2, 1, 0), key=lambda s: targets[s] - filled[s])
            by_class[members[starts[g]:starts[g] + size]] = s
            filled[s] += size
    assert np.array_equal(split, by_class)

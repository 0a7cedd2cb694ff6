"""Tests of the split stage's stratified group split (imgclf.data.stratify)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from imgclf.data.stratify import SPLITS, stratified_group_split, target_counts
from imgclf.errors import UserError

FRACTIONS = (0.7, 0.15, 0.15)
SEEDS = st.integers(0, 2**32 - 1)
# Bounded: the whole file stays a few seconds; no deadline (a busy CI machine is slow).
PROPERTY = settings(max_examples=60, deadline=None)


# --- target_counts --------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(0, 20_000),
       fractions=st.sampled_from([FRACTIONS, (0.8, 0.1, 0.1), (1 / 3, 1 / 3, 1 / 3),
                                  (0.5, 0.5, 0.0), (0.9, 0.05, 0.05)]))
@example(n=0, fractions=FRACTIONS).via("no items")
@example(n=2, fractions=FRACTIONS).via("fewer items than splits")
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


@st.composite
def datasets(draw: st.DrawFn, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and duplicate groups: per class 10-80 groups, mostly singletons, some pairs
    and a few larger groups, the items of a group not adjacent."""
    labels: list[int] = []
    groups: list[int] = []
    for c in range(n_classes):
        sizes = draw(st.lists(st.sampled_from([1, 1, 1, 1, 1, 2, 2, 3, 4]), min_size=10,
                              max_size=80))
        for size in sizes:
            labels += [c] * size
            groups += [len(set(groups))] * size
    order = draw(st.permutations(range(len(labels))))
    return (np.array(labels)[order], np.array(groups)[order],
            [f"class{c}" for c in range(n_classes)])


@PROPERTY
@given(data=datasets(), seed=SEEDS)
def test_split_properties_on_random_group_structures(
        data: tuple[np.ndarray, np.ndarray, list[str]], seed: int) -> None:
    labels, groups, names = data
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


@PROPERTY
@given(more=st.lists(st.integers(0, 3), max_size=400), seed=SEEDS)
def test_split_with_singletons_hits_the_targets_exactly(more: list[int], seed: int) -> None:
    labels = np.array([*np.repeat(np.arange(4), 3), *more])  # every class: 3 items at least
    groups = np.arange(len(labels))
    split = stratified_group_split(labels, groups, FRACTIONS, seed, list("abcd"))
    for c in range(4):
        counts = np.bincount(split[labels == c], minlength=3).tolist()
        assert counts == target_counts(int((labels == c).sum()), FRACTIONS)


def test_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    rng = np.random.default_rng(100)
    labels, groups, names = rng.integers(0, 3, 300), rng.integers(0, 200, 300), list("abc")
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


@PROPERTY
@given(seed=SEEDS)
def test_a_large_duplicate_group_stays_together(seed: int) -> None:
    labels = np.zeros(20, np.int64)
    groups = np.array([0] * 8 + list(range(1, 13)))
    split = stratified_group_split(labels, groups, FRACTIONS, seed, ["only"])
    assert len(set(split[:8].tolist())) == 1


@PROPERTY
@given(seed=SEEDS)
def test_a_group_spanning_classes_goes_to_one_split(seed: int) -> None:
    """split.cross_class_duplicates: keep; the group is dealt with its first member's class."""
    labels = np.array([0] * 10 + [1] * 10 + [0, 1, 1])
    groups = np.array([*range(20), 20, 20, 20])
    split = stratified_group_split(labels, groups, FRACTIONS, seed, ["a", "b"])
    assert len(set(split[20:].tolist())) == 1
    assert set(split.tolist()) == {0, 1, 2}


@PROPERTY
@given(data=datasets(), mixed=st.lists(st.integers(0, 2), min_size=1, max_size=30),
       seed=SEEDS)
def test_a_group_spanning_classes_splits_as_if_all_its_items_were_its_first_members(
        data: tuple[np.ndarray, np.ndarray, list[str]], mixed: list[int], seed: int) -> None:
    """The documented rule, on random data: relabelling the later members of each
    cross-class group to the first member's class changes no item's split."""
    labels, groups, names = data
    # Some items join other groups, whatever their class.
    joined = groups.copy()
    joined[: len(mixed)] = [groups[-1 - m] for m in mixed]
    _, first = np.unique(joined, return_index=True)
    home = {int(joined[i]): int(labels[i]) for i in first}
    as_first = np.array([home[int(g)] for g in joined])
    assume(np.bincount(as_first, minlength=len(names)).min() >= len(SPLITS))  # else refused
    np.testing.assert_array_equal(
        stratified_group_split(labels, joined, FRACTIONS, seed, names),
        stratified_group_split(as_first, joined, FRACTIONS, seed, names))

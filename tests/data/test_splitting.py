"""Tests of the pure split logic (imgclf.data.splitting)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.splitting import (
    NEAR_DUPLICATE_BITS,
    SPLITS,
    duplicate_groups,
    label_conflicts,
    stratified_group_split,
    target_counts,
)
from imgclf.errors import UserError

FRACTIONS = (0.7, 0.15, 0.15)


def flip_bits(h: int, *bits: int) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def distinct_hashes(n: int, seed: int = 0) -> list[int]:
    """``n`` random 64-bit hashes, every pair more than 10 bits apart."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        h = int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + int(rng.integers(0, 2))
        if all((h ^ o).bit_count() > 10 for o in out):
            out.append(h)
    return out


def same_partition(ids: np.ndarray, expected: list[list[int]]) -> bool:
    """``ids`` put exactly the index sets of ``expected`` together."""
    groups: dict[int, set[int]] = {}
    for i, g in enumerate(ids.tolist()):
        groups.setdefault(g, set()).add(i)
    return sorted(map(sorted, groups.values())) == sorted(map(sorted, expected))


# --- duplicate_groups -----------------------------------------------------------------


def test_all_distinct_items_get_their_own_group() -> None:
    hashes = distinct_hashes(5)
    ids = duplicate_groups([f"sha{i}" for i in range(5)], hashes)
    assert ids.tolist() == [0, 1, 2, 3, 4]


def test_identical_sha_is_one_group_even_with_far_hashes() -> None:
    hashes = distinct_hashes(4)
    ids = duplicate_groups(["a", "b", "a", "c"], hashes)
    assert same_partition(ids, [[0, 2], [1], [3]])


def test_near_dhash_is_one_group() -> None:
    h = distinct_hashes(3, seed=1)
    near = flip_bits(h[0], 0, 17, 63)  # 3 bits apart, spread over different bands
    ids = duplicate_groups(["a", "b", "c", "d"], [h[0], h[1], near, h[2]])
    assert same_partition(ids, [[0, 2], [1], [3]])


@pytest.mark.parametrize("bits", [(5,), (0, 1), (10, 30, 50), (60, 61, 62), (15, 16, 31)])
def test_hashes_within_the_limit_are_grouped_wherever_the_bits_differ(bits: tuple) -> None:
    h = distinct_hashes(1, seed=2)[0]
    ids = duplicate_groups(["a", "b"], [h, flip_bits(h, *bits)])
    assert ids[0] == ids[1]


@pytest.mark.parametrize("bits", [(0, 1, 2, 3), (3, 19, 35, 51), (0, 16, 32, 48, 63)])
def test_hashes_beyond_the_limit_stay_apart(bits: tuple) -> None:
    assert len(bits) > NEAR_DUPLICATE_BITS
    h = distinct_hashes(1, seed=3)[0]
    ids = duplicate_groups(["a", "b"], [h, flip_bits(h, *bits)])
    assert ids[0] != ids[1]


def test_max_bits_can_be_changed() -> None:
    h = distinct_hashes(1, seed=4)[0]
    far = flip_bits(h, 1, 20, 40, 60, 62)
    assert duplicate_groups(["a", "b"], [h, far], max_bits=5).tolist() == [0, 0]
    assert duplicate_groups(["a", "b"], [h, far], max_bits=4).tolist() == [0, 1]
    near = flip_bits(h, 9)
    assert duplicate_groups(["a", "b"], [h, near], max_bits=0).tolist() == [0, 1]
    assert duplicate_groups(["a", "b"], [h, h], max_bits=0).tolist() == [0, 0]


def test_grouping_is_transitive() -> None:
    """a~b by hash, b~c by hash (a and c far apart), c~d by sha: all four one group."""
    h = distinct_hashes(2, seed=5)
    a = h[0]
    b = flip_bits(a, 0, 1, 2)
    c = flip_bits(b, 40, 41, 42)  # 6 bits from a
    assert (a ^ c).bit_count() > NEAR_DUPLICATE_BITS
    ids = duplicate_groups(["x", "other", "y", "z", "z"], [a, h[1], b, c, h[1] ^ (2**64 - 1)])
    # items: 0=a, 1=unrelated, 2=b, 3=c, 4=same sha as 3 with an unrelated hash
    assert same_partition(ids, [[0, 2, 3, 4], [1]])


def test_group_ids_are_dense_in_first_seen_order() -> None:
    h = distinct_hashes(4, seed=6)
    shas = ["p", "q", "p", "r", "q", "s", "r"]
    hashes = [h[0], h[1], h[0], h[2], h[1], h[3], h[2]]
    ids = duplicate_groups(shas, hashes)
    assert ids.tolist() == [0, 1, 0, 2, 1, 3, 2]
    assert ids.dtype.kind == "i"


def test_group_ids_cover_zero_to_g_minus_one_for_random_input() -> None:
    rng = np.random.default_rng(7)
    base = distinct_hashes(30, seed=7)
    hashes = [flip_bits(base[i], int(rng.integers(64))) for i in rng.integers(0, 30, 200)]
    shas = [f"s{i}" for i in range(200)]
    ids = duplicate_groups(shas, hashes)
    assert sorted(set(ids.tolist())) == list(range(ids.max() + 1))
    firsts = [ids.tolist().index(g) for g in range(ids.max() + 1)]
    assert firsts == sorted(firsts)


def test_duplicate_groups_matches_brute_force() -> None:
    """Against a naive all-pairs union-find on clustered random hashes."""
    rng = np.random.default_rng(8)
    centres = distinct_hashes(15, seed=8)
    hashes, shas = [], []
    for i in range(120):
        h = centres[int(rng.integers(15))]
        h = flip_bits(h, *rng.choice(64, size=int(rng.integers(0, 6)), replace=False).tolist())
        hashes.append(h)
        shas.append(f"s{int(rng.integers(0, 100))}")  # some sha collisions across clusters
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if shas[i] == shas[j] or (hashes[i] ^ hashes[j]).bit_count() <= NEAR_DUPLICATE_BITS:
                parent[find(i)] = find(j)
    expected: dict[int, list[int]] = {}
    for i in range(n):
        expected.setdefault(find(i), []).append(i)
    assert same_partition(duplicate_groups(shas, hashes), list(expected.values()))


def test_duplicate_groups_of_nothing() -> None:
    assert duplicate_groups([], []).tolist() == []


def test_extreme_hash_values() -> None:
    top = 2**64 - 1
    ids = duplicate_groups(["a", "b", "c", "d"], [0, top, flip_bits(top, 63), flip_bits(0, 0, 1)])
    assert same_partition(ids, [[0, 3], [1, 2]])


# --- label_conflicts ------------------------------------------------------------------


def test_label_conflicts_flags_whole_mixed_groups() -> None:
    labels = np.array([0, 1, 0, 0, 2, 2])
    groups = np.array([0, 0, 1, 1, 2, 3])
    assert label_conflicts(labels, groups).tolist() == [True, True, False, False, False, False]


def test_label_conflicts_three_members_two_labels() -> None:
    labels = np.array([2, 2, 1, 0])
    groups = np.array([1, 1, 1, 0])
    assert label_conflicts(labels, groups).tolist() == [True, True, True, False]


def test_label_conflicts_none() -> None:
    labels = np.array([0, 0, 1, 1])
    groups = np.array([0, 0, 1, 2])
    assert not label_conflicts(labels, groups).any()


def test_label_conflicts_empty() -> None:
    result = label_conflicts(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert result.shape == (0,)


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

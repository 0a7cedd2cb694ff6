"""Tests of the split stage's duplicate groups (imgclf.data.duplicates)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.duplicates import (
    BLOCK_ROWS,
    NEAR_DUPLICATE_BITS,
    candidate_pairs,
    duplicate_groups,
    label_conflicts,
    standardize,
    thumb_distance,
)
from imgclf.params import SplitParams

FRACTIONS = (0.7, 0.15, 0.15)
DISTANCE = SplitParams().near_duplicates


def flip_bits(h: int, *bits: int) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def distinct_hashes(n: int, seed: int = 0) -> list[int]:
    """``n`` random 64-bit hashes, every pair more than 12 bits apart."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        h = int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + int(rng.integers(0, 2))
        if all((h ^ o).bit_count() > 12 for o in out):
            out.append(h)
    return out


def random_thumbs(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 256)`` unrelated random thumbnails (about 1 apart)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 256)).astype(np.uint8)


def groups_of(shas: list[str], hashes: list[int], same: list[list[int]] | None = None,
              max_distance: float = DISTANCE, seed: int = 0) -> np.ndarray:
    """``duplicate_groups`` with random thumbnails, except that the items of each list
    in ``same`` share one thumbnail (the same picture)."""
    thumbs = random_thumbs(len(shas) + 20, seed)[:len(shas)]
    for items in same or []:
        thumbs[items] = thumbs[items[0]]
    return duplicate_groups(shas, hashes, thumbs, max_distance)


def same_partition(ids: np.ndarray, expected: list[list[int]]) -> bool:
    """``ids`` put exactly the index sets of ``expected`` together."""
    groups: dict[int, set[int]] = {}
    for i, g in enumerate(ids.tolist()):
        groups.setdefault(g, set()).add(i)
    return sorted(map(sorted, groups.values())) == sorted(map(sorted, expected))


# --- candidate_pairs --------------------------------------------------------------------


@pytest.mark.parametrize("max_bits", [0, 3, NEAR_DUPLICATE_BITS, 8])
def test_candidate_pairs_match_brute_force(max_bits: int) -> None:
    """Against all pairs, on clustered random hashes (each band of the hash matters)."""
    rng = np.random.default_rng(max_bits)
    centres = distinct_hashes(15, seed=8)
    hashes = []
    for _ in range(150):
        h = centres[int(rng.integers(15))]
        hashes.append(flip_bits(h, *rng.choice(64, size=int(rng.integers(0, max_bits // 2 + 3)),
                                               replace=False).tolist()))
    expected = [[i, j] for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                if (hashes[i] ^ hashes[j]).bit_count() <= max_bits]
    found = candidate_pairs(np.array(hashes, dtype=np.uint64), max_bits)
    assert found.tolist() == expected
    assert len(expected) > 10  # the clusters give plenty of pairs to find


def test_candidate_pairs_in_a_bucket_larger_than_a_block() -> None:
    """Look-alike images fill one bucket; it is compared in blocks of rows."""
    base = distinct_hashes(1, seed=9)[0]
    rng = np.random.default_rng(9)
    hashes = [flip_bits(base, *rng.choice(range(40, 64), size=2, replace=False).tolist())
              for _ in range(BLOCK_ROWS + 100)]
    found = candidate_pairs(np.array(hashes, dtype=np.uint64), 3)
    expected = sum(1 for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                   if (hashes[i] ^ hashes[j]).bit_count() <= 3)
    assert len(found) == expected > BLOCK_ROWS


# --- thumb_distance --------------------------------------------------------------------


def test_thumb_distance_ignores_brightness_and_contrast_and_the_common_layout() -> None:
    rng = np.random.default_rng(1)
    layout = np.zeros(256)
    layout[:128] = 200.0  # half of every image is one bright block
    a, b = (np.clip(layout + rng.normal(0, 20, 256), 0, 255) for _ in range(2))
    common = standardize(np.stack([layout + rng.normal(0, 20, 256) for _ in range(50)]).clip(
        0, 255).astype(np.uint8)).mean(axis=0)
    rows = standardize(np.stack([a, 0.7 * a + 30, b]).astype(np.uint8))
    d = thumb_distance(rows[[0, 0]], rows[[1, 2]], common)
    assert d[0] < 0.01  # darker, flatter copy: the same picture
    assert d[1] > 0.5  # another picture on the same layout
    # Without taking out the layout the two pictures would look alike.
    assert thumb_distance(rows[[0]], rows[[2]], np.zeros(256))[0] < 0.3


# --- duplicate_groups -----------------------------------------------------------------


def test_all_distinct_items_get_their_own_group() -> None:
    ids = groups_of([f"sha{i}" for i in range(5)], distinct_hashes(5))
    assert ids.tolist() == [0, 1, 2, 3, 4]


def test_identical_sha_is_one_group_even_with_far_hashes_and_thumbnails() -> None:
    ids = groups_of(["a", "b", "a", "c"], distinct_hashes(4))
    assert same_partition(ids, [[0, 2], [1], [3]])


def test_near_dhash_and_alike_thumbnails_is_one_group() -> None:
    h = distinct_hashes(3, seed=1)
    near = flip_bits(h[0], 0, 17, 63)
    ids = groups_of(["a", "b", "c", "d"], [h[0], h[1], near, h[2]], same=[[0, 2]])
    assert same_partition(ids, [[0, 2], [1], [3]])


def test_near_dhash_alone_is_not_a_group() -> None:
    """The candidate is refused when the thumbnails say they are other pictures."""
    h = distinct_hashes(3, seed=1)
    ids = groups_of(["a", "b", "c", "d"], [h[0], h[1], h[0], h[2]])
    assert ids.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("bits", [(5,), (0, 1), (10, 30, 50), (60, 61, 62, 63),
                                  (1, 12, 23, 34, 45, 56)])
def test_hashes_within_the_limit_are_candidates_wherever_the_bits_differ(bits: tuple) -> None:
    assert len(bits) <= NEAR_DUPLICATE_BITS
    h = distinct_hashes(3, seed=2)
    ids = groups_of(["a", "b", "c", "d"], [h[0], flip_bits(h[0], *bits), h[1], h[2]],
                    same=[[0, 1]])
    assert ids[0] == ids[1]


@pytest.mark.parametrize("bits", [tuple(range(NEAR_DUPLICATE_BITS + 1)),
                                  tuple(range(3, 64, 9))])
def test_hashes_beyond_the_limit_stay_apart_even_with_alike_thumbnails(bits: tuple) -> None:
    assert len(bits) > NEAR_DUPLICATE_BITS
    h = distinct_hashes(3, seed=3)
    ids = groups_of(["a", "b", "c", "d"], [h[0], flip_bits(h[0], *bits), h[1], h[2]],
                    same=[[0, 1]])
    assert ids[0] != ids[1]


def test_zero_distance_means_byte_identical_only() -> None:
    h = distinct_hashes(3, seed=4)
    shas, hashes = ["a", "b", "c", "a"], [h[0], h[0], h[1], h[2]]
    assert groups_of(shas, hashes, same=[[0, 1]]).tolist() == [0, 0, 1, 0]
    assert groups_of(shas, hashes, same=[[0, 1]], max_distance=0).tolist() == [0, 1, 2, 0]


def test_a_pair_that_is_the_whole_dataset_is_still_found() -> None:
    """Two copies alone: the common layout is that of the others, here none."""
    thumbs = random_thumbs(1, seed=5)
    copy = np.clip(thumbs.astype(int) + np.random.default_rng(5).integers(-3, 4, 256), 0, 255)
    pair = np.concatenate([thumbs, copy.astype(np.uint8)])
    assert duplicate_groups(["a", "b"], [7, 7], pair, DISTANCE).tolist() == [0, 0]
    third = np.concatenate([pair, random_thumbs(1, seed=6)])
    assert duplicate_groups(["a", "b", "c"], [7, 7, 7], third, DISTANCE).tolist() == [0, 0, 1]


def chain_thumbs(n: int, seed: int) -> np.ndarray:
    """``n`` thumbnails, each a small step from the one before: far apart at the ends."""
    rng = np.random.default_rng(seed)
    start, end = rng.normal(0, 1, 256), rng.normal(0, 1, 256)
    steps = [(1 - k / (n - 1)) * start + k / (n - 1) * end for k in range(n)]
    return np.stack([np.clip(128 + 40 * s, 0, 255) for s in steps]).astype(np.uint8)


def test_a_chain_of_small_steps_is_not_one_group() -> None:
    """a~b, b~c, c~d ... with the same dHash: each group stays around its first member."""
    n = 20
    thumbs = np.concatenate([chain_thumbs(n, seed=7), random_thumbs(30, seed=7)])
    hashes = [0] * n + distinct_hashes(30, seed=7)
    # Neighbours are within the limit, the ends far beyond it.
    rows = standardize(thumbs)
    common = rows[n:].mean(axis=0)
    steps = thumb_distance(rows[:n - 1], rows[1:n], common)
    assert steps.max() <= DISTANCE
    assert thumb_distance(rows[[0]], rows[[n - 1]], common)[0] > 1
    ids = duplicate_groups([f"s{i}" for i in range(len(hashes))], hashes, thumbs, DISTANCE)
    chain = ids[:n]
    assert len(set(chain.tolist())) >= 3
    for g in set(chain.tolist()):  # every member is close to the first member of its group
        members = np.flatnonzero(chain == g)
        d = thumb_distance(rows[members[[0]]], rows[members], common)
        assert d.max() <= 2 * DISTANCE
    assert set(ids[n:].tolist()).isdisjoint(chain.tolist())


def test_group_ids_are_dense_in_first_seen_order() -> None:
    h = distinct_hashes(4, seed=6)
    shas = ["p", "q", "p", "r", "q", "s", "r"]
    hashes = [h[0], h[1], h[0], h[2], h[1], h[3], h[2]]
    ids = groups_of(shas, hashes)
    assert ids.tolist() == [0, 1, 0, 2, 1, 3, 2]
    assert ids.dtype.kind == "i"


def test_group_ids_cover_zero_to_g_minus_one_for_random_input() -> None:
    rng = np.random.default_rng(7)
    base = distinct_hashes(30, seed=7)
    which = rng.integers(0, 30, 200)
    hashes = [flip_bits(base[i], int(rng.integers(64))) for i in which]
    thumbs = random_thumbs(30, seed=7)[which]  # the same picture per base hash
    ids = duplicate_groups([f"s{i}" for i in range(200)], hashes, thumbs, DISTANCE)
    assert same_partition(ids, [np.flatnonzero(which == w).tolist() for w in np.unique(which)])
    assert sorted(set(ids.tolist())) == list(range(ids.max() + 1))
    firsts = [ids.tolist().index(g) for g in range(ids.max() + 1)]
    assert firsts == sorted(firsts)


def test_duplicate_groups_of_nothing() -> None:
    assert duplicate_groups([], [], np.zeros((0, 256), np.uint8), DISTANCE).tolist() == []


def test_extreme_hash_values() -> None:
    top = 2**64 - 1
    ids = groups_of(["a", "b", "c", "d"], [0, top, flip_bits(top, 63), flip_bits(0, 0, 1)],
                    same=[[0, 3], [1, 2]])
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

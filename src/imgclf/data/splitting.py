"""Pure logic of the split stage: duplicate groups and a stratified group split.

No files are read here: the stage passes in labels and hashes and gets back arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgclf.errors import UserError

SPLITS = ("train", "val", "test")


NEAR_DUPLICATE_BITS = 3  # dHashes this close are the same photo (cross-class pairs start at 5)


def _bit_count(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def duplicate_groups(shas: Sequence[str], dhashes: Sequence[int],
                     max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """Group copies of the same photo; return ``(N,)`` group ids, 0..G-1 in first-seen order.

    Two items are one group when their bytes are identical (same sha256) or their
    64-bit dHashes differ in at most ``max_bits`` bits (re-encoded or lightly edited
    copies), transitively. Near pairs are found without comparing all pairs: split the
    hash into ``max_bits + 1`` bands; two hashes that close agree exactly on one band.
    """
    n = len(shas)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first: dict[str, int] = {}
    for i, sha in enumerate(shas):
        union(i, first.setdefault(sha, i))

    hashes = np.array([int(h) for h in dhashes], dtype=np.uint64)
    bands = max_bits + 1
    width = -(-64 // bands)
    for b in range(bands):
        key = (hashes >> np.uint64(b * width)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        _, starts, sizes = np.unique(key[order], return_index=True, return_counts=True)
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            members = order[start:start + size]
            close = _bit_count(hashes[members, None] ^ hashes[None, members]) <= max_bits
            for a, c in zip(*np.nonzero(np.triu(close, 1)), strict=True):
                union(int(members[a]), int(members[c]))

    roots = [find(i) for i in range(n)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], dtype=np.int64)


def label_conflicts(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the item's duplicate group holds more than one label.

    The same photo filed under two classes cannot be learned from; the stage drops it.
    """
    if len(labels) == 0:
        return np.zeros(0, dtype=bool)
    pairs = np.unique(np.stack([groups, labels]), axis=1)  # distinct (group, label) pairs
    labels_per_group = np.bincount(pairs[0], minlength=int(groups.max()) + 1)
    return labels_per_group[groups] > 1


def target_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` items into counts proportional to ``fractions`` (largest remainder).

    Every split with a non-zero fraction gets at least one item when ``n`` allows.
    """
    raw = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero((np.asarray(fractions) > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts.tolist()


def stratified_group_split(labels: np.ndarray, groups: np.ndarray, fractions: Sequence[float],
                           seed: int, class_names: Sequence[str]) -> np.ndarray:
    """Assign each item to split 0 (train), 1 (val) or 2 (test); return ``(N,)`` split ids.

    ``labels`` and ``groups`` are ``(N,)`` ints; all members of a group go to the same
    split. Within each class, groups are shuffled with ``seed`` and dealt out so each
    split gets as close to its fraction of that class's items as whole groups allow.
    """
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), -1, dtype=np.int64)
    needed = sum(1 for f in fractions if f > 0)
    for c, name in enumerate(class_names):
        members = np.flatnonzero(labels == c)
        if len(members) < needed:
            raise UserError(
                f"class {name!r} has {len(members)} usable image(s); a split into "
                f"{needed} parts needs at least {needed}: add images or remove the class folder")
        # Members sorted by group, so each group is one contiguous slice.
        members = members[np.argsort(groups[members], kind="stable")]
        _, starts, sizes = np.unique(groups[members], return_index=True, return_counts=True)
        targets = target_counts(len(members), fractions)
        filled = [0, 0, 0]
        # Deal test first, then val, then train, so small classes still get held-out items.
        # A group goes to the first split it fits in; one that fits nowhere goes to the
        # split short of the most items, so no split overshoots by a whole group.
        order = [2, 1, 0]
        for g in rng.permutation(len(starts)):
            size = int(sizes[g])
            s = next((s for s in order if filled[s] + size <= targets[s]), None)
            if s is None:
                s = max(order, key=lambda s: targets[s] - filled[s])
            split[members[starts[g]:starts[g] + size]] = s
            filled[s] += size
    return split

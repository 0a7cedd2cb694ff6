"""The split stage's stratified group split: each group to one split, classes in proportion.

No files are read here: the stage passes in labels and groups and gets back arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgclf.errors import UserError

SPLITS = ("train", "val", "test")


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
    A group that spans classes is dealt with the class of its first member.
    """
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), -1, dtype=np.int64)
    needed = sum(1 for f in fractions if f > 0)
    home = labels
    if len(labels):
        ids, first = np.unique(groups, return_index=True)
        home = labels[first][np.searchsorted(ids, groups)]
    for c, name in enumerate(class_names):
        members = np.flatnonzero(home == c)
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

"""Duplicate groups of the split stage: exact (same bytes) and near (dHash + thumbnail).

No files are read here: the stage passes in hashes and thumbnails and gets back arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A near-duplicate is found in two steps. The cheap 64-bit dHashes of the pair differ in
# at most NEAR_DUPLICATE_BITS bits (a candidate; found without comparing all pairs),
# then their small grayscale thumbnails are confirmed alike (``thumb_distance`` at most
# ``split.near_duplicates``). dHash alone chains images that share a layout (scans,
# X-rays, documents) into groups of thousands. 6 bits finds ~83% of 3-5% crops (3 bits:
# ~35%) and stays near-linear: 100,000 hashes take ~2 s (docs/error-analysis.md, "Duplicates").
NEAR_DUPLICATE_BITS = 6
SMALL_BUCKET = 32  # buckets up to this size are compared all at once, by shifts
BLOCK_ROWS = 512  # rows of a larger bucket compared at once
CHUNK = 20_000  # thumbnails standardized at once (a few tens of MB of floats)


def candidate_pairs(dhashes: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """``(P, 2)`` index pairs ``i < j`` whose 64-bit ``dhashes`` (``(N,)`` uint64) differ
    in at most ``max_bits`` bits, each pair once, sorted.

    Not all pairs are compared: split the hash into ``max_bits + 1`` bands; two hashes
    that close agree exactly on at least one band, so only items sharing a band value
    are compared.
    """
    hashes = np.asarray(dhashes, dtype=np.uint64)
    found = [np.zeros((0, 2), dtype=np.int64)]

    def keep_close(i: np.ndarray, j: np.ndarray) -> None:
        close = np.bitwise_count(hashes[i] ^ hashes[j]) <= max_bits
        found.append(np.sort(np.stack([i[close], j[close]], axis=1), axis=1))

    bands = max_bits + 1
    for b in range(bands):  # bands of (nearly) equal width: a narrow one fills its buckets
        lo, hi = b * 64 // bands, (b + 1) * 64 // bands
        key = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        # Small buckets, all at once: each item against the one k places on in key order.
        for k in range(1, min(SMALL_BUCKET, len(order))):
            same = ordered[k:] == ordered[:-k]
            if not same.any():
                break
            keep_close(order[:-k][same], order[k:][same])
        # A bucket larger than that (look-alike images) in blocks of rows.
        _, starts, sizes = np.unique(ordered, return_index=True, return_counts=True)
        for start, size in zip(starts[sizes > SMALL_BUCKET], sizes[sizes > SMALL_BUCKET],
                               strict=True):
            members = order[start:start + size]
            for r in range(0, size, BLOCK_ROWS):
                rows = members[r:r + BLOCK_ROWS]
                a, c = np.nonzero(np.bitwise_count(hashes[rows, None] ^ hashes[None, members])
                                  <= max_bits)
                keep = rows[a] != members[c]
                keep_close(rows[a][keep], members[c][keep])
    return np.unique(np.concatenate(found), axis=0)


def standardize(thumbs: np.ndarray) -> np.ndarray:
    """``(N, K)`` uint8 thumbnails as float rows of zero mean and unit spread, so that a
    brighter or more contrasted copy is the same row. A flat thumbnail counts as 1 gray
    level of spread (it stays flat)."""
    t = np.asarray(thumbs, dtype=np.float64)
    t = t - t.mean(axis=1, keepdims=True)
    return t / np.maximum(t.std(axis=1, keepdims=True), 1.0)


def thumb_distance(a: np.ndarray, b: np.ndarray, common: np.ndarray) -> np.ndarray:
    """How unlike the ``standardize``-d ``(P, K)`` thumbnails ``a`` and ``b`` are, row by
    row: ``(P,)`` floats, ``1 - cosine`` of what each has beyond ``common`` (``(K,)`` or
    ``(P, K)``).

    ``common`` is the mean standardized thumbnail of the other images of the dataset: a
    layout that every image shares (the dark background and outline of scans, a page's
    margins) says nothing about two images being the same picture, so it is taken out
    first. 0 is the same picture, about 1 unrelated ones, 2 a negative.
    """
    ra, rb = a - common, b - common
    norms = np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1)
    return 1.0 - (ra * rb).sum(axis=1) / np.maximum(norms, 1e-9)


def _confirmed(pairs: np.ndarray, thumbs: np.ndarray, max_distance: float) -> np.ndarray:
    """``(P,)`` bool: the candidate ``pairs`` whose thumbnails are within ``max_distance``.

    The common layout of a pair is the mean of the dataset without the pair itself, so
    that a pair that makes up most of a small dataset is not measured against itself.
    Computed in chunks: the floats never exist for the whole dataset at once.
    """
    n = len(thumbs)
    total = sum(standardize(thumbs[i:i + CHUNK]).sum(axis=0) for i in range(0, n, CHUNK))
    out = []
    for chunk in np.array_split(pairs, -(-len(pairs) // CHUNK)):
        a, b = standardize(thumbs[chunk[:, 0]]), standardize(thumbs[chunk[:, 1]])
        common = (total - a - b) / (n - 2) if n > 2 else np.zeros_like(a)
        out.append(thumb_distance(a, b, common) <= max_distance)
    return np.concatenate(out)


def duplicate_groups(shas: Sequence[str], dhashes: Sequence[int], thumbs: np.ndarray,
                     max_distance: float, max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """Group copies of the same picture; return ``(N,)`` group ids, 0..G-1 in first-seen order.

    ``shas`` are the files' sha256, ``dhashes`` their 64-bit dHashes, ``thumbs`` their
    ``(N, K)`` uint8 grayscale thumbnails. Byte-identical files (same sha256) are always
    one group. Different files join when their dHashes are within ``max_bits`` bits and
    their ``thumb_distance`` is at most ``max_distance`` (0 turns this off): re-encoded,
    resized, brightened or slightly cropped copies. A group is built around its first
    member and takes only files close to that one, so a chain of small steps (a~b, b~c,
    c~d ...) never becomes one group however long it is.
    """
    n = len(shas)
    first: dict[str, int] = {}
    rep = np.array([first.setdefault(sha, i) for i, sha in enumerate(shas)], dtype=np.int64)
    unique = np.flatnonzero(rep == np.arange(n))  # first file of each distinct content
    neighbours: dict[int, list[int]] = {}
    if max_distance > 0 and len(unique) > 1:
        hashes = np.array([int(h) for h in dhashes], dtype=np.uint64)[unique]
        pairs = candidate_pairs(hashes, max_bits)
        if len(pairs):
            close = _confirmed(pairs, np.asarray(thumbs)[unique], max_distance)
            for a, b in pairs[close].tolist():
                neighbours.setdefault(a, []).append(b)
    # Positions in ``unique`` are in first-seen order and pairs have a < b, so the first
    # unassigned content starts a group and takes its unassigned close ones.
    group_of = np.full(len(unique), -1, dtype=np.int64)
    count = 0
    for u in range(len(unique)):
        if group_of[u] >= 0:
            continue
        group_of[u] = count
        for v in neighbours.get(u, ()):
            if group_of[v] < 0:
                group_of[v] = count
        count += 1
    of_unique = np.full(n, -1, dtype=np.int64)
    of_unique[unique] = group_of
    return of_unique[rep]


def label_conflicts(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the item's duplicate group holds more than one label.

    The same photo filed under two classes cannot be learned from; the stage drops it.
    """
    if len(labels) == 0:
        return np.zeros(0, dtype=bool)
    pairs = np.unique(np.stack([groups, labels]), axis=1)  # distinct (group, label) pairs
    labels_per_group = np.bincount(pairs[0], minlength=int(groups.max()) + 1)
    return labels_per_group[groups] > 1

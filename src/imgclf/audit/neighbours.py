"""Neighbours in embedding space: outliers and near-duplicates (mirrored copies too).

One exact search of each row's ``K`` nearest neighbours by cosine on the projection,
a block of rows at a time against all rows (``BLOCK_BYTES`` of similarities at once),
serves both.

* Outliers follow cleanlab: the score is ``OutOfDistribution``'s (the mean cosine
  distance to the ``K`` nearest neighbours, through ``exp(-d / median d)``;
  tests/audit checks it equals cleanlab's own), and an image is flagged as cleanlab's
  Datalab flags one: mean distance above Q3 + (1 / 0.37037 - 1) x IQR.
* Near-duplicates are pairs among those neighbours whose full embeddings (centred)
  have a cosine of at least ``audit.duplicate_similarity``; candidates are taken a
  ``MARGIN`` below that on the projection, then confirmed on the full rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclf.audit.embeddings import Embeddings, unit

K = 10  # neighbours: cleanlab OutOfDistribution's default k
BLOCK_BYTES = 16 * 1024 * 1024  # a block of similarities; its sort takes ~4x that
OUTLIER_THRESHOLD = 0.37037  # cleanlab Datalab's default for features
MARGIN = 0.05  # how far below the bound a projected cosine still becomes a candidate


def nearest(z: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """``(sims, idx)``, each ``(N, k')``: each row's ``k' = min(k, N - 1)`` most similar
    other rows of ``z`` (``(N, d)``, unit rows) by cosine, most similar first."""
    n = len(z)
    k = min(k, n - 1)
    sims = np.empty((n, max(k, 0)), np.float32)
    idx = np.empty((n, max(k, 0)), np.int64)
    if k < 1:
        return sims, idx
    rows = max(1, min(n, BLOCK_BYTES // (4 * n)))
    for a in range(0, n, rows):
        block = z[a:a + rows] @ z.T  # (B, N)
        block[np.arange(len(block)), np.arange(a, a + len(block))] = -np.inf  # not itself
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        idx[a:a + len(block)] = np.take_along_axis(top, order, axis=1)
        sims[a:a + len(block)] = np.take_along_axis(top_sims, order, axis=1)
    return sims, idx


@dataclass(frozen=True)
class Outliers:
    score: np.ndarray  # (N,) cleanlab's OOD score in (0, 1]; low: far from every image
    flagged: np.ndarray  # (M,) int64 rows flagged, lowest score first


def outliers(sims: np.ndarray) -> Outliers:
    """Outlier scores and flags from the neighbours' similarities (``nearest``)."""
    n = len(sims)
    if sims.shape[1] == 0:
        return Outliers(np.ones(n), np.zeros(0, np.int64))
    distance = np.clip(1.0 - sims.astype(np.float64), 0.0, None).mean(axis=1)
    scale = max(float(np.median(distance)), 100 * np.finfo(np.float64).eps)
    score = np.exp(-distance / scale)
    q1, q3 = np.percentile(distance, [25, 75])
    bound = q3 + (1 / OUTLIER_THRESHOLD - 1) * (q3 - q1)
    flagged = np.flatnonzero(distance > bound)
    return Outliers(score, flagged[np.argsort(score[flagged], kind="stable")])


@dataclass(frozen=True)
class Pairs:
    """Near-duplicate pairs ``a < b``, most similar first (each array ``(P,)``)."""

    a: np.ndarray
    b: np.ndarray
    similarity: np.ndarray


def near_duplicates(embeddings: Embeddings, mean: np.ndarray, sims: np.ndarray,
                    idx: np.ndarray, bound: float) -> Pairs:
    """The neighbour pairs whose full centred embeddings have cosine >= ``bound``."""
    rows, cols = np.nonzero(sims >= bound - MARGIN)
    a, b = rows.astype(np.int64), idx[rows, cols]
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    if not len(pairs):
        return Pairs(*(np.zeros(0, t) for t in (np.int64, np.int64, np.float64)))
    cos = np.concatenate([
        (unit(embeddings.rows(chunk[:, 0]), mean) * unit(embeddings.rows(chunk[:, 1]), mean))
        .sum(axis=1) for chunk in np.array_split(pairs, -(-len(pairs) // 4096))])
    keep = np.flatnonzero(cos >= bound)
    keep = keep[np.argsort(-cos[keep], kind="stable")]
    return Pairs(pairs[keep, 0], pairs[keep, 1], cos[keep].astype(np.float64))

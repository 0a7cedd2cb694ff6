"""The features stage's embeddings of every split, read in blocks, and their projection.

``S-embed.npy`` is ``(N_S, d)`` float16: the pooled backbone output averaged over an
image and its mirror, so an image and its mirrored copy get (nearly) the same row.
Nothing here loads a whole array: the arrays stay memory-mapped and are read
``CHUNK`` rows at a time. Every finding works on a projection: the rows centred and
scaled to unit length (the cosine geometry), then onto their first ``DIMS`` principal
axes, fitted on a seeded sample of at most ``SAMPLE`` rows. That is ``(N, DIMS)``
float32, 51 MB for 100,000 images whatever ``d`` is; only near-duplicate candidates
go back to the full rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.audit.records import Records
from imgclf.data.stratify import SPLITS
from imgclf.errors import UserError
from imgclf.training.caching import MARKER, read_features

EMBED = "embed"
DIMS = 128  # principal axes kept: 3-class and 100-class sets alike stay separable
SAMPLE = 10_000  # rows the projection is fitted on (50 MB of float32 at d 1280)
CHUNK = 8_192  # rows read and projected at once


class NoEmbeddings(Exception):
    """The features stage wrote no embeddings (its marker says why)."""


@dataclass(frozen=True)
class Embeddings:
    """Each split's ``(N_S, d)`` array, memory-mapped, laid end to end as ``(N, d)``."""

    arrays: list[np.ndarray]

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def dim(self) -> int:
        return int(self.arrays[0].shape[1])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """``(len(idx), d)`` float32 rows ``idx`` of the whole set."""
        idx = np.asarray(idx, np.int64)
        split = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((len(idx), self.dim), np.float32)
        for s in np.unique(split):
            at = split == s
            out[at] = self.arrays[s][idx[at] - self.starts[s]]
        return out

    def blocks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, (B, d) float32)`` blocks of consecutive rows, in order."""
        for s, array in enumerate(self.arrays):
            for i in range(0, len(array), size):
                yield int(self.starts[s]) + i, np.asarray(array[i:i + size], np.float32)


def read_embeddings(features: str | os.PathLike[str], records: Records) -> Embeddings:
    """The embeddings in ``features`` of every split, checked against ``records``."""
    folder = Path(features)
    found = read_features(folder)
    missing = [s for s in SPLITS if not (folder / f"{s}-{EMBED}.npy").is_file()]
    if found is None or missing:
        marker = folder / MARKER
        why = (marker.read_text(encoding="utf-8").strip() if marker.is_file()
               else f"no {', '.join(f'{s}-{EMBED}.npy' for s in missing)} in {folder}")
        raise NoEmbeddings(why)
    arrays = [found.array(s, EMBED) for s in SPLITS]
    labels = np.concatenate([np.asarray(found.array(s, "labels")) for s in SPLITS])
    if len(labels) != len(records) or any(a.ndim != 2 for a in arrays):
        raise UserError(f"{folder}: {len(labels)} embeddings for {len(records)} prepared "
                        "images; rerun the features stage (dvc repro features)")
    if not np.array_equal(labels, records.labels):
        raise UserError(f"{folder}: its labels differ from data/prepared/manifest.csv (made "
                        "before the last split?); rerun the features stage")
    return Embeddings(arrays)


def unit(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Rows of ``x`` minus ``mean``, scaled to unit length (a zero row stays zero)."""
    x = x - mean
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Projection:
    """The centred, unit-length embeddings on their principal axes."""

    z: np.ndarray  # (N, k) float32
    scale: np.ndarray  # (k,) spread of each axis (to whiten for the heads)
    mean: np.ndarray  # (d,) the embeddings' mean (centring, for full-row cosines)


def project(embeddings: Embeddings, seed: int) -> Projection:
    """Fit the principal axes on a sample, then project every row a block at a time."""
    n = len(embeddings)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, SAMPLE), replace=False))
    x = embeddings.rows(sample)
    mean = x.mean(axis=0)
    u = unit(x, mean)
    del x  # one (SAMPLE, d) float32 copy at a time
    u_mean = u.mean(axis=0)
    u -= u_mean
    k = max(1, min(DIMS, len(sample) - 1, embeddings.dim))
    # The sample's first k right singular vectors (its principal axes, largest first),
    # by randomized SVD: a few products with a (d, k + 10) matrix instead of the full
    # decomposition (0.5 s against 6.5 s for 2,100 x 1,280 on one core).
    from sklearn.utils.extmath import randomized_svd

    _, sv, vt = randomized_svd(u, k, n_iter=4, random_state=seed)
    axes = vt.astype(np.float32)
    z = np.empty((n, k), np.float32)
    for start, block in embeddings.blocks():
        z[start:start + len(block)] = (unit(block, mean) - u_mean) @ axes.T
    scale = (sv[:k] / np.sqrt(max(len(sample) - 1, 1))).astype(np.float32)
    return Projection(z, np.maximum(scale, 1e-6), mean)

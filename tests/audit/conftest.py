"""Labelled embedding sets with known faults, written as the features stage writes them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from imgclf.audit.records import Records
from imgclf.data.stratify import SPLITS

FLIP_SHARE = 0.03  # the "3% of labels flipped at random"


@dataclass(frozen=True)
class Faulty:
    """A set with ``flips`` (rows whose label was changed) and ``mirrors`` ((train row,
    its mirrored copy's row in test) pairs)."""

    records: Records
    embed: np.ndarray  # (N, d) float16
    flips: np.ndarray
    mirrors: list[tuple[int, int]]


def write_features(folder: Path, embed: np.ndarray, labels: np.ndarray,
                   split_of: np.ndarray) -> Path:
    """``folder`` as the features stage writes it: S-embed.npy, S-labels.npy per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(SPLITS):
        np.save(folder / f"{name}-embed.npy", embed[split_of == s].astype(np.float16))
        np.save(folder / f"{name}-labels.npy", labels[split_of == s].astype(np.int32))
    (folder / "features.json").write_text(json.dumps({"counts": {}}))
    return folder


def flip_labels(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> tuple[
        np.ndarray, np.ndarray]:
    """``(given, flipped rows)``: ``FLIP_SHARE`` of ``labels`` moved to another class."""
    flips = np.sort(rng.choice(len(labels), size=round(FLIP_SHARE * len(labels)), replace=False))
    given = labels.copy()
    given[flips] = (labels[flips] + rng.integers(1, n_classes, len(flips))) % n_classes
    return given, flips


def synthetic(seed: int = 0, classes: int = 4, per_class: int = 150, dim: int = 96,
              mirrors: int = 5) -> Faulty:
    """Separable non-negative (ReLU-like) embeddings of ``classes`` classes, 3% flipped,
    with ``mirrors`` train images copied into test: the same row plus the noise that
    re-encoding a mirrored JPEG leaves (mirror-invariant embeddings)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.5, (classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    x = np.abs(means[labels] + rng.normal(0, 1, (len(labels), dim)))
    split_of = rng.choice(3, size=len(labels), p=[0.7, 0.15, 0.15])
    originals = rng.choice(np.flatnonzero(split_of == 0), size=mirrors, replace=False)
    copies = x[originals] * (1 + rng.normal(0, 0.01, (mirrors, dim)))
    x = np.concatenate([x, copies])
    labels = np.concatenate([labels, labels[originals]])
    split_of = np.concatenate([split_of, np.full(mirrors, 2)])
    given, flips = flip_labels(labels, classes, rng)
    paths = [f"c{labels[i]}/img_{i:04d}.jpg" for i in range(len(labels))]
    # Records come split after split; keep each row's identity through the reordering.
    order = np.argsort(split_of, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    records = Records([paths[i] for i in order], split_of[order].astype(np.int64),
                      given[order].astype(np.int64),
                      np.concatenate([np.arange((split_of == s).sum()) for s in range(3)]),
                      [f"c{c}" for c in range(classes)])
    pairs = [(int(rank[o]), int(rank[len(labels) - mirrors + k]))
             for k, o in enumerate(originals)]
    return Faulty(records, x[order].astype(np.float16), np.sort(rank[flips]), pairs)


@pytest.fixture(scope="session")
def faulty_set() -> Callable[..., Faulty]:
    """The ``synthetic`` builder."""
    return synthetic


@pytest.fixture(scope="session")
def features_writer() -> Callable[..., Path]:
    """The ``write_features`` helper."""
    return write_features

"""The split stage's data report: what was kept, what was skipped and why (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def split_report(class_names: Sequence[str], rows: Sequence[dict[str, str]],
                 skipped: Sequence[dict[str, str]], groups: np.ndarray,
                 paths: Sequence[str]) -> dict[str, Any]:
    """A JSON-ready summary of a split.

    ``rows`` are the manifest rows (path, label, split, sha256); ``skipped`` the files
    left out with their reason; ``groups`` the ``(N,)`` duplicate-group id of each
    decoded file in ``paths``.
    """
    per_split = Counter((r["split"], r["label"]) for r in rows)
    splits = sorted({r["split"] for r in rows}, key=["train", "val", "test"].index)
    members: dict[int, list[str]] = {}
    for g, path in zip(groups.tolist(), paths, strict=True):
        members.setdefault(g, []).append(path)
    return {
        "images": len(rows),
        "classes": list(class_names),
        "counts": {s: {c: per_split[(s, c)] for c in class_names} for s in splits},
        "skipped": sorted(skipped, key=lambda r: r["path"]),
        "skipped_by_reason": dict(Counter(r["reason"].split(" (")[0] for r in skipped)),
        "duplicate_groups": [m for m in members.values() if len(m) > 1],
    }

"""``overrides.yaml``: the dataset fixes the split stage applies, one line per file.

    exclude:            # files left out of every split
      - cats/cats_0042.jpg
    relabel:            # file: the class it belongs to
      dogs/dogs_0107.jpg: cats

Paths are relative to the raw folder, as in ``data/prepared/manifest.csv`` and the
audit's tables (``imgclf audit --accept`` writes its suggestions here for review in a
git diff). Nothing is dropped or relabelled without a line here, and a line that
matches no image stops the stage naming it: a typo must not pass silently.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import UserError
from imgclf.params import read_yaml

FILE = "overrides.yaml"
EXCLUDED = "excluded by overrides.yaml"  # the reason split's report gives


@dataclass(frozen=True)
class Overrides:
    exclude: list[str] = field(default_factory=list)
    relabel: dict[str, str] = field(default_factory=dict)


def read_overrides(path: str | os.PathLike[str] | None) -> Overrides:
    """The overrides of ``path``; none when it is None or the file does not exist."""
    if path is None or not Path(path).is_file():
        return Overrides()
    raw: Any = read_yaml(path)
    if not isinstance(raw, dict) or set(raw) - {"exclude", "relabel"}:
        raise UserError(f"{path}: expected a mapping with exclude: [paths] and relabel: "
                        "{path: class} only")
    exclude, relabel = raw.get("exclude") or [], raw.get("relabel") or {}
    if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
        raise UserError(f"{path}: exclude: expected a list of paths under the raw folder")
    if not isinstance(relabel, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in relabel.items()):
        raise UserError(f"{path}: relabel: expected path: class lines")
    both = sorted(set(exclude) & set(relabel))
    if both:
        raise UserError(f"{path}: {both[0]} is both excluded and relabelled; keep one line")
    return Overrides(list(exclude), dict(relabel))


@dataclass(frozen=True)
class Applied:
    """The scan's files after the overrides, what they set aside and what they changed."""

    files: list[tuple[str, int]]
    keep: np.ndarray  # (N,) bool: which of the scan's files are still in ``files``
    skipped: list[dict[str, str]]
    report: dict[str, Any]


def apply_overrides(files: list[tuple[str, int]], class_names: list[str],
                    path: str | os.PathLike[str] | None) -> Applied:
    """Drop the excluded ``(path, class index)`` files and relabel the others as ``path``
    says; a path matching no file, or an unknown class, is an error naming it."""
    overrides = read_overrides(path)
    known = {f for f, _ in files}
    for wanted in [*overrides.exclude, *overrides.relabel]:
        if wanted not in known:
            raise UserError(f"{path}: {wanted!r} matches no image of the raw folder (paths "
                            "are relative to it, as in data/prepared/manifest.csv); fix or "
                            "remove that line")
    for wanted, name in overrides.relabel.items():
        if name not in class_names:
            raise UserError(f"{path}: relabel {wanted}: {name!r} is no class; the classes "
                            f"are {', '.join(class_names)}")
    excluded = set(overrides.exclude)
    out, skipped, relabelled = [], [], []
    keep = np.array([f not in excluded for f, _ in files], dtype=bool)
    for f, c in files:
        if f in excluded:
            skipped.append({"path": f, "reason": EXCLUDED})
            continue
        if f in overrides.relabel and overrides.relabel[f] != class_names[c]:
            relabelled.append({"path": f, "from": class_names[c], "to": overrides.relabel[f]})
            c = class_names.index(overrides.relabel[f])
        out.append((f, c))
    report = {"file": str(path) if path is not None else None,
              "excluded": sorted(excluded), "relabelled": relabelled}
    if excluded or relabelled:
        print(f"split: {path}: {len(excluded)} excluded, {len(relabelled)} relabelled "
              "(listed under overrides in report.json)", file=sys.stderr)
    return Applied(out, keep, skipped, report)

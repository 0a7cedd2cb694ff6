"""The audit's findings as tables: one list of rows per finding type, JSON- and CSV-ready.

Rows name images by their path under the raw folder (as manifest.csv and
overrides.yaml do) and their split; ``images`` says which records each row's
thumbnails show (``(split, record number)``), for the pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgclf.audit.labels import LabelIssues
from imgclf.audit.neighbours import Outliers, Pairs
from imgclf.audit.quality import ISSUES, THRESHOLDS
from imgclf.audit.records import Records

KINDS = ("label_issues", "outliers", "near_duplicates", "leaks", "quality")
COLUMNS = {
    "label_issues": ["rank", "path", "split", "given", "suggested", "score"],
    "outliers": ["rank", "path", "split", "label", "score"],
    "near_duplicates": ["rank", "path", "split", "label", "other_path", "other_split",
                        "other_label", "similarity", "leak"],
    "leaks": ["rank", "path", "split", "label", "other_path", "other_split", "other_label",
              "similarity", "leak"],
    "quality": ["rank", "path", "split", "label", "issue", "score"],
}


@dataclass
class Findings:
    """Each finding type's rows, and the records each row shows."""

    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {k: [] for k in KINDS})
    images: dict[str, list[list[int]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    quality_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ISSUES, 0))

    def add(self, kind: str, row: dict[str, Any], images: list[int]) -> None:
        self.tables[kind].append({"rank": len(self.tables[kind]) + 1, **row})
        self.images[kind].append(images)


def _where(records: Records, i: int, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}path": records.paths[i], f"{prefix}split": records.split_name(i),
            f"{prefix}label": records.label_name(i)}


def add_label_issues(found: Findings, records: Records, issues: LabelIssues) -> None:
    for i, suggested, score in zip(issues.index.tolist(), issues.suggested.tolist(),
                                   issues.score.tolist(), strict=True):
        found.add("label_issues", {"path": records.paths[i], "split": records.split_name(i),
                                   "given": records.label_name(i),
                                   "suggested": records.class_names[suggested],
                                   "score": round(score, 4)}, [i])


def add_outliers(found: Findings, records: Records, result: Outliers) -> None:
    for i in result.flagged.tolist():
        found.add("outliers", {**_where(records, i), "score": round(float(result.score[i]), 4)},
                  [i])


def add_duplicates(found: Findings, records: Records, pairs: Pairs) -> None:
    """Every pair into near_duplicates; those across splits into leaks too."""
    for a, b, sim in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.similarity.tolist(),
                         strict=True):
        if records.split_of[b] < records.split_of[a]:  # train side first
            a, b = b, a
        leak = bool(records.split_of[a] != records.split_of[b])
        row = {**_where(records, a), **_where(records, b, "other_"),
               "similarity": round(sim, 4), "leak": leak}
        found.add("near_duplicates", row, [a, b])
        if leak:
            found.add("leaks", dict(row), [a, b])


def add_quality(found: Findings, records: Records, scores: dict[str, np.ndarray]) -> None:
    """Each (image, issue) below its threshold, worst score first within each issue."""
    for issue in ISSUES:
        if issue not in scores:
            continue
        values = scores[issue]
        hit = np.flatnonzero(values < THRESHOLDS[issue])
        found.quality_counts[issue] = len(hit)
        for i in hit[np.argsort(values[hit], kind="stable")].tolist():
            found.add("quality", {**_where(records, i), "issue": issue,
                                  "score": round(float(values[i]), 4)}, [i])


def counts(found: Findings, records: Records, note: str | None) -> dict[str, Any]:
    """The metrics file: how many of each finding (the PR report shows their change)."""
    out: dict[str, Any] = {"images": len(records)}
    out.update({k: len(found.tables[k]) for k in KINDS if k != "quality"})
    out["quality"] = dict(found.quality_counts)
    if note:
        out["note"] = note
    return out

"""The audit's files: the tables as CSV, one Markdown summary, a picture per finding type.

The pictures and tables show and name dataset photos, so dvc.yaml keeps them in the
DVC cache, never in git; only the counts (``counts.json``) are committed.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from imgclf.audit.findings import COLUMNS, KINDS, Findings
from imgclf.audit.records import Records
from imgclf.data.shards import SplitImages
from imgclf.data.split_report_plots import save_png
from imgclf.data.stratify import SPLITS

TITLES = {"label_issues": "Likely label errors", "outliers": "Outliers",
          "near_duplicates": "Near-duplicates", "leaks": "Leaks (near-duplicates across splits)",
          "quality": "Image-quality issues"}
SUMMARY_ROWS = 10  # rows of each table in the Markdown summary
COLUMNS_PER_ROW = 6  # thumbnails across a picture (3 pairs for duplicates)


def write_tables(found: Findings, folder: Path) -> None:
    for kind in KINDS:
        with open(folder / f"{kind}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS[kind])
            writer.writeheader()
            writer.writerows(found.tables[kind])


def _caption(kind: str, row: Mapping[str, Any], side: int) -> str:
    path = row["other_path"] if side else row["path"]
    name = Path(path).name
    name = name if len(name) <= 20 else name[:19] + "…"
    if kind == "label_issues":
        return f"{name}\n{row['given']}→{row['suggested']} {row['score']:.2f}"
    if kind in ("near_duplicates", "leaks"):
        split = row["other_split"] if side else row["split"]
        similarity = "" if side else f"cos {row['similarity']:.3f}"
        return f"{name} ({split})\n{similarity}"
    if kind == "quality":
        return f"{name}\n{row['issue']} {row['score']:.2f}"
    return f"{name}\n{row['label']} {row['score']:.2f}"


def grid_figure(kind: str, rows: Sequence[Mapping[str, Any]], images: Sequence[np.ndarray],
                total: int, note: str | None = None) -> Figure:
    """The thumbnails of ``rows`` (one image each; two for a pair), with their file names."""
    per_row = 2 if kind in ("near_duplicates", "leaks") else 1
    shown = len(rows) * per_row
    columns = max(1, min(COLUMNS_PER_ROW, shown))
    lines = max(1, math.ceil(shown / columns))
    fig = Figure(figsize=(2.1 * columns + 0.4, 2.4 * lines + 0.5), dpi=100)
    title = f"{TITLES[kind]}: {total}" + (f" (first {len(rows)})" if total > len(rows) else "")
    fig.suptitle(title if not note else f"{TITLES[kind]}: {note}", fontsize=11)
    for n, image in enumerate(images):
        ax = fig.add_subplot(lines, columns, n + 1)
        ax.imshow(np.asarray(image, np.uint8), interpolation="nearest")
        ax.set_title(_caption(kind, rows[n // per_row], n % per_row), fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig


def write_grids(found: Findings, records: Records, prepared: str | os.PathLike[str],
                folder: Path, most: int, note: str | None) -> None:
    """``folder/<kind>.png`` for every finding type (a picture saying "none" if empty)."""
    readers: dict[int, SplitImages] = {}

    def image(i: int) -> np.ndarray:
        s = int(records.split_of[i])
        if s not in readers:
            readers[s] = SplitImages(prepared, SPLITS[s])
        return readers[s][int(records.index[i])]

    for kind in KINDS:
        rows = found.tables[kind][:most]
        pictures = [image(i) for shown in found.images[kind][:most] for i in shown]
        empty = None if rows else (note or "none found")
        save_png(grid_figure(kind, rows, pictures, len(found.tables[kind]), empty),
                 folder / f"{kind}.png")


def _table(kind: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = [c for c in COLUMNS[kind] if c != "leak" or kind == "near_duplicates"]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(f"`{r[c]}`" if c.endswith("path") else str(r[c])
                              for c in columns) + " |" for r in rows[:SUMMARY_ROWS]]
    return out


def summary(found: Findings, counts: Mapping[str, Any]) -> str:
    """The Markdown summary: the counts, then each table's first rows."""
    quality = counts["quality"]
    lines = ["# Data audit", "", f"{counts['images']} images audited "
             "(docs/audit.md says how each finding is made and how to act on it with "
             "overrides.yaml).", ""]
    if counts.get("note"):
        lines += [f"Note: {counts['note']}.", ""]
    lines += ["| finding | count |", "|---|---:|"]
    lines += [f"| {TITLES[k]} | {counts[k]} |" for k in KINDS if k != "quality"]
    lines += [f"| quality: {issue} | {n} |" for issue, n in quality.items()]
    for kind in KINDS:
        rows = found.tables[kind]
        lines += ["", f"## {TITLES[kind]}", ""]
        if not rows:
            lines.append("None.")
            continue
        more = f" (the first {SUMMARY_ROWS}; all in {kind}.csv)" if len(rows) > SUMMARY_ROWS else ""
        lines += [f"{len(rows)} found{more}.", "", *_table(kind, rows)]
    return "\n".join(lines) + "\n"

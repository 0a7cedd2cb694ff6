"""``imgclf audit --accept KIND --top N``: the audit's first N suggestions of one finding
type written into overrides.yaml, for review in a git diff before ``dvc repro``.

label_issues become ``relabel`` lines (to the suggested class); outliers and quality
issues ``exclude`` lines; leaks exclude the pair's copy outside train. Each added line
carries a comment saying why. The file is edited round-trip (ruamel.yaml): its
comments and order stay as they were; a path it already lists is left alone.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from imgclf import fsutil
from imgclf.errors import UserError

ACCEPTABLE = ("label_issues", "outliers", "leaks", "quality")


def _suggestion(kind: str, row: dict[str, str]) -> tuple[str, str, str | None]:
    """``(section, path, class or None)`` of one table row."""
    if kind == "label_issues":
        return "relabel", row["path"], row["suggested"]
    if kind == "leaks":
        return "exclude", row["other_path"], None
    return "exclude", row["path"], None


def _why(kind: str, row: dict[str, str]) -> str:
    if kind == "label_issues":
        return f"audit: given {row['given']}, p {row['score']} (rank {row['rank']})"
    if kind == "leaks":
        return f"audit: leak, {row['other_split']} copy of {row['path']} ({row['split']})"
    if kind == "quality":
        return f"audit: {row['issue']} {row['score']} (rank {row['rank']})"
    return f"audit: outlier, score {row['score']} (rank {row['rank']})"


def read_table(findings: str | os.PathLike[str], kind: str) -> list[dict[str, str]]:
    path = Path(findings) / f"{kind}.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run the audit stage first (dvc repro audit)") from None


def _section(doc: Any, name: str, empty: Any) -> Any:
    """``doc[name]`` as a block-style collection to add to (an empty one replaced)."""
    current = doc.get(name)
    if not current:
        doc[name] = current = empty
    current.fa.set_block_style()
    return current


def accept(kind: str, top: int, findings: str | os.PathLike[str],
           overrides: str | os.PathLike[str]) -> int:
    """Add the first ``top`` suggestions of ``kind`` to ``overrides``; return how many."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if kind not in ACCEPTABLE:
        raise UserError(f"--accept {kind}: choose one of {', '.join(ACCEPTABLE)}")
    rows = read_table(findings, kind)[:top]
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = Path(overrides)
    doc = yaml.load(path.read_text(encoding="utf-8")) if path.is_file() else None
    doc = doc if doc is not None else CommentedMap()
    exclude = _section(doc, "exclude", CommentedSeq())
    relabel = _section(doc, "relabel", CommentedMap())
    listed = set(exclude) | set(relabel)
    added = 0
    for row in rows:
        section, file, name = _suggestion(kind, row)
        if file in listed:
            continue
        listed.add(file)
        # Each comment two spaces after its own line (ruamel would align it with the last).
        if section == "relabel":
            relabel[file] = name
            relabel.yaml_add_eol_comment(_why(kind, row), file,
                                         column=len(f"  {file}: {name}  "))
        else:
            exclude.append(file)
            exclude.yaml_add_eol_comment(_why(kind, row), len(exclude) - 1,
                                         column=len(f"  - {file}  "))
        added += 1
    with fsutil.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    print(f"audit: {added} of the first {len(rows)} {kind} added to {path} "
          f"({len(rows) - added} already there); review them with git diff {path}, "
          "then dvc repro")
    return added

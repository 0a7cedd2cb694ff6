"""The report's data-audit section: the audit's counts in both revisions and their change.

``dvc metrics diff`` lists only the counts that changed, among every other metric; a
reviewer of a data change wants all of them side by side: how many likely label
errors, outliers, leaks and bad images the change leaves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

COUNTS = "metrics/data_audit/counts.json"  # as dvc.yaml's audit stage writes it


def flat_counts(counts: dict[str, Any] | None) -> dict[str, int]:
    """``{"label_issues": 3, "quality.dark": 1, ...}``: the numbers of a counts file."""
    out: dict[str, int] = {}
    for key, value in (counts or {}).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, int)})
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    return out


def counts_table(base: dict[str, Any] | None, now: dict[str, Any] | None, rev: str) -> str:
    """A Markdown table of each count in ``base`` and ``now`` with the change."""
    old, new = flat_counts(base), flat_counts(now)
    keys = list(new) + [k for k in old if k not in new]
    lines = [f"| finding | {rev} | workspace | change |", "|---|---:|---:|---:|"]
    for key in keys:
        a, b = old.get(key), new.get(key)
        change = f"{b - a:+d}" if a is not None and b is not None else "–"
        lines.append(f"| {key} | {'–' if a is None else a} | {'–' if b is None else b} "
                     f"| {change} |")
    return "\n".join(lines)


def _at(repo: Path, sha: str) -> dict[str, Any] | None:
    proc = subprocess.run(["git", "show", f"{sha}:{COUNTS}"], cwd=repo, capture_output=True,
                          text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def audit_section(repo: Path, sha: str, base: str) -> list[str]:
    """The report's lines for the audit's counts; none when neither revision has them."""
    path = repo / COUNTS
    now = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    then = _at(repo, sha)
    if now is None and then is None:
        return []
    return ["### Data audit", "", f"The audit's findings (`{COUNTS}`, docs/audit.md).", "",
            counts_table(then, now, base), ""]

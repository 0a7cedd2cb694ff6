"""The data of each plot as a Markdown table, for wherever its image cannot be shown.

The fields come from the spec DVC filled: its x and y encodings, and the ``filename``
and ``field`` columns DVC adds when one plot draws several files or fields.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from imgclf.pr_report.plots import WORKSPACE, Plot

SERIES_FIELDS = ("filename", "field")  # what DVC adds to tell a plot's lines apart


def data_table(plot: Plot, base: str) -> str:
    """A confusion matrix of counts (two nominal axes) or, per line, points and last value."""
    x, y = axis_fields(plot.spec)
    if x and y and x[1] == y[1] == "nominal":
        return confusion_table(plot, base, actual=y[0], predicted=x[0])
    return series_table(plot, base, y[0] if y else None)


def axis_fields(spec: dict[str, Any]) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """The first plain (not aggregated) x and y encodings of ``spec`` and its layers:
    ``(field, type)`` each, or None."""
    found: dict[str, tuple[str, str]] = {}
    for node in _dicts(spec):
        encoding = node.get("encoding")
        if not isinstance(encoding, dict):
            continue
        for channel in ("x", "y"):
            enc = encoding.get(channel)
            if (channel not in found and isinstance(enc, dict) and "field" in enc
                    and "aggregate" not in enc):
                found[channel] = (str(enc["field"]), str(enc.get("type", "")))
    return found.get("x"), found.get("y")


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in ``node``, depth first in document order (the data rows excluded)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key != "data":
                yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)


def series_table(plot: Plot, base: str, y: str | None) -> str:
    """One row per line of the plot: its number of points and last y in each revision."""
    revs = (base, WORKSPACE)
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rev in revs:
        for row in plot.rows(rev):
            label = " ".join(str(row[f]) for f in SERIES_FIELDS if f in row) or (y or "value")
            series.setdefault(label, {r: [] for r in revs})[rev].append(row)
    out = ["| series | " + " | ".join(f"{r}: points | {r}: last" for r in revs) + " |",
           "|---|" + "---:|" * 2 * len(revs)]
    for label, by_rev in series.items():
        cells = []
        for rev in revs:
            rows = by_rev[rev]
            cells += [str(len(rows)) if rows else "–",
                      _number(rows[-1].get(y)) if rows and y else "–"]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def confusion_table(plot: Plot, base: str, actual: str, predicted: str) -> str:
    """Counts of each (actual, predicted) pair, ``base → workspace`` in each cell."""
    revs = (base, WORKSPACE)
    counts = {rev: Counter((str(r.get(actual)), str(r.get(predicted))) for r in plot.rows(rev))
              for rev in revs}
    classes = sorted({c for m in counts.values() for pair in m for c in pair})
    out = [f"counts ({' → '.join(revs)}); rows: {actual}, columns: {predicted}", "",
           f"| {actual} \\ {predicted} | " + " | ".join(classes) + " |",
           "|---|" + "---:|" * len(classes)]
    for a in classes:
        cells = [" → ".join(str(counts[rev][(a, p)]) for rev in revs) for p in classes]
        out.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _number(value: Any) -> str:
    """A value as DVC read it (TSV numbers are strings), numbers to 4 significant digits."""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)

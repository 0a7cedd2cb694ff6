"""Figures, targets and the results table: pure, no measuring (tests/test_bench.py checks these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class BenchError(RuntimeError):
    """A measurement could not be made; the message says which and why."""



def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


@dataclass(frozen=True)
class Target:
    """A pass mark: ``op`` (">=" or "<=") ``threshold``, applied to the ratio or the value."""

    op: str
    threshold: float
    on: str = "ratio"  # "ratio": ours / reference; "value": ours itself

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=") or self.on not in ("ratio", "value"):
            raise ValueError(f"bad target {self.op!r} on {self.on!r}")

    def met(self, value: float | None, reference: float | None) -> bool | None:
        """Whether the figure passes; None when it could not be measured."""
        x = ratio(value, reference) if self.on == "ratio" else value
        if x is None:
            return None
        return x >= self.threshold if self.op == ">=" else x <= self.threshold

    def text(self, unit: str) -> str:
        """E.g. ``>= 1.3x`` (on the ratio) or ``<= 3 s`` (on the value)."""
        suffix = "x" if self.on == "ratio" else f" {unit}"
        return f"{self.op} {self.threshold:g}{suffix}".rstrip()


@dataclass(frozen=True)
class Figure:
    """One measurement of ours beside its reference from the same run."""

    section: str
    name: str
    value: float | None
    reference: float | None
    unit: str
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.reference)

    @property
    def met(self) -> bool | None:
        return self.target.met(self.value, self.reference) if self.target else None

    def to_json(self) -> dict[str, Any]:
        r = self.ratio
        return {"section": self.section, "name": self.name, "ours": _round(self.value),
                "reference": _round(self.reference), "unit": self.unit,
                "ratio": None if r is None else round(r, 3),
                "target": self.target.text(self.unit) if self.target else None,
                "met": self.met, "note": self.note}


def _round(x: float | None) -> float | None:
    """Four significant decimals are plenty for every figure here."""
    return None if x is None else round(x, 4)


def fmt_number(x: float | None) -> str:
    """A short, aligned-friendly rendering: 1,234 / 12.3 / 0.9867 / -."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def table_rows(figures: Sequence[Figure]) -> list[list[str]]:
    """The cells of the table, header first."""
    rows = [["section", "figure", "ours", "reference", "unit", "ratio", "target", "met"]]
    for f in figures:
        r = f.ratio
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        rows.append([f.section, f.name, fmt_number(f.value), fmt_number(f.reference), f.unit,
                     "-" if r is None else f"{r:.3f}x", f.target.text(f.unit) if f.target else "-",
                     met])
    return rows


def format_table(figures: Sequence[Figure]) -> str:
    """A plain-text table, numbers right-aligned, with each figure's note beneath it."""
    rows = table_rows(figures)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 5}

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    for f, row in zip(figures, rows[1:], strict=True):
        out.append(line(row))
        if f.note:
            out.append(" " * (widths[0] + 2) + f"  ({f.note})")
    return "\n".join(out)


def summary(figures: Sequence[Figure], errors: dict[str, str], info: dict[str, Any]) -> dict:
    """The final JSON object: every figure, the targets missed and any section that failed."""
    judged = [f for f in figures if f.met is not None]
    return {"bench": "imgclf", **info, "figures": [f.to_json() for f in figures],
            "targets_met": sum(bool(f.met) for f in judged), "targets_judged": len(judged),
            "targets_missed": [f"{f.section}: {f.name}" for f in judged if not f.met],
            "errors": errors}



def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def share(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one."""
    return [total // parts + (i < total % parts) for i in range(parts)]

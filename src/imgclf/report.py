"""``imgclf report``: what a change did to params, metrics and plots, as Markdown.

The report compares the workspace with a base git revision (``--base main``):

* params and metrics are DVC's own tables: ``dvc params diff BASE --md`` and
  ``dvc metrics diff BASE --md``;
* every plot of ``dvc.yaml``'s top-level ``plots`` whose data differ from the base
  revision's is drawn as an SVG file in ``--plots-dir``: line plots with the base
  revision dashed and the workspace solid on the same axes, confusion matrices side
  by side. The images need nothing but the standard library.

Each image is linked relative to the Markdown file (or under ``--image-url``, where
the images are hosted, as the pull-request workflow does), and followed by a folded
``<details>`` table of the same data, so the report still says what changed where the
images cannot be shown. The first line is the hidden marker ``<!-- imgclf-report -->``
by which the workflow finds its earlier comment to update.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import yaml
from dvc_render.image import ImageRenderer

from imgclf.errors import UserError

MARKER = "<!-- imgclf-report -->"
WORKSPACE = "workspace"
CONFUSION_TEMPLATES = {"confusion", "confusion_normalized"}
DATA_SUFFIXES = {".json", ".tsv", ".csv", ".yaml", ".yml"}
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


# --- command line ------------------------------------------------------------------------

def add_parser(subparsers: Any) -> None:
    """Add ``report`` to the ``imgclf`` subcommands."""
    p = subparsers.add_parser(
        "report", help="Markdown report of params, metrics and plots against a git revision",
        description="Compare the workspace with a base git revision: the params and metrics "
        "that changed (dvc params diff / dvc metrics diff) and the plots of dvc.yaml whose "
        "data changed, drawn as SVG files (base dashed, workspace solid) linked from the "
        "report. Used by the pull-request workflow for its comment; works locally too.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default="main", help="the git revision to compare with")
    p.add_argument("--output", type=Path, default=None,
                   help="the Markdown file to write (default: print it)")
    p.add_argument("--plots-dir", type=Path, default=None,
                   help="where the SVG plots go (default: report_plots/ beside --output, or "
                   "in the working folder)")
    p.add_argument("--image-url", default=None,
                   help="link the images as IMAGE_URL/<file>.svg instead of relative to the "
                   "report (for images hosted elsewhere, e.g. in a pull-request comment)")
    p.add_argument("--repo", type=Path, default=Path("."), help="the project folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Write (or print) the report of ``args.repo`` against ``args.base``."""
    output: Path | None = args.output
    here = output.parent if output is not None else Path(".")
    plots_dir: Path = args.plots_dir or here / "report_plots"
    if args.image_url:
        prefix = args.image_url.rstrip("/") + "/"
    else:
        prefix = Path(os.path.relpath(plots_dir.resolve(), here.resolve())).as_posix() + "/"
    text = build_report(args.base, Path(args.repo), plots_dir=plots_dir, link_prefix=prefix)
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"report: {output} ({len(list(plots_dir.glob('*.svg')))} plots in {plots_dir})",
          file=sys.stderr)


# --- the report --------------------------------------------------------------------------

def build_report(base: str, repo: Path, plots_dir: Path | None = None,
                 link_prefix: str | None = None) -> str:
    """The Markdown report of ``repo``'s workspace against git revision ``base``.

    Changed plots are drawn into ``plots_dir`` and linked as ``link_prefix + name.svg``
    (default: the folder's name, i.e. a report written beside it); with no ``plots_dir``
    only their data tables are shown.
    """
    repo = Path(repo)
    sha = _base_commit(repo, base)
    lines = [MARKER, "## imgclf report", "",
             f"The workspace compared with `{base}` (`{sha[:7]}`).", ""]
    lines += ["### Params", "", _dvc_table(repo, "params", base) or "No params changed.", ""]
    lines += ["### Metrics", "", _dvc_table(repo, "metrics", base) or "No metrics changed.", ""]
    lines += ["### Plots", ""]
    plots = [p for p in plot_specs(repo, base) if p.changed]
    if not plots:
        lines += ["No plot data changed.", ""]
    else:
        lines += [f"`{base}` dashed, workspace solid.", ""]
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        if link_prefix is None:
            link_prefix = plots_dir.name + "/"
    names: set[str] = set()
    for plot in plots:
        lines += [f"#### {plot.title}", ""]
        if plots_dir is not None:
            name = _unique(_slug(plot.title), names) + ".svg"
            (plots_dir / name).write_text(plot.svg(base), encoding="utf-8")
            lines += [f"![{plot.title}]({link_prefix}{name})", ""]
        lines += ["<details><summary>data</summary>", "", plot.table(base), "", "</details>", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _base_commit(repo: Path, base: str) -> str:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
                          cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"--base {base}: not a git revision of {repo.resolve()} (fetch it "
                        "first, e.g. git fetch origin main, or name another branch or commit)")
    return proc.stdout.strip()


def _dvc_table(repo: Path, what: str, base: str) -> str:
    """``dvc {params,metrics} diff BASE --md``; empty when nothing changed."""
    proc = subprocess.run([sys.executable, "-m", "dvc", what, "diff", base, "--md"], cwd=repo,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"dvc {what} diff {base} failed: {err}")
    table = proc.stdout.strip()
    return table if len(table.splitlines()) > 2 else ""  # a header alone: no changes


# --- plot data ---------------------------------------------------------------------------

@dataclass
class Series:
    """One y field of one data file, in the base revision and in the workspace."""

    label: str
    path: str
    field: str | None
    base: list[dict[str, Any]] | None
    workspace: list[dict[str, Any]] | None


@dataclass
class Plot:
    """One plot of dvc.yaml: its data in both revisions, and whether it changed."""

    title: str
    template: str
    x: str | None
    series: list[Series]
    changed: bool

    @property
    def confusion(self) -> bool:
        return self.template in CONFUSION_TEMPLATES

    def svg(self, base: str) -> str:
        if self.confusion:
            return confusion_svg(self.title, self._matrices(base))
        lines = []
        for i, s in enumerate(self.series):
            for rev, rows, dashed in ((base, s.base, True), (WORKSPACE, s.workspace, False)):
                if rows is not None:
                    lines.append(Line(f"{s.label} ({rev})", _points(rows, self.x, s.field),
                                      COLOURS[i % len(COLOURS)], dashed))
        return line_svg(self.title, lines, self.x or "step", self._y_label())

    def table(self, base: str) -> str:
        if self.confusion:
            return _confusion_table(self._matrices(base))
        out = [f"| series | {base}: points | {base}: last | {WORKSPACE}: points "
               f"| {WORKSPACE}: last |", "|---|---:|---:|---:|---:|"]
        for s in self.series:
            cells = []
            for rows in (s.base, s.workspace):
                pts = _points(rows or [], self.x, s.field)
                cells += [str(len(pts)) if rows is not None else "–",
                          f"{pts[-1][1]:.4g}" if pts else "–"]
            out.append(f"| {s.label} | " + " | ".join(cells) + " |")
        return "\n".join(out)

    def _y_label(self) -> str:
        fields = {s.field for s in self.series if s.field}
        return fields.pop() if len(fields) == 1 else "value"

    def _matrices(self, base: str) -> list[tuple[str, Counter[tuple[str, str]]]]:
        s = self.series[0]
        actual = s.field or "actual"
        predicted = self.x or "predicted"
        return [(rev, Counter((str(r.get(actual)), str(r.get(predicted))) for r in rows))
                for rev, rows in ((base, s.base), (WORKSPACE, s.workspace)) if rows is not None]


# The files DVC shows as pictures rather than plotting their data.
IMAGE_SUFFIXES = frozenset(ImageRenderer.EXTENSIONS)


def plot_specs(repo: Path, base: str) -> list[Plot]:
    """The plots of ``repo/dvc.yaml``'s top-level ``plots``, with both revisions' data.

    A plot named by a folder becomes one plot per data file in it (as in DVC), taking the
    files of both revisions; a file missing in one revision shows only in the other.
    """
    dvc_yaml = repo / "dvc.yaml"
    if not dvc_yaml.is_file():
        return []
    spec = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    plots = []
    for entry in spec.get("plots") or []:
        if isinstance(entry, str):
            name, props = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, props = next(iter(entry.items()))
            props = props or {}
        else:
            continue
        if Path(str(name)).suffix.lower() in IMAGE_SUFFIXES:
            continue  # pictures (confusion.png, ...) are drawn by the stages themselves
        template = str(props.get("template", "linear"))
        x = props.get("x")
        x_field = x if isinstance(x, str) else (next(iter(x.values()), None)
                                               if isinstance(x, dict) else None)
        y = props.get("y")
        if isinstance(y, dict):  # {file: field | [fields]}: one plot of several files
            fields = [(str(f), str(v)) for f, vs in y.items()
                      for v in (vs if isinstance(vs, list) else [vs])]
            plots.append(_plot(repo, base, str(props.get("title") or name), template,
                               x_field, fields))
            continue
        y_fields = y if isinstance(y, list) else [y]
        for path in _data_files(repo, base, str(name)):
            title = str(props.get("title") or path) if path == name else path
            plots.append(_plot(repo, base, title, template, x_field,
                               [(path, str(f) if f is not None else None) for f in y_fields]))
    return plots


def _plot(repo: Path, base: str, title: str, template: str, x: str | None,
          fields: Sequence[tuple[str, str | None]]) -> Plot:
    labels = _short_labels([p for p, _ in fields])
    many_fields = len({f for _, f in fields}) > 1
    series, changed = [], False
    for (path, field), label in zip(fields, labels, strict=True):
        old, new = _git_show(repo, base, path), _read(repo / path)
        changed |= old != new
        if many_fields and field:
            label = f"{label} {field}" if len(set(labels)) > 1 else field
        series.append(Series(label, path, field, _rows(old, path), _rows(new, path)))
    return Plot(title, template, x, series, changed)


def _data_files(repo: Path, base: str, path: str) -> list[str]:
    """``path`` itself, or the data files under it when it is a folder in either revision."""
    folder = repo / path
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", base, "--", f"{path}/"],
                            cwd=repo, capture_output=True, text=True).stdout.split()
    files = set(listed)
    if folder.is_dir():
        files |= {f.relative_to(repo).as_posix() for f in folder.rglob("*") if f.is_file()}
    is_folder = folder.is_dir() or bool(listed)
    files = {f for f in files if Path(f).suffix.lower() in DATA_SUFFIXES}
    # A folder of pictures only (the data report's samples) has nothing to draw.
    return sorted(files) if files or is_folder else [path]


def _git_show(repo: Path, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(["git", "show", f"{rev}:./{path}"], cwd=repo, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _rows(data: bytes | None, path: str) -> list[dict[str, Any]] | None:
    """The records of a JSON, YAML, TSV or CSV plot file (None when missing or unreadable)."""
    if data is None:
        return None
    suffix = Path(path).suffix.lower()
    try:
        text = data.decode("utf-8")
        if suffix in (".tsv", ".csv"):
            return list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv"
                                       else ","))
        loaded = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    if isinstance(loaded, dict):  # DVC also takes {"key": [records]}
        loaded = next((v for v in loaded.values() if isinstance(v, list)), None)
    if not isinstance(loaded, list):
        return None
    return [r for r in loaded if isinstance(r, dict)]


def _points(rows: Iterable[dict[str, Any]], x: str | None,
            y: str | None) -> list[tuple[float, float]]:
    """(x, y) pairs of the numeric rows; x is the row number when no x field is named."""
    out = []
    for i, row in enumerate(rows):
        field = y if y is not None else next((k for k in reversed(row) if k != x), None)
        try:
            px = float(row[x]) if x is not None else float(i)
            py = float(row[field]) if field is not None else math.nan
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(px) and math.isfinite(py):
            out.append((px, py))
    return out


def _short_labels(paths: Sequence[str]) -> list[str]:
    """What tells the files apart: their paths less the parts they all share."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    if len(set(paths)) <= 1:
        return [Path(p).stem for p in paths]
    lead = 0
    while all(len(p) > lead + 1 for p in parts) and len({p[lead] for p in parts}) == 1:
        lead += 1
    tail = 0
    while (all(len(p) > lead + tail + 1 for p in parts)
           and len({p[-1 - tail] for p in parts}) == 1):
        tail += 1
    return ["/".join(p[lead:len(p) - tail]) for p in parts]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "plot"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def _confusion_table(matrices: list[tuple[str, Counter[tuple[str, str]]]]) -> str:
    revs = [rev for rev, _ in matrices]
    classes = _classes(matrices)
    out = [f"counts ({' → '.join(revs)}); rows: actual, columns: predicted", "",
           "| actual \\ predicted | " + " | ".join(classes) + " |",
           "|---|" + "---:|" * len(classes)]
    for a in classes:
        cells = [" → ".join(str(m[(a, p)]) for _, m in matrices) for p in classes]
        out.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _classes(matrices: list[tuple[str, Counter[tuple[str, str]]]]) -> list[str]:
    return sorted({c for _, m in matrices for pair in m for c in pair})


# --- SVG ---------------------------------------------------------------------------------

@dataclass
class Line:
    label: str
    points: list[tuple[float, float]]
    colour: str
    dashed: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]; the first and last are the axis' ends."""
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def line_svg(title: str, lines: Sequence[Line], x_label: str, y_label: str) -> str:
    """A line chart: one polyline per line, round ticks, a legend on the right."""
    width, height = 760, 380
    left, right, top, bottom = 70, 520, 40, 320
    pts = [p for line in lines for p in line.points]
    xs = _ticks(min(p[0] for p in pts), max(p[0] for p in pts)) if pts else [0.0, 1.0]
    ys = _ticks(min(p[1] for p in pts), max(p[1] for p in pts)) if pts else [0.0, 1.0]

    def sx(v: float) -> float:
        return left + (v - xs[0]) / (xs[-1] - xs[0]) * (right - left)

    def sy(v: float) -> float:
        return bottom - (v - ys[0]) / (ys[-1] - ys[0]) * (bottom - top)

    out = _svg_open(width, height, title)
    for t in xs:
        out.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{bottom}" '
                   'stroke="#e5e5e5"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{bottom + 16}" text-anchor="middle">{t:g}</text>')
    for t in ys:
        out.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{right}" y2="{sy(t):.1f}" '
                   'stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
               'fill="none" stroke="#444"/>')
    out.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle">'
               f"{escape(x_label)}</text>")
    out.append(f'<text x="16" y="{(top + bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + bottom) / 2})">{escape(y_label)}</text>')
    for i, line in enumerate(lines):
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line.points)
        out.append(f'<polyline fill="none" stroke="{line.colour}" stroke-width="2"{dash} '
                   f'points="{coords}"><title>{escape(line.label)}</title></polyline>')
        ly = top + 8 + 20 * i
        out.append(f'<line x1="{right + 16}" y1="{ly}" x2="{right + 46}" y2="{ly}" '
                   f'stroke="{line.colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{right + 52}" y="{ly + 4}">{escape(line.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def confusion_svg(title: str, matrices: list[tuple[str, Counter[tuple[str, str]]]]) -> str:
    """Confusion matrices side by side (rows actual, columns predicted), one per revision."""
    classes = _classes(matrices)
    n = max(len(classes), 1)
    cell = max(18, min(48, 320 // n))
    label_w, label_h = 100, 90
    panel_w = label_w + n * cell + 30
    width, height = max(panel_w * len(matrices), 300), 40 + label_h + n * cell + 30
    peak = max((v for _, m in matrices for v in m.values()), default=0) or 1
    out = _svg_open(width, height, title)
    for k, (rev, counts) in enumerate(matrices):
        x0, y0 = k * panel_w + label_w, 40 + label_h
        out.append(f'<text x="{x0 + n * cell / 2}" y="50" text-anchor="middle" '
                   f'font-weight="bold">{escape(rev)}</text>')
        out.append(f'<text x="{x0 + n * cell / 2}" y="66" text-anchor="middle">predicted</text>')
        for j, c in enumerate(classes):
            cx = x0 + j * cell + cell / 2
            out.append(f'<text x="{cx}" y="{y0 - 6}" transform="rotate(-45 {cx} {y0 - 6})">'
                       f"{escape(c)}</text>")
            out.append(f'<text x="{x0 - 6}" y="{y0 + j * cell + cell / 2 + 4}" '
                       f'text-anchor="end">{escape(c)}</text>')
        for i, a in enumerate(classes):
            for j, p in enumerate(classes):
                v = counts[(a, p)]
                shade = v / peak
                x, y = x0 + j * cell, y0 + i * cell
                out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                           f'fill="#08519c" fill-opacity="{0.04 + 0.9 * shade:.3f}" '
                           'stroke="#fff"/>')
                colour = "#fff" if shade > 0.5 else "#000"
                out.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" '
                           f'text-anchor="middle" fill="{colour}">{v}</text>')
        out.append(f'<text x="{x0 - label_w + 12}" y="{y0 + n * cell / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {x0 - label_w + 12} {y0 + n * cell / 2})">actual</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#fff"/>',
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" '
            f'font-weight="bold">{escape(title)}</text>']

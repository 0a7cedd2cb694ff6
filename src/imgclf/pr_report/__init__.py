"""``imgclf report``: what a change did to params, metrics and plots, as Markdown.

The report compares the workspace with a base git revision (``--base main``), using
DVC's own output throughout:

* params and metrics: ``dvc params diff BASE --md`` and ``dvc metrics diff BASE --md``;
* plots: the Vega-Lite specs of ``dvc plots diff BASE --json`` (the charts ``dvc plots
  diff`` shows, both revisions in one chart) whose data changed, rendered to SVG or PNG
  files in ``--plots-dir`` by vl-convert (:mod:`imgclf.pr_report.plots`).

Each image is linked relative to the Markdown file (or under ``--image-url``, where the
images are hosted, as the pull-request workflow does), and followed by a folded
``<details>`` table of its data (:mod:`imgclf.pr_report.tables`), so the report still says
what changed where images cannot be shown. The first line is the hidden marker
``<!-- imgclf-report -->`` by which the workflow finds its earlier comment to update.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imgclf import fsutil
from imgclf.errors import UserError
from imgclf.pr_report.audit import audit_section
from imgclf.pr_report.plots import FORMATS, changed_plots, render
from imgclf.pr_report.tables import data_table

MARKER = "<!-- imgclf-report -->"


def add_parser(subparsers: Any) -> None:
    """Add ``report`` to the ``imgclf`` subcommands."""
    p = subparsers.add_parser(
        "report", help="Markdown report of params, metrics and plots against a git revision",
        description="Compare the workspace with a base git revision: the params and metrics "
        "that changed (dvc params diff / dvc metrics diff) and the plots of dvc.yaml whose "
        "data changed, drawn by DVC's own templates (dvc plots diff) as image files linked "
        "from the report. Used by the pull-request workflow for its comment; works locally "
        "too.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default="main", help="the git revision to compare with")
    p.add_argument("--output", type=Path, default=None,
                   help="the Markdown file to write (default: print it)")
    p.add_argument("--plots-dir", type=Path, default=None,
                   help="where the plot images go (default: report_plots/ beside --output, "
                   "or in the working folder)")
    p.add_argument("--format", choices=FORMATS, default="svg",
                   help="the plot images' format")
    p.add_argument("--image-url", default=None,
                   help="link the images as IMAGE_URL/<file> instead of relative to the "
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
    text = build_report(args.base, Path(args.repo), plots_dir=plots_dir, link_prefix=prefix,
                        fmt=args.format)
    if output is None:
        sys.stdout.write(text)
        return
    fsutil.write_text(output, text)
    drawn = len(list(plots_dir.glob(f"*.{args.format}")))
    print(f"report: {output} ({drawn} plots in {plots_dir})", file=sys.stderr)


def build_report(base: str, repo: Path, plots_dir: Path | None = None,
                 link_prefix: str | None = None, fmt: str = "svg") -> str:
    """The Markdown report of ``repo``'s workspace against git revision ``base``.

    Changed plots are drawn into ``plots_dir`` as ``fmt`` images and linked as
    ``link_prefix + name`` (default: the folder's name, i.e. a report written beside
    it); with no ``plots_dir`` only their data tables are shown.
    """
    repo = Path(repo)
    sha = _base_commit(repo, base)
    lines = [MARKER, "## imgclf report", "",
             f"The workspace compared with `{base}` (`{sha[:7]}`).", ""]
    # The three dvc commands read the repo, write nothing and mostly wait: run them at once.
    with ThreadPoolExecutor(max_workers=3) as pool:
        params = pool.submit(_dvc_table, repo, "params", base)
        metrics = pool.submit(_dvc_table, repo, "metrics", base)
        changed = pool.submit(changed_plots, repo, base)
    lines += ["### Params", "", params.result() or "No params changed.", ""]
    lines += ["### Metrics", "", metrics.result() or "No metrics changed.", ""]
    lines += audit_section(repo, sha, base)
    lines += ["### Plots", ""]
    plots = changed.result()
    if not plots:
        lines += ["No plot data changed.", ""]
    else:
        lines += [f"The plots whose data changed, as `dvc plots diff {base}` draws them: "
                  "one colour per revision.", ""]
    if plots_dir is not None and link_prefix is None:
        link_prefix = plots_dir.name + "/"
    names: set[str] = set()
    for plot in plots:
        lines += [f"#### {plot.title}", ""]
        if plots_dir is not None:
            name = f"{_unique(_slug(plot.title), names)}.{fmt}"
            try:
                image = render(plot.spec, fmt)
            except ValueError as e:  # vl-convert's word for a spec it cannot draw
                reason = " ".join(str(e).strip().splitlines()[:2])  # the JS stack follows
                raise UserError(f"plot {plot.id!r} of dvc.yaml: vl-convert cannot draw its "
                                f"Vega-Lite spec ({reason}); check its template, e.g. with "
                                f"dvc plots diff {base}") from None
            with fsutil.atomic_path(plots_dir / name) as tmp:
                tmp.write_bytes(image)
            lines += [f"![{plot.title}]({link_prefix}{name})", ""]
        lines += ["<details><summary>data</summary>", "", data_table(plot, base), "",
                  "</details>", ""]
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


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "plot"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate

"""The report's plots: DVC fills its own Vega-Lite templates, vl-convert draws them.

``dvc plots diff BASE --json`` gives each plot of ``dvc.yaml`` (a folder's plot becomes
one per file) as the Vega-Lite spec that ``dvc plots show`` / ``dvc plots diff`` draw,
with the data of both revisions inlined as rows tagged by ``rev``. The report keeps the
plots whose rows differ between the revisions and renders their specs offline with
vl-convert (no browser). Pictures (``confusion.png``, ...) are left out: the stages draw
those themselves, and DVC shows them as they are.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import UserError

WORKSPACE = "workspace"  # DVC's name for the working tree's revision
REV = "rev"  # the field DVC tags each data row with
FORMATS = ("svg", "png")
PNG_SCALE = 2  # pixels per Vega-Lite unit: sharp on high-density screens


@dataclass(frozen=True)
class Plot:
    """One Vega-Lite plot of ``dvc plots diff``: its name in dvc.yaml and the filled spec."""

    id: str
    spec: dict[str, Any]

    @property
    def title(self) -> str:
        title = self.spec.get("title")
        text = title.get("text") if isinstance(title, dict) else title
        return str(text or self.id)

    def rows(self, rev: str) -> list[dict[str, Any]]:
        """Revision ``rev``'s data rows in file order, without their ``rev`` tag."""
        values = (self.spec.get("data") or {}).get("values") or []
        return [{k: v for k, v in row.items() if k != REV}
                for row in values if row.get(REV) == rev]

    def changed(self, base: str) -> bool:
        """Whether the data differ between ``base`` and the workspace (or one lacks them)."""
        return self.rows(base) != self.rows(WORKSPACE)


def changed_plots(repo: Path, base: str) -> list[Plot]:
    """The Vega-Lite plots of ``repo`` whose data differ between ``base`` and the workspace."""
    return [plot for plot in diff_plots(repo, base) if plot.changed(base)]


def diff_plots(repo: Path, base: str) -> list[Plot]:
    """Every Vega-Lite plot of ``dvc plots diff BASE --json`` run in ``repo``, in its order."""
    with tempfile.TemporaryDirectory(prefix="imgclf-report-") as out:
        # -o: DVC copies the revisions' pictures there, not into the project's dvc_plots/.
        proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "diff", base, "--json",
                               "-o", out], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"dvc plots diff {base} failed: {err}")
    try:
        data = json.loads(proc.stdout).get("data") or {}
    except (ValueError, AttributeError) as e:
        raise UserError(f"dvc plots diff {base} --json gave no JSON ({e}); is DVC 3 "
                        "installed (make setup)?") from None
    return [Plot(str(plot_id), entry["content"]) for plot_id, entries in data.items()
            for entry in entries if entry.get("type") == "vega" and entry.get("content")]


def render(spec: dict[str, Any], fmt: str) -> bytes:
    """``spec`` drawn by vl-convert: an SVG document (UTF-8) or a PNG image."""
    import vl_convert  # a large native module: loaded only when a chart is drawn

    version = vl_version(spec, vl_convert.get_vegalite_versions())
    if fmt == "svg":
        return vl_convert.vegalite_to_svg(spec, vl_version=version).encode("utf-8")
    if fmt == "png":
        return vl_convert.vegalite_to_png(spec, vl_version=version, scale=PNG_SCALE)
    raise ValueError(f"image format {fmt!r}: use one of {', '.join(FORMATS)}")


def vl_version(spec: dict[str, Any], available: list[str]) -> str:
    """The newest of ``available`` Vega-Lite versions of the major one ``$schema`` names.

    DVC's templates are written for one major version (v5 today); a newer major version
    may read some of their properties differently.
    """
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    match = re.search(r"/v(\d+)[\d.]*\.json$", str(spec.get("$schema", "")))
    same = [v for v in available if match and v.split(".")[0] == match.group(1)]
    return max(same or available, key=key)

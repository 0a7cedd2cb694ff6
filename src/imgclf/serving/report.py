"""What the page's report view shows: the evaluate stage's metrics and pictures.

The server reads them on every request (they change when ``dvc repro`` reruns
evaluate) and says plainly which are missing, rather than failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_SPLIT = "test"  # the split evaluate draws its plots for


@dataclass(frozen=True)
class ReportFiles:
    """Where the evaluate stage wrote its outputs (the ``imgclf evaluate`` options)."""

    metrics: Path  # eval.json
    plots: Path  # the folder with confusion.png and calibration.png
    gallery: Path  # misclassified.png

    def pictures(self) -> dict[str, Path]:
        """The report's pictures by name (the names are the only ones the server serves)."""
        return {"confusion.png": self.plots / "confusion.png",
                "calibration.png": self.plots / "calibration.png",
                "misclassified.png": self.gallery}


def read_report(files: ReportFiles) -> dict[str, Any]:
    """``{"metrics": {...} | None, "pictures": {name: bool}, "missing": [reason, ...]}``.

    ``metrics`` is the ``test`` split of eval.json (accuracy, f1, ece, per_class ...);
    ``pictures`` says which picture exists; ``missing`` says, in words, what is not
    there and how to make it.
    """
    missing: list[str] = []
    metrics = None
    try:
        raw = json.loads(files.metrics.read_text(encoding="utf-8"))
        metrics = raw.get(REPORT_SPLIT) if isinstance(raw, dict) else None
        if not isinstance(metrics, dict):
            missing.append(f"{files.metrics} has no '{REPORT_SPLIT}' metrics; rerun the "
                           "evaluate stage (dvc repro evaluate)")
            metrics = None
    except FileNotFoundError:
        missing.append(f"{files.metrics} is missing: run the evaluate stage "
                       "(dvc repro evaluate) to make the test metrics")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        missing.append(f"{files.metrics} cannot be read ({exc}); rerun dvc repro evaluate")
    pictures = {name: path.is_file() for name, path in files.pictures().items()}
    for name, path in files.pictures().items():
        if not pictures[name]:
            missing.append(f"{path} is missing: dvc repro evaluate (or dvc pull) makes it")
    return {"metrics": metrics, "pictures": pictures, "missing": missing}

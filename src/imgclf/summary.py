"""``imgclf summary``: what a finished ``make repro`` gave, where it is, and what to run next.

The places are read from ``dvc.yaml`` (the outputs of its train, evaluate and export
stages), so they stay those the pipeline writes; the accuracy from the evaluate
stage's metrics file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from imgclf.errors import UserError

NEXT = (
    ("imgclf predict photos/", "classify your own photos (--format json|csv)"),
    ("imgclf serve", "try the model in a browser, or call it over HTTP"),
    ("dvc plots show", "open the charts: dvc_plots/index.html"),
    ("dvc exp run -S model.arch=efficientnetv2_b0", "try a change as an experiment"),
    ("dvc exp show", "compare the experiments"),
)


def add_parser(subparsers: Any) -> None:
    """Add ``summary`` to the ``imgclf`` subcommands."""
    p = subparsers.add_parser(
        "summary", help="what the pipeline produced, where it is, and what to run next",
        description="Print the test accuracy of the evaluate stage, where the model, "
        "metrics, plots and exports of dvc.yaml are, and the next commands to try. "
        "make repro prints it at the end.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repo", type=Path, default=Path("."), help="the project folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    print(summary(args.repo), end="")


def summary(repo: Path) -> str:
    """The text of ``imgclf summary`` for the project in ``repo``."""
    stages = _stages(repo)
    lines = [_accuracy(repo, stages), ""]
    evaluated = _paths(stages, "evaluate", "outs")
    places = [("model", _paths(stages, "train", "outs")[:1]),
              ("metrics", _paths(stages, "evaluate", "metrics")
               + _paths(stages, "export", "metrics")),
              ("plots", [p for p in evaluated if not p.endswith(".csv")]),
              ("predictions", [p for p in evaluated if p.endswith(".csv")]),  # per image
              ("exports", _exports(repo, _paths(stages, "export", "outs")))]
    width = max(len(name) for name, _ in places)
    lines += [f"  {name:<{width}}  {', '.join(found)}" for name, found in places if found]
    lines += ["", "Next:"]
    width = max(len(cmd) for cmd, _ in NEXT)
    lines += [f"  {cmd:<{width}}  # {why}" for cmd, why in NEXT]
    return "\n".join(lines) + "\n"


def _stages(repo: Path) -> dict[str, Any]:
    path = repo / "dvc.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run imgclf summary in the project folder "
                        "(or pass --repo)") from None


def _paths(stages: dict[str, Any], stage: str, key: str) -> list[str]:
    """The paths a stage lists under ``outs`` or ``metrics`` (each a string or a one-key map)."""
    entries = stages.get(stage, {}).get(key, [])
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def _accuracy(repo: Path, stages: dict[str, Any]) -> str:
    metrics = _paths(stages, "evaluate", "metrics")
    if not metrics:
        raise UserError(f"{repo / 'dvc.yaml'}: the evaluate stage has no metrics file")
    path = repo / metrics[0]
    try:
        test = json.loads(path.read_text(encoding="utf-8"))["test"]
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run dvc repro (or make repro) first") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not the evaluate stage's metrics (no test split); run "
                        "dvc repro evaluate") from None
    return (f"Test accuracy {test['accuracy']:.4f} (balanced {test['balanced_accuracy']:.4f}) "
            f"on {test['n']} held-out images ({metrics[0]}).")


def _exports(repo: Path, folders: list[str]) -> list[str]:
    """Each export folder's entries (``models/export/model.onnx``, ...), as they are now."""
    found = []
    for folder in folders:
        entries = sorted((repo / folder).iterdir()) if (repo / folder).is_dir() else []
        found += [f"{folder}/{e.name}{'/' if e.is_dir() else ''}" for e in entries
                  if not e.name.startswith(".")] or [folder]
    return found

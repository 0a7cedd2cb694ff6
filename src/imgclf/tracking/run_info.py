"""What a W&B run is named and configured with: the git revision, the DVC experiment,
the data's hash from ``dvc.lock``, and whether the server can be reached at all."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

PROBE_TIMEOUT_S = 3.0  # to tell an unreachable W&B server before starting an online run
GIT_TIMEOUT_S = 10.0
PREPARED_OUT = "data/prepared"  # the split stage's output, whose hash names the data
# Written by the pipeline itself: a change to them does not make the code "dirty".
PIPELINE_OUTPUTS = ("dvc.lock", "metrics")


def _git(root: Path, *args: str) -> str | None:
    """The stripped output of ``git args`` in ``root``, or None if git fails."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_rev(root: Path) -> str | None:
    """The commit checked out in ``root``, or None outside a git repo."""
    return _git(root, "rev-parse", "HEAD") or None


def run_group(environ: Mapping[str, str], root: Path) -> str:
    """The W&B group of this pipeline run (see the module docstring)."""
    name = environ.get("DVC_EXP_NAME", "").strip()
    if name:
        return name
    rev = _git(root, "rev-parse", "--short", "HEAD")
    if not rev:
        return "local"
    changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                   *(f":(exclude){path}" for path in PIPELINE_OUTPUTS))
    return f"{rev}-dirty" if changed else rev


def unreachable(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the W&B server at ``base_url`` cannot be reached (a TCP connect), or None."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc.strerror or type(exc).__name__})"


def data_hash(lock_path: Path) -> str | None:
    """The md5 DVC recorded for ``data/prepared`` in ``dvc.lock``, or None."""
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
        for stage in (lock.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                if str(out.get("path", "")).rstrip("/") == PREPARED_OUT:
                    return str(out["md5"])
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return None  # no lock yet (first run, or a stage run by hand)
    return None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"test": {"accuracy": 0.9}}`` -> ``{"test/accuracy": 0.9}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

"""Files: write outputs under a temporary name and rename them into place; hash them.

A stage killed halfway must never leave an output that looks complete, so every
file and folder a stage produces goes through one of these helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DECIMALS = 6
"""Decimal places kept in the floats of the files the project writes (metrics,
predictions), so that they diff cleanly between runs."""


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh, unused name beside ``path`` (same filesystem, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces ``path``, on error it is removed.

    The temporary name keeps ``path``'s suffix, for writers that insist on one
    (Keras only saves to names ending in ``.keras``).
    """
    path = Path(path)
    tmp = _tmp_sibling(path, path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces the folder ``path``.

    The old folder is moved aside before the new one is renamed in, and removed only
    after, so at every moment ``path`` is either the old complete output or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """The hex digest (``sha256``, ``md5``, ...) of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes."""
    return file_digest(path, "sha256")

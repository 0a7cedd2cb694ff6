"""Files: write outputs under a temporary name and rename them into place; hash them.

A stage killed halfway must never leave an output that looks complete, so every
file and folder a stage produces goes through one of these helpers. Their temporary
names are made private (``mkstemp``: 0600, ``mkdtemp``: 0700); before the rename they
get the modes a plain ``open`` / ``mkdir`` would give, under the user's umask.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imgclf.errors import UserError

DECIMALS = 6
"""Decimal places kept in the floats of the files the project writes (metrics,
predictions), so that they diff cleanly between runs."""


def umask() -> int:
    """The process's umask, without changing it where the system tells (Linux's /proc):
    ``os.umask`` can only read it by setting it, a race with other threads' files."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh, unused name beside ``path`` (same filesystem, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where there are no such modes
            os.fchmod(fd, 0o666 & ~umask())
    finally:
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
    """Write ``text`` as UTF-8. A file name that is not UTF-8 (Python holds its bytes as
    lone surrogates, see os.fsdecode) is written back as those bytes, not an error."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary folders of ``atomic_dir(path)`` that a killed run left (SIGKILL
    skips its clean-up): those whose writer's pid is no longer running. A killed download
    would otherwise leave a partial copy of the dataset behind. Returns what it removed."""
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if (stale.suffix in (".tmp", ".old") and stale.is_dir() and pid.isdigit()
                and not _alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces the folder ``path``.

    The old folder is moved aside before the new one is renamed in, and removed only
    after, so at every moment ``path`` is either the old complete output or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    # The writer's pid in the name tells a killed run's leftovers from a live one's.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                dir=path.parent))
    tmp.chmod(0o777 & ~umask())
    try:
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".old",
                                        dir=path.parent))
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


def check_writable(path: str | os.PathLike[str], flag: str = "--output") -> None:
    """Raise ``UserError`` (one line naming ``flag`` and ``path``) unless a file can be
    written at ``path`` as ``write_text`` writes it: checked before long work, so it does
    not fail with a traceback once the work is done.

    A temporary file is created in the nearest existing folder of ``path`` and removed;
    ``path`` itself is untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; name a file in it, e.g. {path / 'out.txt'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # write_text creates the rest
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: {folder} is not a folder; choose another place")
    try:
        fd, name = tempfile.mkstemp(prefix=".imgclf.", suffix=".check", dir=folder)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {folder} "
                        f"({exc.strerror or exc}); choose another place") from None
    os.close(fd)
    os.unlink(name)
